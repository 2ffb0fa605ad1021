"""Multiple-comparison correction of "A against the best of m candidates B" (paired_bootstrap_best_of).

B is chosen as the candidate with the best metric on the same rows, so delta = A - best(B) is
biased towards B. The B side of the interval is Bonferroni-corrected over the m candidates; the A
side needs A to beat every candidate (an intersection-union test, which needs no correction).
With m = 1 both reduce to the plain two-sided t interval and p.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def _tail_p(t: np.ndarray, ref) -> np.ndarray:
    """P(T >= t) under the reference distribution for standardised deltas t (inf allowed; 0/0
    counts as t = 0)."""
    return ref.sf(np.nan_to_num(t, nan=0.0, posinf=np.inf, neginf=-np.inf))


def best_of_interval(e_hat: np.ndarray, se: np.ndarray, level: float,
                     df: int) -> tuple[float, float, float]:
    """CI and p of min_j e_j (e_j = A's advantage over candidate j; the chosen B has the smallest).

    Args:
        e_hat: (m,) observed advantages of A.
        se: (m,) their standard errors.
        level: coverage.
        df: degrees of freedom of the t reference (m - 1 for m subjects in the rarer class).

    Returns:
        (low, high, p): low = min_j(e_j - z se_j) (A beats every candidate), high =
        min_j(e_j + z_Bonferroni se_j) (some candidate beats A), p two-sided and consistent with
        the interval: p < 1 - level exactly when the interval excludes 0.
    """
    m = len(e_hat)
    alpha = 1 - level
    ref = sps.t(df)
    z = float(ref.ppf(1 - alpha / 2))
    z_b = float(ref.ppf(1 - alpha / (2 * m)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = e_hat / se
    low = float(np.min(e_hat - z * se))
    high = float(np.min(e_hat + z_b * se))
    p_a = float(np.max(_tail_p(t, ref)))            # one-sided: A beats all candidates
    p_b = float(min(1.0, m * np.min(_tail_p(-t, ref))))  # one-sided: some candidate beats A
    return low, high, float(min(1.0, 2 * min(p_a, p_b)))
