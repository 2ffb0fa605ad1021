"""Render the site: the Jinja2 environment, its formatting filters, and the atomic write.

    environment() -> Environment     templates of leaderboard/templates, filters, inline CSS / JS + CSP
    render_all(sites, out)           every page of every dataset into an empty folder
    write_site(sites, out_dir)       render into a temporary sibling and swap it in atomically
    fmt, fmt_ci, fmt_params          number formatting (counts: `rules.fmt_count`)

Imports point one way inside the package: records <- rules <- figures <- views <- render <- build.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from leaderboard import plots
from leaderboard.records import is_num, metric_label
from leaderboard.rules import (
    MIN_COUNT,
    MIN_RANK_SUBJECTS,
    TIE_ALPHA,
    TIE_N_BOOT,
    count_sort_key,
    fmt_count,
    safe_text,
)
from leaderboard.views import Site, model_page, task_page

HERE = Path(__file__).resolve().parent
MARKER = ".mehr-bench-leaderboard"
KEEP_PATTERNS = ("compare-*.html", "compare-*.json")


# =========================================================================== formatting
def fmt(v: Any, nd: int = 3) -> str:
    """Number for display: 3 decimals (1 above 100), '—' for missing.

    Args:
        v: a number or None.
        nd: decimals for |v| < 100.

    Returns:
        The text.
    """
    if not is_num(v):
        return "\u2014"
    return f"{v:.{nd}f}" if abs(v) < 100 else f"{v:.1f}"


def fmt_ci(m: Mapping | None) -> str:
    """'[low, high]' of a metric dict, or '' without an interval.

    Args:
        m: a metric dict with ci_low / ci_high.

    Returns:
        The text.
    """
    if not m or not is_num(m.get("ci_low")) or not is_num(m.get("ci_high")):
        return ""
    return f"[{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]"


def fmt_params(n: Any) -> str:
    """Parameter count as 1.2M / 350k / '—'.

    Args:
        n: count or None.

    Returns:
        The text.
    """
    return plots.tick_label(float(n)) if is_num(n) and n > 0 else "\u2014"


# =========================================================================== pages
def _read_static(name: str) -> str:
    return (HERE / "static" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def environment() -> Environment:
    """The Jinja2 environment of the site (autoescape on, strict undefined, no extensions).

    Returns:
        Environment loading leaderboard/templates.
    """
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(fmt=fmt, fmt_ci=fmt_ci, fmt_params=fmt_params, metric_label=metric_label,
                       fmt_count=fmt_count, count_key=count_sort_key, redact=safe_text)
    css, hook, js = _read_static("style.css"), _read_static("hook.js"), _read_static("site.js")
    csp = ("default-src 'none'; img-src data:; style-src " + _csp_hash(css) + "; script-src "
           + _csp_hash(hook) + " " + _csp_hash(js) + "; base-uri 'none'; form-action 'none'")
    env.globals.update(css=Markup(css), hook_js=Markup(hook), site_js=Markup(js), csp=Markup(csp),
                       tie_n_boot=TIE_N_BOOT, tie_alpha=TIE_ALPHA, min_rank=MIN_RANK_SUBJECTS, min_count=MIN_COUNT,
                       dataset=None, top=None)
    return env


def render_site(site: Site, out: Path, top: str | None = None) -> None:
    """Write one dataset's pages into an (empty) folder.

    Args:
        site: one of `collect`'s sites.
        out: the folder to write into.
        top: link prefix from out/ to the dataset selector page (None: there is only one dataset).
    """
    env = environment()
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(env.get_template("index.html.j2").render(
        root="", site=site, dataset=site.dataset, top=top), encoding="utf-8")
    task_html, model_html = env.get_template("task.html.j2"), env.get_template("model.html.j2")
    for t in sorted(site.tasks):
        info = site.tasks[t]
        (out / "tasks" / f"{info.slug}.html").write_text(task_html.render(**task_page(site, info, top)),
                                                         encoding="utf-8")
    for name in sorted(site.models):
        mi = site.models[name]
        (out / "models" / f"{mi.slug}.html").write_text(model_html.render(**model_page(site, mi, top)),
                                                         encoding="utf-8")


def render_all(sites: list[Site], out: Path) -> None:
    """Write the whole site: one dataset's leaderboard at the top, or, when the results come from
    several datasets, a selector page linking one leaderboard per dataset (datasets/<slug>/),
    so that no table ever mixes datasets.

    Args:
        sites: from `collect`.
        out: the (empty) folder to write into.
    """
    if len(sites) == 1:
        render_site(sites[0], out)
    else:
        env = environment()
        (out / "index.html").write_text(env.get_template("datasets.html.j2").render(
            root="", sites=sites, problems=sites[0].problems, dataset=None, top=None), encoding="utf-8")
        for site in sites:
            render_site(site, out / "datasets" / site.dataset.slug, top="../../")
    (out / MARKER).write_text("written by leaderboard.build; this folder is replaced on every build\n")


# =========================================================================== atomic output
def is_ours(out: Path) -> bool:
    """An output folder may be replaced if it holds the marker, or nothing but comparison pages."""
    if not out.is_dir():
        return False
    if (out / MARKER).exists():
        return True
    return all(p.is_file() and any(p.match(pat) for pat in KEEP_PATTERNS) for p in out.iterdir())


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp)  # tmp now holds the previous site
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old)


def write_site(sites: list[Site], out_dir: Path) -> None:
    """Render the sites into a temporary sibling of out_dir and swap it in atomically, keeping the
    comparison pages (KEEP_PATTERNS) of an earlier site; nothing is half-written on failure.

    Args:
        sites: from `leaderboard.views.collect`.
        out_dir: the site folder (absent, empty or an earlier site: check with `is_ours` first).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        render_all(sites, tmp)
        if out_dir.is_dir():
            for pattern in KEEP_PATTERNS:
                for f in sorted(out_dir.glob(pattern)):
                    if f.is_file():
                        shutil.copy2(f, tmp / f.name)
        _swap_in(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
