"""Core of the synthetic health-system simulator: event buffer, subjects, background care, follow-up.

Everything works on whole shards at once (numpy arrays over subjects, visits or hours), never with
a Python loop over subjects or events.  Times are float days since 1970-01-01 while simulating; they
are rounded to whole minutes (microsecond timestamps) only when the shard is finalised, so equal
inputs always give equal bytes.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from data_prep import synthetic_vocab as V

HOUR = 1.0 / 24.0
YEAR = 365.25
MINUTE_US = 60_000_000
_EPOCH = _dt.date(1970, 1, 1)


def days(year: int, month: int = 1, day: int = 1) -> float:
    """Days since 1970-01-01 of a calendar date (the simulator's time unit).

    Args:
        year, month, day: the date.

    Returns:
        The date as float days since the Unix epoch.
    """
    return float((_dt.date(year, month, day) - _EPOCH).days)


CUTOFF = days(2025, 12, 31) + 23.0 * HOUR  # data cut-off: nothing is recorded after it
CODES = V.all_codes()
CODE_INDEX = {c: i for i, c in enumerate(CODES)}


def cid(code: str) -> int:
    """Index of a code in the sorted vocabulary (sorting indices == sorting the strings)."""
    return CODE_INDEX[code]


def cids(codes: list[str]) -> np.ndarray:
    """Vectorised :func:`cid` for a list of codes (used as a lookup table: ``cids(L)[choice]``)."""
    return np.array([CODE_INDEX[c] for c in codes], dtype=np.int32)


def logistic(x: np.ndarray) -> np.ndarray:
    """Elementwise logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand per-parent counts into (parent index, index within parent) arrays.

    Args:
        counts: non-negative integer count per parent.

    Returns:
        Two int64 arrays of length ``counts.sum()``: the parent of each child and its rank 0..c-1.
    """
    counts = np.asarray(counts, dtype=np.int64)
    parent = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(parent.size, dtype=np.int64) - np.repeat(starts, counts)
    return parent, within


class Events:
    """Columnar buffer of one shard's events (local subject index, time, code index, value, text).

    Each ``add`` call appends one vectorised block; ``finalize`` truncates at end of follow-up,
    sorts and converts to a MEDS Arrow table.
    """

    def __init__(self) -> None:
        self._subj: list[np.ndarray] = []
        self._time: list[np.ndarray] = []
        self._code: list[np.ndarray] = []
        self._value: list[np.ndarray] = []
        self._text_idx: list[np.ndarray] = []
        self._texts: list[np.ndarray] = []
        self._n_text = 0

    def add(self, subj, t, code, value=None, text=None) -> None:
        """Append a block of events.

        Args:
            subj: local subject indices (int array).
            t: times in float days (array or scalar, NaN = static), broadcast to ``subj``.
            code: one code string, or an int array of code indices (see :func:`cids`).
            value: optional numeric values (array or scalar), NaN = null.
            text: optional object array of strings (one per event).
        """
        subj = np.asarray(subj, dtype=np.int64)
        n = subj.size
        if n == 0:
            return
        self._subj.append(subj)
        self._time.append(np.broadcast_to(np.asarray(t, dtype=np.float64), (n,)).copy())
        if isinstance(code, str):
            self._code.append(np.full(n, CODE_INDEX[code], dtype=np.int32))
        else:
            self._code.append(np.broadcast_to(np.asarray(code, dtype=np.int32), (n,)).copy())
        if value is None:
            self._value.append(np.full(n, np.nan, dtype=np.float32))
        else:
            self._value.append(np.broadcast_to(np.asarray(value, dtype=np.float32), (n,)).copy())
        if text is None:
            self._text_idx.append(np.full(n, -1, dtype=np.int64))
        else:
            text = np.asarray(text, dtype=object)
            self._texts.append(text)
            self._text_idx.append(self._n_text + np.arange(n, dtype=np.int64))
            self._n_text += n

    def finalize(self, subject_ids: np.ndarray, end: np.ndarray, drop_codes: tuple[str, ...] = ()) -> pa.Table:
        """Drop events after each subject's end of follow-up, sort, and build the MEDS table.

        Args:
            subject_ids: sorted int64 subject ids; local index i means ``subject_ids[i]``.
            end: end of follow-up per subject (float days); events later than it are dropped.
            drop_codes: codes never recorded (a site's coding habit); their events are dropped.

        Returns:
            Arrow table with the MEDS DataSchema columns, sorted by subject_id, time (static
            first), code.  Ties keep insertion order (a stable sort), so output is deterministic.
        """
        subj = np.concatenate(self._subj)
        t = np.concatenate(self._time)
        code = np.concatenate(self._code)
        value = np.concatenate(self._value)
        tidx = np.concatenate(self._text_idx)
        static = np.isnan(t)
        t_us = np.where(static, np.iinfo(np.int64).min, to_us(np.where(static, 0.0, t)))
        end_us = to_us(end)
        keep = static | (t_us <= end_us[subj])
        if drop_codes:
            keep &= ~np.isin(code, cids(list(drop_codes)))
        subj, t_us, code, value, tidx, static = (a[keep] for a in (subj, t_us, code, value, tidx, static))
        order = np.lexsort((code, t_us, subj))
        subj, t_us, code, value, tidx, static = (a[order] for a in (subj, t_us, code, value, tidx, static))
        texts = np.concatenate(self._texts) if self._texts else np.array([], dtype=object)
        text_arr = pa.array(texts, type=pa.large_string()).take(pa.array(tidx, mask=tidx < 0))
        return pa.table({
            "subject_id": pa.array(subject_ids[subj], type=pa.int64()),
            "time": pa.array(t_us, mask=static, type=pa.int64()).cast(pa.timestamp("us")),
            "code": pa.array(np.asarray(CODES, dtype=object)).take(pa.array(code)),
            "numeric_value": pa.array(value, mask=np.isnan(value), type=pa.float32()),
            "text_value": text_arr,
        })


def to_us(t_days: np.ndarray) -> np.ndarray:
    """Float days since the epoch -> int64 microseconds, rounded to the whole minute."""
    return np.round(np.asarray(t_days, dtype=np.float64) * 1440.0).astype(np.int64) * MINUTE_US


@dataclass
class Shard:
    """Latent state and schedule of one shard's subjects (all arrays have one entry per subject).

    Latents: ``z`` overall health (higher = healthier), ``g`` genetic T2D risk (visible only in
    the PRS vector), ``u_onc`` / ``u_pe`` / ``u_cac`` image latents (tumour aggressiveness, clot
    burden, coronary calcium; visible only in CT/WSI embeddings).
    """

    ids: np.ndarray
    n: int
    male: np.ndarray
    race: np.ndarray
    hispanic: np.ndarray
    birth: np.ndarray
    start: np.ndarray          # record start (first primary-care visit)
    z: np.ndarray
    g: np.ndarray
    u_onc: np.ndarray
    u_pe: np.ndarray
    u_cac: np.ndarray
    end0: np.ndarray           # end of follow-up from background death / loss / cut-off only
    bg_death: np.ndarray
    bmi0: np.ndarray
    creat0: np.ndarray
    hgb0: np.ndarray
    plt0: np.ndarray
    wbc0: np.ndarray
    anc0: np.ndarray
    hba1c0: np.ndarray
    onset: np.ndarray          # (n, len(CHRONIC)) onset time of each chronic condition, inf = never
    t2d_onset: np.ndarray      # inf = never within the simulation
    deaths: dict[str, np.ndarray] = field(default_factory=dict)  # process -> death time (inf = none)
    end: np.ndarray | None = None      # final end of follow-up
    died: np.ndarray | None = None     # death (True) vs censoring at end

    def age(self, t: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """Age in years at time ``t`` of subjects ``idx`` (all subjects when None)."""
        b = self.birth if idx is None else self.birth[idx]
        return (t - b) / YEAR

    def age_std(self, t: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """Standardised age ((age - 60) / 15), the scale every hazard uses."""
        return (self.age(t, idx) - 60.0) / 15.0

    def has(self, code: str, t: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """1.0 where chronic condition ``code`` has started by time ``t`` (then it is coded at visits),
        for subjects ``idx`` (all subjects when None)."""
        onset = self.onset[:, V.CHRONIC_INDEX[code]]
        return ((onset if idx is None else onset[idx]) <= t).astype(float)

    def window(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uniform time in [lo, hi] per subject, with a mask of subjects whose window is non-empty."""
        ok = hi > lo
        t = lo + rng.random(self.n) * np.where(ok, hi - lo, 0.0)
        return t, ok


def make_subjects(subject_ids: np.ndarray, rng: np.random.Generator, birth_years: tuple[int, int] = (1935, 2001),
                  ltfu_per_year: float = 0.025) -> Shard:
    """Draw demographics, latents, baseline physiology, chronic conditions and background follow-up.

    Args:
        subject_ids: sorted int64 ids of the shard's subjects.
        rng: the shard's demographics stream.
        birth_years: birth uniformly between 1 January of the first and of the second year (case mix).
        ltfu_per_year: loss-to-follow-up hazard per year (record completeness of the site).

    Returns:
        A :class:`Shard` with everything that does not depend on the disease processes.
    """
    n = subject_ids.size
    male = rng.random(n) < 0.48
    race = rng.choice(len(V.RACE_CODES), size=n, p=V.RACE_WEIGHTS)
    hispanic = rng.random(n) < 0.17
    b0, b1 = days(birth_years[0]), days(birth_years[1])
    birth = np.floor(b0 + rng.random(n) * (b1 - b0))
    start = days(2008) + rng.random(n) * (days(2016) - days(2008))
    z, g, u_onc, u_pe, u_cac = rng.standard_normal((5, n))
    age0 = (start - birth) / YEAR
    # Gompertz background mortality, hazard b * exp(gamma * age) per year; inverted cumulative hazard
    gamma = 0.09
    b = np.exp(-10.6 + 0.35 * (-z))
    e = rng.exponential(1.0, n)
    t_bg = np.log(e * gamma / b + np.exp(gamma * age0)) / gamma - age0
    bg_death = start + np.maximum(t_bg, 0.05) * YEAR
    ltfu = start + rng.exponential(1.0 / ltfu_per_year, n) * YEAR      # loss to follow-up (site a 2.5 %/year)
    end0 = np.minimum(np.minimum(bg_death, ltfu), CUTOFF)
    # baseline physiology: z (health) shifts everything a little so structured data sees it noisily
    bmi0 = np.clip(27.5 + 4.5 * rng.standard_normal(n) + 1.2 * (-z), 16.0, 55.0)
    onset = np.full((n, len(V.CHRONIC)), np.inf)
    age_std0 = (age0 - 60.0) / 15.0
    for c, (code, _desc, a, b_age, b_z, b_m, _drugs) in enumerate(V.CHRONIC):
        if code == "ICD10CM/E66.9":
            ever = bmi0 >= 30.0
            prevalent = np.ones(n, dtype=bool)
        else:
            ever = rng.random(n) < logistic(a + b_age * age_std0 + b_z * (-z) + b_m * male)
            prevalent = rng.random(n) < 0.6
        later = start + rng.random(n) * 15.0 * YEAR
        onset[:, c] = np.where(ever, np.where(prevalent, start - 1.0, later), np.inf)
    ckd = np.isfinite(onset[:, V.CHRONIC_INDEX["ICD10CM/N18.3"]])
    creat0 = np.exp(np.where(male, np.log(0.95), np.log(0.75)) + 0.08 * (-z)
                    + 0.12 * rng.standard_normal(n)) * np.where(ckd, 1.8, 1.0)
    hgb0 = np.where(male, 14.3, 12.9) + 0.35 * z + 0.9 * rng.standard_normal(n)
    plt0 = np.clip(250.0 + 55.0 * rng.standard_normal(n), 120.0, 480.0)
    wbc0 = np.exp(np.log(6.8) + 0.2 * rng.standard_normal(n) + 0.05 * (-z))
    anc0 = np.exp(np.log(4200.0) + 0.3 * rng.standard_normal(n))
    hba1c0 = np.clip(5.4 + 0.025 * (bmi0 - 28.0) + 0.12 * (-z) + 0.3 * rng.standard_normal(n), 4.3, 6.35)
    return Shard(ids=subject_ids, n=n, male=male, race=race, hispanic=hispanic, birth=birth, start=start,
                 z=z, g=g, u_onc=u_onc, u_pe=u_pe, u_cac=u_cac, end0=end0, bg_death=bg_death,
                 bmi0=bmi0, creat0=creat0, hgb0=hgb0, plt0=plt0, wbc0=wbc0, anc0=anc0, hba1c0=hba1c0,
                 onset=onset, t2d_onset=np.full(n, np.inf))


def plan_t2d(S: Shard, rng: np.random.Generator) -> None:
    """Type 2 diabetes: prevalent at record start (age, BMI, z) or incident with hazard driven by
    g (visible only in the PRS), baseline BMI and baseline HbA1c.  Sets ``S.t2d_onset``.
    """
    age_std0 = S.age_std(S.start)
    # prevalence deliberately ignores g, so g stays independent of everything visible at start
    prevalent = rng.random(S.n) < logistic(-2.3 + 0.6 * age_std0 + 0.07 * (S.bmi0 - 28.0) + 0.3 * (-S.z))
    rate = np.exp(-4.3 + 1.0 * S.g + 0.07 * (S.bmi0 - 28.0) + 1.4 * (S.hba1c0 - 5.4))  # per year
    incident = S.start + rng.exponential(1.0, S.n) / rate * YEAR
    S.t2d_onset = np.where(prevalent, S.start - 1.0, incident)


def finish_follow_up(S: Shard) -> None:
    """Combine background and process-specific death times into the end of follow-up."""
    death = S.bg_death.copy()
    for t in S.deaths.values():
        death = np.minimum(death, t)
    end = np.minimum(S.end0, death)
    S.end = end
    S.died = (death <= end) & (death <= CUTOFF)


def emit_static(S: Shard, ev: Events) -> None:
    """Static demographic rows (time null) and MEDS_BIRTH."""
    idx = np.arange(S.n)
    ev.add(idx, np.nan, cids(V.SEX_CODES)[S.male.astype(int)])
    ev.add(idx, np.nan, cids(V.RACE_CODES)[S.race])
    ev.add(idx, np.nan, cids(V.ETHNICITY_CODES)[np.where(S.hispanic, 0, 1)])
    ev.add(idx, S.birth, "MEDS_BIRTH")


def emit_death(S: Shard, ev: Events) -> None:
    """MEDS_DEATH at the end of follow-up of subjects who died."""
    idx = np.flatnonzero(S.died)
    ev.add(idx, S.end[idx], "MEDS_DEATH")


def lab_values(S: Shard, rng: np.random.Generator, name: str, subj: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Routine (outpatient) value of a lab or vital for subjects ``subj`` at times ``t``.

    Args:
        S: the shard.
        rng: random stream.
        name: key of :data:`synthetic_vocab.LABS`.
        subj: local subject indices.
        t: times (float days).

    Returns:
        float64 values in the units documented in the vocabulary.
    """
    m = subj.size
    eps = rng.standard_normal(m)
    yrs = (t - S.start[subj]) / YEAR
    t2d = S.t2d_onset[subj] <= t
    if name == "creatinine":
        return S.creat0[subj] * (1.0 + 0.01 * yrs) * np.exp(0.05 * np.clip(eps, -2, 2))
    if name == "hemoglobin":
        return S.hgb0[subj] + 0.45 * eps
    if name == "platelets":
        return S.plt0[subj] * np.exp(0.08 * eps)
    if name == "wbc":
        return S.wbc0[subj] * np.exp(0.12 * eps)
    if name == "anc":
        return np.maximum(S.anc0[subj] * np.exp(0.18 * eps), 900.0)
    if name == "hba1c":
        pre = np.minimum(S.hba1c0[subj] + 0.03 * yrs + 0.12 * eps, 6.4)
        post = np.maximum(7.2 + 0.7 * eps, 6.5)
        return np.where(t2d, post, pre)
    if name == "glucose":
        return np.where(t2d, 150.0 + 35.0 * eps, 88.0 + 9.0 * (S.hba1c0[subj] - 5.4) + 8.0 * eps)
    if name == "bmi":
        return S.bmi0[subj] + 0.08 * yrs + 0.4 * eps
    if name == "heart_rate":
        return 72.0 + 3.0 * (-S.z[subj]) + 8.0 * eps
    if name == "map":
        return 90.0 + 6.0 * S.has("ICD10CM/I10", t, subj) + 7.0 * eps
    if name == "temperature":
        return 36.8 + 0.22 * np.clip(eps, -3, 3)
    if name == "spo2":
        return np.minimum(97.6 - 2.5 * S.has("ICD10CM/J44.9", t, subj) + 0.9 * eps, 100.0)
    if name == "resp_rate":
        return 15.0 + 1.8 * eps
    if name == "lactate":
        return np.exp(np.log(1.1) + 0.25 * eps)
    if name == "gcs":
        return np.full(m, 15.0)
    raise KeyError(name)


def _round_values(name: str, v: np.ndarray) -> np.ndarray:
    """Round values to the precision a lab system would report (keeps files realistic and small)."""
    digits = {"creatinine": 2, "hemoglobin": 1, "platelets": 0, "wbc": 1, "anc": -1, "hba1c": 1,
              "glucose": 0, "bmi": 1, "heart_rate": 0, "map": 0, "temperature": 1, "spo2": 0,
              "resp_rate": 0, "lactate": 1, "gcs": 0}[name]
    return np.round(v, digits)


def add_lab(ev: Events, name: str, subj: np.ndarray, t: np.ndarray, values: np.ndarray) -> None:
    """Append lab/vital events with values rounded to reporting precision."""
    ev.add(subj, t, V.LABS[name][0], _round_values(name, values))


_OUTPATIENT_LAB_P = {"creatinine": 0.5, "hemoglobin": 0.5, "platelets": 0.4, "wbc": 0.4, "glucose": 0.5,
                     "hba1c": 0.3, "bmi": 0.7, "heart_rate": 0.8, "map": 0.8, "temperature": 0.4,
                     "spo2": 0.4, "resp_rate": 0.3}


def emit_background(S: Shard, rng: np.random.Generator, ev: Events) -> None:
    """Primary-care visits (1-3 per year) from record start to end of follow-up.

    Each visit carries the chronic diagnoses active at that time (and their drugs), T2D codes and
    drugs after onset, a Zipf long tail of other diagnoses and drugs, and routine labs/vitals.

    Args:
        S: the shard (``S.end`` must be set).
        rng: the background stream.
        ev: event buffer.
    """
    rate = np.clip(1.6 + 0.5 * (-S.z) + 0.25 * S.age_std(S.start) + 0.4 * rng.standard_normal(S.n), 1.0, 3.0)
    dur = np.maximum(S.end - S.start, 0.0)
    counts = 1 + rng.poisson(rate * dur / YEAR)
    vs, within = ragged(counts)
    vt = np.where(within == 0, S.start[vs], S.start[vs] + rng.random(vs.size) * dur[vs])
    nv = vs.size
    ev.add(vs, vt, "VISIT/PRIMARY_CARE")
    # chronic conditions and their drugs
    first = within == 0          # the first visit records every prevalent condition
    for c, (code, _d, *_coef, drugs) in enumerate(V.CHRONIC):
        active = S.onset[vs, c] <= vt
        m = active & (first | (rng.random(nv) < 0.75))
        ev.add(vs[m], vt[m], code)
        for drug in drugs:
            m = active & (rng.random(nv) < 0.6)
            ev.add(vs[m], vt[m], drug)
    t2d = S.t2d_onset[vs] <= vt
    r = rng.random(nv)
    m = t2d & (first | (r < 0.8))
    ev.add(vs[m], vt[m], cids(["ICD10CM/E11.9", "ICD10CM/E11.65"])[(r[m] < 0.15).astype(int)])
    for drug, p in (("RXNORM/6809", 0.8), ("RXNORM/4821", 0.2), ("RXNORM/274783", 0.15)):
        m = t2d & (rng.random(nv) < p)
        ev.add(vs[m], vt[m], drug)
    # Zipf long tails (deduplicated within a visit)
    for table, lam in ((V.TAIL_DX, 1.0), (V.TAIL_DRUGS, 0.5)):
        codes = cids(sorted(table))
        perm = rng.permutation(codes.size)          # which code is "common" is itself random
        w = 1.0 / np.arange(1, codes.size + 1) ** 1.1
        k = rng.poisson(lam, nv)
        parent, _ = ragged(k)
        pick = codes[perm][rng.choice(codes.size, size=parent.size, p=w / w.sum())]
        key = np.unique(parent * 100_000 + pick)
        ev.add(vs[key // 100_000], vt[key // 100_000], (key % 100_000).astype(np.int32))
    for name, p in _OUTPATIENT_LAB_P.items():
        pv = np.where(t2d, 0.8, p) if name == "hba1c" else p
        m = rng.random(nv) < pv
        add_lab(ev, name, vs[m], vt[m], lab_values(S, rng, name, vs[m], vt[m]))
