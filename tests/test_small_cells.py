"""Small-cell privacy (issue 12 item 9): no number on a leaderboard page, alone or combined with the
others, lets a reader derive a count between 1 and 9 (events, non-events, TP / FP / FN / TN,
subgroup cells).

The test plays the reader: it builds the site from planted small results (the issue's
oncology/aki_1y cell: n test 63, sensitivity 1.000, specificity 0.362, PPV 0.119, i.e. 5 events;
fairness rates x counts that give cells of 2...), parses every table of every page, and for each
row solves the displayed numbers for the counts they imply (every event count E and confusion
matrix consistent with the shown 3-decimal values). A count is *derived* when all consistent
solutions give it a value in 1..9. The solver is checked on the raw record first (it must find the
5 events), so a pass means the page hides them, not that the solver is blind.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from benchmark.fairness import fairness_report
from benchmark.metrics.evaluate import evaluate
from benchmark.model_api import Prediction
from tests.test_fairness import _data, _task, cohort  # noqa: F401 - `cohort` is a fixture used here
from tests.test_leaderboard_honesty import write_cell

SMALL = range(1, 10)
TASKS = {t: {"kind": "binary", "main_metric": "auroc", "version": 1,
             "metrics": ["auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1"], "description": "d",
             "modalities": [], "fairness": ["sex", "ethnicity"], "references": []}
         for t in ("oncology/aki_1y", "oncology/mortality_1y", "icu/los_gt3d")}


# =========================================================================== the reader
class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (th and td alike)."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> list[list[list[str]]]:
    p = _Tables()
    p.feed(html)
    return [t for t in p.tables if t]


def number(text: str | None) -> float | None:
    """The leading number a cell shows ('0.362 [0.2, 0.5]' -> 0.362), None for '<10', '—', 'withheld'."""
    m = re.match(r"^(\d+(?:\.\d+)?)(?:\s|$)", text or "")
    return float(m.group(1)) if m else None


def _r3(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def solve(n: int, sens=None, spec=None, ppv=None, npv=None, events=None) -> list[tuple[int, ...]]:
    """Every (E, N, TP, FP, FN, TN) with E + N = n consistent with the shown 3-decimal values.

    Args:
        n: samples (n test, or a subgroup's size).
        sens, spec, ppv, npv: shown rates or None (TPR = sensitivity, FPR = 1 - specificity).
        events: the event count when it is shown.

    Returns:
        The consistent count tuples.
    """
    out = []
    for e in ([events] if events is not None else range(0, n + 1)):
        neg = n - e
        for tp in range(e + 1):
            if sens is not None and _r3(tp, e) != sens:
                continue
            for tn in range(neg + 1):
                if spec is not None and _r3(tn, neg) != spec:
                    continue
                fp, fn = neg - tn, e - tp
                if ppv is not None and _r3(tp, tp + fp) != ppv:
                    continue
                if npv is not None and _r3(tn, tn + fn) != npv:
                    continue
                out.append((e, neg, tp, fp, fn, tn))
    return out


def derived_small(solutions: list[tuple[int, ...]]) -> list[str]:
    """The counts that every consistent solution puts in 1..9 (what the reader learns for sure)."""
    names = ("events", "non-events", "TP", "FP", "FN", "TN")
    if not solutions:
        return []
    return [nm for i, nm in enumerate(names) if all(s[i] in SMALL for s in solutions)]


def page_violations(html: str) -> list[str]:
    """Solve every table row of a page for counts; return what a reader could derive in 1..9."""
    bad = []
    for table in tables(html):
        head = [h.lower() for h in table[0]]
        col = {h: i for i, h in enumerate(head)}
        for row in table[1:]:
            cell = {h: (row[i] if i < len(row) else None) for h, i in col.items()}
            # a shown count is itself a derived count
            for h in ("n test", "subjects", "events", "n"):
                v = number(cell.get(h))
                if v is not None and int(v) in SMALL:
                    bad.append(f"{h} = {int(v)} shown in row {row[:2]}")
            n = number(cell.get("n test"))
            rates = {k: number(cell.get(k)) for k in ("sensitivity", "specificity", "ppv", "npv")}
            if n is not None and any(v is not None for v in rates.values()):
                sols = solve(int(n), *(rates[k] for k in ("sensitivity", "specificity", "ppv", "npv")))
                bad += [f"{c} in 1..9 from n test + rates in row {row[:2]}" for c in derived_small(sols)]
            # fairness rows: subjects, events, selection rate, TPR, FPR (one sample per subject here)
            ng, eg = number(cell.get("subjects")), number(cell.get("events"))
            tpr, fpr, sel = number(cell.get("tpr")), number(cell.get("fpr")), number(cell.get("selection rate"))
            if ng is not None and eg is not None and (tpr is not None or fpr is not None):
                sols = [s for s in solve(int(ng), tpr, None if fpr is None else round(1 - fpr, 3), events=int(eg))
                        if sel is None or _r3(s[2] + s[3], int(ng)) == sel]
                bad += [f"{c} in 1..9 from subgroup rates x counts in row {row[:2]}" for c in derived_small(sols)]
    return bad


# =========================================================================== planted results
AKI = {"n_test": 63, "n_events": 5, "sensitivity": 5 / 5, "specificity": 21 / 58, "ppv": 5 / 42, "npv": 21 / 21,
       "f1": 10 / 47}


def _aki_metrics() -> dict:
    m = {k: {"value": v, "ci_low": None, "ci_high": None, "method": "bootstrap",
             "ci_note": "CI not reported: 5 positive subjects (needs >= 10)"}
         for k, v in AKI.items() if k not in ("n_test", "n_events")}
    m["auroc"] = {"value": 0.71, "ci_low": None, "ci_high": None, "method": "bootstrap",
                  "ci_note": "CI not reported: 5 positive subjects (needs >= 10)"}
    m["_threshold"] = {"value": 0.3, "ci_low": None, "ci_high": None, "method": "youden"}
    return m


def _legacy_fairness() -> dict:
    """A fairness block as the old fairness.py wrote it: counts shown with rates that solve to cells of 2."""
    groups = [{"group": "F", "suppressed": False, "n_subjects": 200, "n_samples": 200, "n_events": 12,
               "value": 0.7, "ci_low": 0.6, "ci_high": 0.8, "tpr": 10 / 12, "fpr": 50 / 188,
               "selection_rate": 60 / 200},
              {"group": "M", "suppressed": False, "n_subjects": 200, "n_samples": 200, "n_events": 60,
               "value": 0.7, "ci_low": 0.6, "ci_high": 0.8, "tpr": 40 / 60, "fpr": 40 / 140,
               "selection_rate": 80 / 200}]
    return {"split": "held_out", "metric": "auroc", "threshold": 0.5, "min_count": 10, "notes": [],
            "attributes": {"sex": {"groups": groups, "n_groups": 2, "n_suppressed": 0, "counts_withheld": False,
                                   "worst_group": {"group": "F", "value": 0.7}, "gap": 0.0,
                                   "demographic_parity_difference": 0.1, "equalized_odds_difference": 0.17}}}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, cohort):  # noqa: F811
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    # the issue's aki_1y cell: 63 test samples, 5 events, every event above the threshold
    y = np.r_[np.ones(5), np.zeros(58)].astype(int)
    s = np.r_[rng.uniform(0.3, 1, 5), rng.uniform(0, 1, 58)]
    write_cell(root, "probe_ct", "oncology/aki_1y", y, s, metrics=_aki_metrics(),
               extra={"fairness": _legacy_fairness()})
    # a large cell whose operating point is safe to show (all cells >= 10): the page must keep it
    yb = (rng.uniform(size=400) < 0.3).astype(int)
    sb = 1 / (1 + np.exp(-(1.5 * (yb - 0.5) + rng.normal(size=400))))
    mb = {k: v.to_dict() for k, v in evaluate("binary", yb, sb, np.arange(400), n_boot=200, threshold=0.5).items()}
    # the fairness block of benchmark.fairness itself, on the 150-subject cohort of tests/test_fairness.py
    _, pop = cohort
    data = _data(cohort, _task(fairness=("sex", "ethnicity")), root)
    score = 1 / (1 + np.exp(-(1.5 * pop["y"] + np.random.default_rng(1).normal(0, 1, 150) - 0.7)))
    block = fairness_report(data, Prediction(score=score), threshold=0.45, n_boot=100)
    write_cell(root, "probe_ct", "oncology/mortality_1y", yb, sb, metrics=mb, extra={"fairness": block})
    # n test 7 (a 100-subject real cohort's ICU cell)
    write_cell(root, "probe_ct", "icu/los_gt3d", np.array([1, 1, 0, 0, 0, 0, 0]), rng.uniform(size=7))
    return root, {"fairness": block, "mortality": mb}


@pytest.fixture(scope="module")
def site(planted, tmp_path_factory) -> Path:
    from leaderboard.build import build
    return build(planted[0], tmp_path_factory.mktemp("site") / "lb", model_specs={}, tasks=TASKS)


# =========================================================================== tests
def test_solver_finds_the_issue_counts():
    """The oracle works: the numbers the old aki_1y page showed solve to exactly 5 events, 0 FN, 37 FP."""
    sols = solve(63, 1.0, 0.362, 0.119)
    assert {s[0] for s in sols} == {5} and (5, 58, 5, 37, 0, 21) in sols
    assert "events" in derived_small(sols)
    # and the old fairness rows (rates x counts) give cells of 2
    assert derived_small(solve(200, round(10 / 12, 3), round(1 - 50 / 188, 3), events=12)) == ["FN"]


def test_no_page_lets_a_reader_derive_a_small_count(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 5
    for p in pages:
        html = p.read_text(encoding="utf-8")
        assert page_violations(html) == [], p.relative_to(site)
        # notes and reasons never state a small count either ("5 positive subjects")
        text = re.sub(r"<[^>]+>", " ", html)
        assert not re.search(r"(?<![\d.])[1-9]\s+(?:positive|negative|subjects?\b|events?\b|with the outcome)", text), p


def test_page_still_shows_what_is_safe(site, planted):
    """Not vacuous: the large cell keeps its operating point, the small one says why it is withheld."""
    _, d = planted
    big = (site / "tasks" / "oncology--mortality_1y.html").read_text()
    for k in ("sensitivity", "specificity", "ppv"):
        assert f"{d['mortality'][k]['value']:.3f}" in big, k
    aki = (site / "tasks" / "oncology--aki_1y.html").read_text()
    assert ">withheld<" in aki and "0.362" not in aki and "0.119" not in aki
    assert "&lt;10 positive subjects" in aki
    # the legacy fairness block: rates withheld (they multiply back into FN = 2), counts kept
    assert "group rates withheld" in aki and "0.833" not in aki
    # the benchmark.fairness block: its own rule applied (sex and ethnicity rates withheld at 0.45)
    f = d["fairness"]["attributes"]
    assert all(a.get("rates_withheld") for a in f.values())
    assert "rates and parity differences withheld" in big
    # n test 7 is shown as <10 on the task and model pages
    for p in (site / "tasks" / "icu--los_gt3d.html", site / "models" / "probe_ct.html"):
        assert "&lt;10" in p.read_text()


def test_fairness_block_rates_never_solve_to_small_cells(cohort, tmp_path):  # noqa: F811
    """benchmark.fairness on its own: for every threshold, every group whose rates are reported has
    rates x counts that solve to no cell in 1..9 (and the oracle shows some thresholds would)."""
    _, pop = cohort
    data = _data(cohort, _task(fairness=("sex", "ethnicity", "race")), tmp_path)
    score = 1 / (1 + np.exp(-(1.5 * pop["y"] + np.random.default_rng(1).normal(0, 1, 150) - 0.7)))
    withheld = 0
    for thr in (0.2, 0.45, 0.6, 0.95):
        rep = fairness_report(data, Prediction(score=score), threshold=thr, n_boot=50)
        for a in rep["attributes"].values():
            withheld += bool(a.get("rates_withheld"))
            for g in a["groups"]:
                if g.get("suppressed") or g.get("tpr") is None or "n_events" not in g:
                    continue
                # counts and rates shown: the reader solves them directly
                sols = solve(g["n_samples"], round(g["tpr"], 3), round(1 - g["fpr"], 3), events=g["n_events"])
                assert derived_small(sols) == [], (thr, g)
    assert withheld >= 1
    # a score that is all above / all below the threshold has empty cells only: rates are shown
    rep = fairness_report(data, Prediction(score=np.full(150, 0.9)), threshold=0.5, n_boot=50)
    eth = rep["attributes"]["ethnicity"]
    assert "rates_withheld" not in eth and all(g["tpr"] == 1.0 for g in eth["groups"])
    for g in eth["groups"]:
        assert derived_small(solve(g["n_samples"], g["tpr"], round(1 - g["fpr"], 3), events=g["n_events"])) == []
