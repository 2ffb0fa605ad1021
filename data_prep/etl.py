"""Community MEDS ETLs run in their own virtual environment (DESIGN.md, Dependencies).

An ETL such as MIMIC_IV_MEDS pins its own `meds` / `meds-extract` / `polars` versions, so it never
runs inside MEHR-Bench's environment (as MEDS-DEV runs each model in its own venv):

- `ensure_venv(package, version)` builds `<cache>/<package>-<version>/` on first use with the
  current Python (`python -m venv` + pip), under a file lock so two concurrent prepares do not both
  build it. A venv is not relocatable (its scripts name their own path), so it is built in place
  and marked complete last; a half-built one (no marker) is removed and rebuilt.
- `run_in_venv(venv, argv, log)` runs a command with the venv first on PATH and turns a failure
  into a UserError that shows the tail of its output.
- `publish(tmp, out)` moves a finished folder into place with one rename.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from benchmark.errors import UserError
from benchmark.paths import cache_dir

COMPLETE_MARKER = ".mehr-bench-complete"
TAIL_LINES = 25  # lines of a failed command's output shown to the user
PIP_TIMEOUT_S = 60  # per network request: fail fast without network instead of retrying for minutes


def etl_cache_root() -> Path:
    """Folder holding the ETL venvs: $MEHR_BENCH_ETL_CACHE, else <MEHR-Bench cache>/etl."""
    env = os.environ.get("MEHR_BENCH_ETL_CACHE")
    return Path(env) if env else cache_dir() / "etl"


def venv_dir(package: str, version: str) -> Path:
    """Where the venv of one ETL version lives.

    Args:
        package: the PyPI name (e.g. mimic-iv-meds).
        version: the exact version.

    Returns:
        etl_cache_root()/<package>-<version>.
    """
    return etl_cache_root() / f"{package}-{version}"


def tail(text: str, n: int = TAIL_LINES) -> str:
    """The last n non-empty lines of a command's output, indented for an error message."""
    lines = [ln for ln in text.splitlines() if ln.strip()][-n:]
    return "\n".join("    " + ln for ln in lines)


def manual_install_hint(package: str, version: str) -> str:
    """The commands that build the venv by hand (for machines without network)."""
    d = venv_dir(package, version)
    return (f"build it by hand where PyPI is reachable (or from a local wheel folder with "
            f"--no-index --find-links DIR): `{sys.executable} -m venv {d} && {d}/bin/pip install "
            f"{package}=={version} && touch {d}/{COMPLETE_MARKER}`; set MEHR_BENCH_ETL_CACHE to use "
            f"another folder")


def ensure_venv(package: str, version: str, *, log=print, constraints: tuple[str, ...] = ()) -> Path:
    """The venv with `package==version` installed, built on first use.

    Args:
        package: the PyPI name of the ETL.
        version: the exact version to pin.
        log: called with one line of progress text.
        constraints: extra requirements installed with it (e.g. `polars<2` for an ETL that predates
            a breaking release of a dependency it leaves unpinned); a venv built with other
            constraints is rebuilt.

    Returns:
        The venv folder (its bin/ holds the ETL's console scripts).

    Raises:
        UserError: the venv could not be built (no network, unknown version); the message names the
            failing step, shows pip's output and the commands to build it by hand.
    """
    d = venv_dir(package, version)
    d.parent.mkdir(parents=True, exist_ok=True)
    stamp = "".join(f"{r}\n" for r in (f"{package}=={version}", *constraints))
    with FileLock(str(d) + ".lock"):
        marker = d / COMPLETE_MARKER
        if marker.exists() and (not constraints or marker.read_text() == stamp):
            return d
        if d.exists():  # a build that was interrupted: start over
            shutil.rmtree(d)
        log(f"building the ETL environment {d} (first use; about a minute)")
        try:
            _run_step([sys.executable, "-m", "venv", str(d)], "create the venv", package, version)
            _run_step([str(d / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                       "--timeout", str(PIP_TIMEOUT_S), "--retries", "1", f"{package}=={version}", *constraints],
                      f"pip install {package}=={version}", package, version)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        marker.write_text(stamp)
    return d


def _run_step(argv: list[str], what: str, package: str, version: str) -> None:
    """Run one venv-building command; a failure becomes a UserError with the manual commands."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"could not {what} (exit {proc.returncode}); its output ends with:\n"
                        f"{tail(proc.stdout + proc.stderr)}",
                        file=venv_dir(package, version), field="--etl-version",
                        fix="check the network to PyPI and the version (pip index versions "
                            f"{package}); or {manual_install_hint(package, version)}")


def run_in_venv(venv: Path, argv: list[str], log_file: Path, *, what: str, fix: str) -> None:
    """Run a command of the ETL venv, its output going to log_file.

    Args:
        venv: the venv (its bin/ goes first on PATH: ETL drivers call their sibling scripts by name).
        argv: the command; argv[0] is a script name in venv/bin or an absolute path.
        log_file: receives stdout and stderr.
        what: the step, for the error message.
        fix: the fix shown if the command fails.

    Raises:
        UserError: non-zero exit, with the tail of the output and the log file named.
    """
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)  # MEHR-Bench's own path must not leak into the ETL's interpreter
    exe = argv[0] if os.path.isabs(argv[0]) else str(venv / "bin" / argv[0])
    with open(log_file, "w") as fh:
        rc = subprocess.run([exe, *argv[1:]], stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        text = log_file.read_text(errors="replace")
        raise UserError(f"{what} failed (exit {rc}); its output ends with:\n{tail(text)}",
                        file=log_file, fix=fix)


def publish(tmp: Path, out: Path) -> None:
    """Move a finished folder to out in one rename (out absent, or an empty folder).

    Args:
        tmp: the finished folder, on the same file system as out.
        out: the destination.
    """
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    os.rename(tmp, out)
