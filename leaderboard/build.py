"""Build the static HTML leaderboard from result files: `build(results_dir, out_dir) -> out_dir`.

The site is a pure function of the result files (plus the task and model registries for
descriptions): the same results give byte-identical files (sorted iteration, fixed number
formatting, no timestamps, no absolute paths). Pages:

    index.html                 one table per task family: models x tasks, main metric with 95% CI,
                               rank, a star on the best and on every model statistically tied
                               with it, macro average and mean rank per family; the leak probe
                               as a pass / fail audit outside the rankings; filters by model kind
                               and modality, sortable columns; scaling plots
    tasks/<task>.html          all metrics with CIs; ROC, PR and calibration plots (binary),
                               per-label AUROC (multilabel), Kaplan-Meier by risk tertile and
                               td-AUC (survival), binned predicted vs observed (regression);
                               fairness tables; SHAP summaries
    models/<model>.html        the model card (registry spec, else what the results say), results
                               and compute used, scaling plot when several sizes exist

Several seeds of a cell are averaged: value = mean over seeds, CI = mean of the per-seed bootstrap
intervals, and the seed standard deviation is shown. Only the newest version of each task is
ranked; results of older task versions are counted and listed, not mixed in.

Datasets: every page names the dataset (name + data fingerprint) its numbers come from. Results of
several datasets (fingerprints) in one folder are never mixed: index.html becomes a dataset selector
and each dataset gets its own leaderboard under datasets/<name>-<fingerprint>/.

Honesty: a cell is ranked only with at least MIN_CI_SUBJECTS test subjects in the rarer outcome
class and a main-metric CI; ties with the best are decided by a paired subject bootstrap
(`benchmark.stats.paired_bootstrap`) on the two models' held-out predictions of the same seed.

Small cells: no displayed number, alone or combined, gives a count of 1..9. Counts below 10 are
shown as "<10" (also inside notes such as "CI not reported: 7 positive subjects"); sensitivity,
specificity, PPV, NPV and F1 are withheld when, with n test, they solve to an event count or a
TP / FP / FN / TN cell below 10; fairness group rates are withheld when rates x counts would.

Privacy: pages hold aggregates only. Curves are read on fixed grids or in bins of at least 10
subjects (see `leaderboard.plots`), times of td-AUC are shown rounded to whole days, thresholds to
two decimals, and no subject id, time stamp or single-patient value is written.

The output folder is replaced atomically: the site is built into a temporary sibling folder and
swapped in (renameat2 RENAME_EXCHANGE where the OS offers it, else two renames). An existing
output folder is only replaced if it is empty or was written by this function (it holds the
marker file `.mehr-bench-leaderboard`); comparison pages (`compare-*.html`) in it are kept.

Code map (imports point one way): `leaderboard.records` reads result files and groups them,
`leaderboard.rules` applies the honesty rules (ties, audits, unranked cells, small-cell
redaction), `leaderboard.figures` draws a page's plots, `leaderboard.views` builds the page models,
`leaderboard.render` writes them with Jinja2 and swaps the folder in atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from benchmark.errors import UserError
from leaderboard.render import is_ours, write_site
from leaderboard.views import collect


def build(results_dir: Path, out_dir: Path, *, model_specs: Mapping[str, Any] | None = None,
          tasks: Mapping[str, Any] | None = None) -> Path:
    """Build the static leaderboard of every result file under results_dir into out_dir.

    Args:
        results_dir: the results folder (`<results>/<model>/<task>/seed<k>.json` + predictions).
        out_dir: the site folder; replaced atomically (must be absent, empty or an earlier site).
        model_specs: name -> ModelSpec dict overriding the model registry (tests, offline use).
        tasks: name -> TaskSpec overriding the task registry.

    Returns:
        out_dir (open out_dir / "index.html").

    Raises:
        UserError: results_dir missing, or out_dir exists and is not a leaderboard folder.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise UserError("results folder not found", file=results_dir, field="--results",
                        fix="run `python -m benchmark run ...` first or pass the folder that holds the results")
    if out_dir.exists() and not is_ours(out_dir):
        raise UserError("output folder exists and is not a leaderboard built by this tool", file=out_dir,
                        field="--out", fix="pass a new or empty folder (the output is replaced on every build)")
    sites = collect(results_dir, exclude=out_dir, model_specs=model_specs, tasks=tasks)
    write_site(sites, out_dir)
    return out_dir
