"""Inline SVG plots and the aggregate curves they draw (numpy only; no matplotlib).

Every plot is a self-contained `<svg>` string (markupsafe.Markup) meant to sit inside the page, so
the page's CSS styles it: lines and points use `currentColor` inside `<g class="cK">` groups, and
the stylesheet maps c0..c7 to a palette with a light and a dark (prefers-color-scheme) variant;
text and axes use the page's foreground colour. All text is escaped; coordinates are written with
one decimal, so the same data gives byte-identical SVG.

Privacy: curves are aggregates computed here from the predictions, never raw points:
- ROC: true-positive rate read on a fixed false-positive-rate grid;
- PR: interpolated precision (best precision at recall >= r) on a fixed recall grid;
- calibration: fixed-width probability bins, each with at least MIN_COUNT subjects (others dropped);
- Kaplan-Meier by predicted-risk tertile: survival read on a fixed time grid, cut where fewer than
  MIN_COUNT subjects remain at risk; tertiles with fewer than MIN_COUNT subjects are dropped;
- regression: equal-count bins of the prediction (bin means only, never the bin edges).
Curves need at least MIN_COUNT subjects with and without the event; otherwise none is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from markupsafe import Markup, escape

MIN_COUNT = 10
N_COLORS = 8
FPR_GRID = tuple(round(x, 4) for x in np.linspace(0.0, 1.0, 51))
RECALL_GRID = tuple(round(x, 4) for x in np.linspace(0.02, 1.0, 50))


# =========================================================================== aggregate curves
def _n_subj(sid: np.ndarray) -> int:
    return int(len(np.unique(sid)))


def enough_both_classes(y: np.ndarray, sid: np.ndarray, min_count: int = MIN_COUNT) -> str | None:
    """None when at least min_count subjects have y = 1 and min_count have y = 0, else why not.

    Args:
        y: (n,) 0/1 outcomes.
        sid: (n,) subject ids.
        min_count: the threshold.

    Returns:
        None or a reason in words.
    """
    y = np.asarray(y).astype(bool)
    if _n_subj(sid[y]) < min_count:
        return f"fewer than {min_count} subjects with the outcome"
    if _n_subj(sid[~y]) < min_count:
        return f"fewer than {min_count} subjects without the outcome"
    return None


def _cuts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (TP, FP) at each distinct score threshold, descending (ties form one cut)."""
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order].astype(float), s[order]
    last = np.r_[ss[1:] != ss[:-1], True]
    return np.cumsum(ys)[last], np.cumsum(1.0 - ys)[last]


def roc_points(y, s, fpr_grid: Sequence[float] = FPR_GRID) -> list[tuple[float, float]]:
    """ROC curve read on a fixed FPR grid: TPR(f) = the best TPR at any threshold with FPR <= f.

    Args:
        y: (n,) 0/1 labels (both classes present).
        s: (n,) scores.
        fpr_grid: false-positive rates to read the curve at.

    Returns:
        [(fpr, tpr)] on the grid.
    """
    y = np.asarray(y).astype(bool)
    tp, fp = _cuts(y, np.asarray(s, dtype=float))
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    g = np.asarray(fpr_grid, dtype=float)
    idx = np.searchsorted(fpr, g + 1e-12, side="right") - 1
    return [(float(a), float(b)) for a, b in zip(g, tpr[np.maximum(idx, 0)])]


def pr_points(y, s, recall_grid: Sequence[float] = RECALL_GRID) -> list[tuple[float, float]]:
    """Interpolated precision-recall curve: P(r) = max precision at any threshold with recall >= r.

    Args:
        y: (n,) 0/1 labels (with positives).
        s: (n,) scores.
        recall_grid: recall values in (0, 1].

    Returns:
        [(recall, precision)] on the grid.
    """
    y = np.asarray(y).astype(bool)
    tp, fp = _cuts(y, np.asarray(s, dtype=float))
    prec = tp / (tp + fp)
    rec = tp / y.sum()
    prec_i = np.maximum.accumulate(prec[::-1])[::-1]
    g = np.asarray(recall_grid, dtype=float)
    idx = np.searchsorted(rec, g - 1e-12, side="left")
    return [(float(r), float(prec_i[i])) for r, i in zip(g, idx) if i < len(rec)]


def calibration_bins(y, p, sid, n_bins: int = 10, min_count: int = MIN_COUNT
                     ) -> tuple[list[tuple[float, float]], int]:
    """Reliability diagram: mean predicted probability vs observed event rate per fixed-width bin.

    Args:
        y: (n,) 0/1 outcomes.
        p: (n,) predicted probabilities in [0, 1].
        sid: (n,) subject ids.
        n_bins: equal-width bins on [0, 1] (p == 1 goes to the last).
        min_count: bins with fewer subjects (or rows) are left out.

    Returns:
        ([(mean predicted, observed rate)] for the kept bins, number of bins left out).
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    b = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out, dropped = [], 0
    for k in range(n_bins):
        m = b == k
        if not m.any():
            continue
        if m.sum() < min_count or _n_subj(sid[m]) < min_count:
            dropped += 1
            continue
        out.append((float(p[m].mean()), float(y[m].mean())))
    return out, dropped


def nice_number(x: float, up: bool = True) -> float:
    """Round x to a 'nice' value with two significant digits (up or down).

    Args:
        x: a positive number.
        up: round up (True) or down.

    Returns:
        The rounded number (x itself when x <= 0).
    """
    if x <= 0 or not math.isfinite(x):
        return x
    e = 10 ** (math.floor(math.log10(x)) - 1)
    return (math.ceil(x / e) if up else math.floor(x / e)) * e


def km_time_grid(time, horizon: float | None, n: int = 41) -> np.ndarray:
    """Fixed time grid for Kaplan-Meier curves: 0 .. horizon, or 0 .. a nice rounding of the 90th
    percentile of follow-up (never an individual's time).

    Args:
        time: (n,) follow-up times.
        horizon: the task horizon in the same unit, if any.
        n: grid points.

    Returns:
        (n,) grid.
    """
    t_max = horizon if horizon and math.isfinite(horizon) else nice_number(float(np.quantile(time, 0.9)))
    return np.linspace(0.0, float(t_max), n)


def km_by_risk_tertile(time, event, risk, sid, t_grid, min_count: int = MIN_COUNT
                       ) -> list[tuple[str, list[tuple[float, float]]]]:
    """Kaplan-Meier survival per tertile of predicted risk, read on a fixed time grid.

    Args:
        time: (n,) follow-up times.
        event: (n,) event indicators.
        risk: (n,) predicted risk (higher = earlier event).
        sid: (n,) subject ids.
        t_grid: times to read the curves at.
        min_count: tertiles with fewer subjects are dropped; each curve stops where fewer than
            min_count rows remain at risk.

    Returns:
        [(name, [(t, S(t))])] for the low, middle and high risk tertiles that are kept.
    """
    from benchmark.metrics.survival import kaplan_meier, step_at
    t = np.asarray(time, dtype=float)
    ev = np.asarray(event).astype(bool)
    r = np.asarray(risk, dtype=float)
    q1, q2 = np.quantile(r, [1 / 3, 2 / 3])
    groups = (("low risk", r <= q1), ("middle risk", (r > q1) & (r <= q2)), ("high risk", r > q2))
    out = []
    for name, m in groups:
        if _n_subj(sid[m]) < min_count or not ev[m].any():
            continue
        kt, kp = kaplan_meier(t[m], ev[m])
        s = step_at(kt, kp, t_grid)
        at_risk = (t[m][None, :] >= np.asarray(t_grid)[:, None]).sum(axis=1)
        pts = [(float(a), float(b)) for a, b, n_r in zip(t_grid, s, at_risk) if n_r >= min_count]
        if len(pts) >= 2:
            out.append((name, pts))
    return out


def binned_regression(y, pred, sid, n_bins: int = 10, min_count: int = MIN_COUNT
                      ) -> list[tuple[float, float]]:
    """Mean prediction vs mean observed value in equal-count bins of the prediction.

    Args:
        y: (n,) observed values.
        pred: (n,) predictions.
        sid: (n,) subject ids.
        n_bins: number of bins.
        min_count: bins with fewer subjects are dropped.

    Returns:
        [(mean prediction, mean observed)] per kept bin.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(pred, dtype=float)
    order = np.argsort(p, kind="stable")
    out = []
    for idx in np.array_split(order, min(n_bins, max(1, len(p) // max(min_count, 1)))):
        if len(idx) < min_count or _n_subj(sid[idx]) < min_count:
            continue
        out.append((float(p[idx].mean()), float(y[idx].mean())))
    return out


# =========================================================================== SVG rendering
@dataclass
class Series:
    """One line (or set of points) of a plot.

    Attributes:
        name: legend text.
        points: [(x, y)].
        lo: optional lower bounds per point (drawn as error bars or a band).
        hi: optional upper bounds per point.
        color: palette index (default: the series' position).
        dashed: draw dashed.
    """

    name: str
    points: list[tuple[float, float]]
    lo: list[float] | None = None
    hi: list[float] | None = None
    color: int | None = None
    dashed: bool = False
    markers: bool = False
    extra: dict = field(default_factory=dict)


def _f(x: float) -> str:
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def tick_label(v: float) -> str:
    """Compact tick text: 0.25, 3, 1.5k, 2M, 1.2B.

    Args:
        v: tick value.

    Returns:
        The label.
    """
    a = abs(v)
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suf}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n evenly spaced round tick values covering [lo, hi].

    Args:
        lo: range start.
        hi: range end.
        n: wanted number of ticks.

    Returns:
        Tick values within [lo, hi].
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


class _Axes:
    def __init__(self, x_range, y_range, left, top, w, h, log_x=False):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.top, self.w, self.h = left, top, w, h
        self.log_x = log_x

    def x(self, v: float) -> float:
        if self.log_x:
            a, b, v = math.log10(self.x0), math.log10(self.x1), math.log10(max(v, 1e-300))
        else:
            a, b = self.x0, self.x1
        return self.left + (v - a) / (b - a) * self.w if b != a else self.left + self.w / 2

    def y(self, v: float) -> float:
        a, b = self.y0, self.y1
        return self.top + self.h - (v - a) / (b - a) * self.h if b != a else self.top + self.h / 2


def _svg_open(width: int, height: int, label: str, cls: str = "plot") -> list[str]:
    lab = escape(label)
    return [f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{lab}">',
            f"<title>{lab}</title>",
            f'<text class="title" x="{_f(width / 2)}" y="16" text-anchor="middle">'
            f'{escape(_fit(label, width - 12))}</text>']


def _fit(text: str, px: float, char_px: float = 6.6) -> str:
    """Shorten text with an ellipsis to about px pixels (the full text stays in the <title>)."""
    n = int(px / char_px)
    return text if len(text) <= n else text[: max(n - 1, 1)] + "\u2026"


def _legend(series_names: list[tuple[str, int, bool]], x: float, y: float) -> list[str]:
    out = []
    for i, (name, color, dashed) in enumerate(series_names):
        yy = y + 16 * i
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<g class="c{color % N_COLORS}"><line x1="{_f(x)}" y1="{_f(yy - 4)}" x2="{_f(x + 18)}" '
                   f'y2="{_f(yy - 4)}" stroke="currentColor" stroke-width="2.5"{dash}/></g>'
                   f'<text class="legend" x="{_f(x + 24)}" y="{_f(yy)}">{escape(name)}</text>')
    return out


def _axes_svg(ax: _Axes, x_label: str, y_label: str, x_ticks, y_ticks, x_fmt, y_fmt) -> list[str]:
    out = ['<g class="axes">']
    for t in y_ticks:
        yy = ax.y(t)
        out.append(f'<line class="grid" x1="{_f(ax.left)}" y1="{_f(yy)}" x2="{_f(ax.left + ax.w)}" y2="{_f(yy)}"/>')
        out.append(f'<text class="tick" x="{_f(ax.left - 5)}" y="{_f(yy + 4)}" text-anchor="end">'
                   f'{escape(y_fmt(t))}</text>')
    for t in x_ticks:
        xx = ax.x(t)
        out.append(f'<line class="grid" x1="{_f(xx)}" y1="{_f(ax.top)}" x2="{_f(xx)}" y2="{_f(ax.top + ax.h)}"/>')
        out.append(f'<text class="tick" x="{_f(xx)}" y="{_f(ax.top + ax.h + 15)}" text-anchor="middle">'
                   f'{escape(x_fmt(t))}</text>')
    out.append(f'<rect class="frame" x="{_f(ax.left)}" y="{_f(ax.top)}" width="{_f(ax.w)}" '
               f'height="{_f(ax.h)}" fill="none"/>')
    out.append(f'<text class="label" x="{_f(ax.left + ax.w / 2)}" y="{_f(ax.top + ax.h + 32)}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    cy = ax.top + ax.h / 2
    out.append(f'<text class="label" x="12" y="{_f(cy)}" text-anchor="middle" '
               f'transform="rotate(-90 12 {_f(cy)})">{escape(y_label)}</text>')
    out.append("</g>")
    return out


def line_plot(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
              x_range: tuple[float, float] = (0.0, 1.0), y_range: tuple[float, float] = (0.0, 1.0),
              diagonal: bool = False, log_x: bool = False, step: bool = False, band: bool = False,
              ref_y: float | None = None, width: int = 360, height: int = 300,
              x_format: Callable[[float], str] = tick_label,
              y_format: Callable[[float], str] = tick_label) -> Markup:
    """A line/point chart with axes, grid, legend and optional error bars or CI band.

    Args:
        series: the lines to draw (points sorted by x).
        title: plot title (also the accessible label).
        x_label: x axis label.
        y_label: y axis label.
        x_range: (min, max) of x (log_x needs min > 0).
        y_range: (min, max) of y.
        diagonal: draw the y = x reference line.
        log_x: logarithmic x axis.
        step: draw lines as post-steps (Kaplan-Meier).
        band: draw lo/hi as a shaded band (else as error bars).
        ref_y: draw a dashed horizontal reference line at this y.
        width: SVG width in px.
        height: plot height in px (the legend adds 16 px per series).
        x_format: tick text for x.
        y_format: tick text for y.

    Returns:
        Markup holding one <svg> element.
    """
    left, top, right, bottom = 52, 26, 12, 42
    legend_h = 16 * len(series) + (6 if series else 0)
    total_h = height + legend_h
    ax = _Axes(x_range, y_range, left, top, width - left - right, height - top - bottom, log_x)
    out = _svg_open(width, total_h, title)
    if log_x:
        lo_e, hi_e = math.floor(math.log10(x_range[0])), math.ceil(math.log10(x_range[1]))
        x_ticks = [10.0 ** e for e in range(lo_e, hi_e + 1) if x_range[0] <= 10.0 ** e <= x_range[1]]
    else:
        x_ticks = nice_ticks(*x_range)
    out += _axes_svg(ax, x_label, y_label, x_ticks, nice_ticks(*y_range), x_format, y_format)
    if diagonal:
        out.append(f'<line class="ref" x1="{_f(ax.x(x_range[0]))}" y1="{_f(ax.y(y_range[0]))}" '
                   f'x2="{_f(ax.x(x_range[1]))}" y2="{_f(ax.y(y_range[1]))}"/>')
    if ref_y is not None and y_range[0] <= ref_y <= y_range[1]:
        out.append(f'<line class="ref" x1="{_f(ax.left)}" y1="{_f(ax.y(ref_y))}" '
                   f'x2="{_f(ax.left + ax.w)}" y2="{_f(ax.y(ref_y))}"/>')
    for i, s in enumerate(series):
        color = (s.color if s.color is not None else i) % N_COLORS
        out.append(f'<g class="c{color}">')
        pts = [(ax.x(x), ax.y(y)) for x, y in s.points]
        if s.lo is not None and s.hi is not None:
            lows = [(ax.x(x), ax.y(v)) for (x, _), v in zip(s.points, s.lo)]
            highs = [(ax.x(x), ax.y(v)) for (x, _), v in zip(s.points, s.hi)]
            if band and len(pts) >= 2:
                poly = highs + lows[::-1]
                out.append('<polygon class="band" fill="currentColor" points="'
                           + " ".join(f"{_f(a)},{_f(b)}" for a, b in poly) + '"/>')
            else:
                for (px, _), (_, ly), (_, hy) in zip(pts, lows, highs):
                    out.append(f'<line class="err" x1="{_f(px)}" y1="{_f(ly)}" x2="{_f(px)}" y2="{_f(hy)}" '
                               'stroke="currentColor"/>')
        if len(pts) >= 2:
            if step:
                d = f"M{_f(pts[0][0])},{_f(pts[0][1])}"
                for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
                    d += f" H{_f(x1)} V{_f(y1)}"
            else:
                d = "M" + " L".join(f"{_f(a)},{_f(b)}" for a, b in pts)
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            out.append(f'<path class="line" d="{d}" fill="none" stroke="currentColor"{dash}/>')
        if s.markers or len(pts) == 1:
            for a, b in pts:
                out.append(f'<circle class="pt" cx="{_f(a)}" cy="{_f(b)}" r="3.5" fill="currentColor"/>')
        out.append("</g>")
    out += _legend([(s.name, (s.color if s.color is not None else i), s.dashed) for i, s in enumerate(series)],
                   left, height + 14)
    out.append("</svg>")
    return Markup("".join(out))


def bar_plot(items: Sequence[tuple], *, title: str, x_label: str, width: int = 560,
             label_width: int = 220, color: int = 0, value_format: Callable[[float], str] = tick_label
             ) -> Markup:
    """Horizontal bar chart (e.g. mean |SHAP| per feature), in the given order; signed values get
    a zero line and bars to either side.

    Args:
        items: [(label, value)] or [(label, value, tooltip)].
        title: plot title.
        x_label: axis label under the bars.
        width: SVG width.
        label_width: px reserved for labels on the left (longer labels are shortened with ...).
        color: palette index.
        value_format: text written after each bar.

    Returns:
        Markup holding one <svg>.
    """
    bar_h, gap, top = 16, 5, 26
    height = top + len(items) * (bar_h + gap) + 34
    vals = [float(it[1]) for it in items]
    lo, hi = min(vals + [0.0]), max(vals + [0.0])
    if hi - lo <= 0:
        hi = lo + 1e-12
    plot_w = width - label_width - 80
    zero = label_width + (0.0 - lo) / (hi - lo) * plot_w
    out = _svg_open(width, height, title)
    out.append(f'<g class="c{color % N_COLORS}">')
    max_chars = max(8, label_width // 7)
    if lo < 0:
        out.append(f'<line class="ref" x1="{_f(zero)}" y1="{top - 2}" x2="{_f(zero)}" '
                   f'y2="{_f(top + len(items) * (bar_h + gap))}"/>')
    for i, it in enumerate(items):
        label, v = str(it[0]), float(it[1])
        tip = str(it[2]) if len(it) > 2 and it[2] else label
        y = top + i * (bar_h + gap)
        text = label if len(label) <= max_chars else label[:max_chars - 1] + "\u2026"
        x_end = label_width + (v - lo) / (hi - lo) * plot_w
        x0, w = min(zero, x_end), abs(x_end - zero)
        out.append(f'<text class="tick" x="{_f(label_width - 6)}" y="{_f(y + bar_h - 4)}" '
                   f'text-anchor="end"><title>{escape(tip)}</title>{escape(text)}</text>')
        out.append(f'<rect class="bar" x="{_f(x0)}" y="{_f(y)}" width="{_f(w)}" height="{bar_h}" '
                   'fill="currentColor"/>')
        out.append(f'<text class="tick" x="{_f(max(zero, x_end) + 4)}" y="{_f(y + bar_h - 4)}">'
                   f'{escape(value_format(v))}</text>')
    out.append("</g>")
    out.append(f'<text class="label" x="{_f(label_width + plot_w / 2)}" y="{_f(height - 10)}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def forest_plot(rows: Sequence[tuple[str, float, float, float, bool]], *, title: str, x_label: str,
                width: int = 640, label_width: int = 230) -> Markup:
    """Forest plot: one estimate with its CI per row; pooled rows are drawn as diamonds.

    Args:
        rows: [(label, estimate, ci_low, ci_high, pooled)].
        title: plot title.
        x_label: axis label (e.g. "AUROC(A) - AUROC(B)").
        width: SVG width.
        label_width: px for the row labels.

    Returns:
        Markup holding one <svg>.
    """
    row_h, top = 22, 28
    height = top + len(rows) * row_h + 44
    finite = [v for r in rows for v in r[1:4] if v is not None and math.isfinite(v)]
    span = max([abs(v) for v in finite] + [1e-3]) * 1.1
    x_range = (-span, span)
    ax = _Axes(x_range, (0, 1), label_width, top, width - label_width - 20, len(rows) * row_h)
    out = _svg_open(width, height, title)
    for t in nice_ticks(*x_range):
        xx = ax.x(t)
        out.append(f'<line class="grid" x1="{_f(xx)}" y1="{top}" x2="{_f(xx)}" y2="{_f(top + len(rows) * row_h)}"/>')
        out.append(f'<text class="tick" x="{_f(xx)}" y="{_f(top + len(rows) * row_h + 15)}" '
                   f'text-anchor="middle">{escape(f"{t:+.3g}" if t else "0")}</text>')
    out.append(f'<line class="ref" x1="{_f(ax.x(0))}" y1="{top}" x2="{_f(ax.x(0))}" '
               f'y2="{_f(top + len(rows) * row_h)}"/>')
    for i, (label, est, lo, hi, pooled) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        out.append(f'<text class="tick{" strong" if pooled else ""}" x="{_f(label_width - 8)}" y="{_f(y + 4)}" '
                   f'text-anchor="end">{escape(label)}</text>')
        if est is None or not math.isfinite(est):
            continue
        color = 1 if pooled else 0
        out.append(f'<g class="c{color}">')
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            if pooled:
                out.append(f'<polygon fill="currentColor" points="{_f(ax.x(lo))},{_f(y)} {_f(ax.x(est))},{_f(y - 7)} '
                           f'{_f(ax.x(hi))},{_f(y)} {_f(ax.x(est))},{_f(y + 7)}"/>')
            else:
                out.append(f'<line class="err" x1="{_f(ax.x(lo))}" y1="{_f(y)}" x2="{_f(ax.x(hi))}" y2="{_f(y)}" '
                           'stroke="currentColor"/>')
        if not pooled:
            out.append(f'<rect x="{_f(ax.x(est) - 4)}" y="{_f(y - 4)}" width="8" height="8" fill="currentColor"/>')
        out.append("</g>")
    out.append(f'<text class="label" x="{_f(ax.left + ax.w / 2)}" y="{_f(height - 8)}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
