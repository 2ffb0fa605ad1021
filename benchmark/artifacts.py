"""Atomic writes and disk caches: the one `atomic_write` and the one `cached_artifact`.

Every artifact the benchmark stores (result files, label and feature caches, encoder caches,
tokenizer states, cohort fingerprints) is written the same way: to a unique temp file in the target
folder (`tempfile.mkstemp`, so concurrent writers never share a temp name), then renamed onto the
target (`os.replace`, atomic on one file system). A reader sees the old file or the new one, never
half of one; on any error the temp file is removed and the target is untouched.

A cache entry is built by `cached_artifact(path, compute, read=..., write=...)`: return the stored
artifact if it reads back, otherwise take the entry's file lock, re-check (another process may
have built it meanwhile), compute, write atomically and return. A file that does not read back
(truncated by a crash of an older writer, or corrupted by hand) is rebuilt, never crashed on.

This module imports nothing from the rest of the package, so any module (the cohort reader
included) can use it without a cycle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from filelock import FileLock

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A unique temp path next to `path`; renamed onto `path` when the block succeeds.

    The temp name comes from tempfile.mkstemp in the target folder (unique across processes and
    threads, same file system so the rename is atomic). On any error, KeyboardInterrupt included,
    the temp file is removed and the error re-raised; `path` is then untouched.

    Args:
        path: the final file.
        suffix: ending the writer needs on the temp name (np.savez appends ".npz" otherwise).

    Yields:
        The temp path to write (it exists, empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """A fresh temp folder next to `path`; renamed onto `path` when the block succeeds.

    For outputs that are whole folders (a generated cohort, an exported image folder, a label export):
    readers never see a half-written one. An existing empty folder at `path` is replaced; a non-empty
    one makes the rename fail (someone else published first), and nothing is overwritten, unless
    `replace`: then the old folder is moved aside, the new one renamed in, and the old one removed
    (put back if the rename fails). On any error, the temp folder is removed and the error re-raised.

    Args:
        path: the final folder.
        replace: swap out an existing non-empty folder (the caller decided it may be replaced).

    Yields:
        The temp folder to fill (it exists, empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        if replace and path.exists():
            _swap_in(tmp, path)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename the filled temp folder onto `path` (the old folder is moved aside first, then removed)."""
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.rename(path, old / "x")
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(old / "x", path)  # put the old folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write bytes (or text, as UTF-8) to `path` atomically: unique temp file, fsync, rename.

    Args:
        path: the final file; its folder is created if needed.
        data: the content.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`atomic_write` under its older name (kept for callers outside this module's owners)."""
    atomic_write(path, data)


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock for building the cache entry `path`.

    The lock file `.<name>.lock` next to `path` stays after release (removing a lock file that
    another process waits on would break mutual exclusion). Build inside the lock and re-check
    whether `path` exists after acquiring it: another run may have built it meanwhile.

    Args:
        path: the cache file (or folder) being built.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.name}.lock")):
        yield


def digest(payload: Any, n: int = 16) -> str:
    """A short stable hash of a JSON-able payload (dict keys sorted, other values via str).

    Args:
        payload: what identifies an artifact (version, settings, data fingerprint...).
        n: hex digits kept.

    Returns:
        The first n hex digits of sha256(json.dumps(payload, sort_keys=True, default=str)).
    """
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:n]


_MISSING = object()


def _try_read(path: Path, read: Callable[[Path], T]) -> Any:
    """read(path), or _MISSING if the file is absent or does not read back as a valid artifact."""
    if not path.exists():
        return _MISSING
    try:
        return read(path)
    except Exception:  # noqa: BLE001 - any failure to read a cache entry means: rebuild it
        return _MISSING


def cached_artifact(path: Path, compute: Callable[[], T], *, read: Callable[[Path], T],
                    write: Callable[[Path, T], None], suffix: str = "", lock: bool = True,
                    best_effort: bool = False) -> T:
    """The artifact stored at `path`, built once (by one process) when missing or unreadable.

    `read` validates as it reads: whatever it raises (a truncated parquet, a corrupt .npz, a JSON
    whose key no longer matches) marks the entry invalid, and it is rebuilt. `write` writes the
    value to a temp path that is renamed onto `path` after it returns, so the file at `path`
    marks a complete entry; an artifact with side files (a metadata JSON) writes them inside
    `write` first (with `atomic_write`), so they are in place when `path` appears.

    Args:
        path: the artifact's file; its name carries the cache key (see `digest`).
        compute: builds the value.
        read: loads a value from `path` (raise on anything invalid).
        write: write(tmp_path, value) stores the value in the temp file.
        suffix: ending the writer needs on the temp name (".npz" for np.savez, ".parquet").
        lock: hold the entry's file lock while building, so concurrent builders compute once.
            Without it (a cache whose computation is cheap and idempotent, in a folder where a lock
            file would be unwelcome) two processes may both compute; each write is still atomic.
        best_effort: a cache that cannot be locked or written (read-only folder) is computed
            and returned without storing, instead of raising the OSError.

    Returns:
        The stored or the freshly computed value.
    """
    path = Path(path)
    value = _try_read(path, read)
    if value is not _MISSING:
        return value
    with contextlib.ExitStack() as stack:
        if lock:
            try:
                stack.enter_context(cache_lock(path))
            except OSError:
                if not best_effort:
                    raise
            else:
                value = _try_read(path, read)  # another process may have built it while we waited
                if value is not _MISSING:
                    return value
        value = compute()
        try:
            with atomic_path(path, suffix) as tmp:
                write(tmp, value)
        except OSError:
            if not best_effort:
                raise
    return value
