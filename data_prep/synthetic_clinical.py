"""Disease processes of the synthetic cohort: oncology, ICU stays, pulmonary embolism, cardiac CT /
MACE and T2D onset.  Each process has a ``plan_*`` step (membership, latent outcome times, death
times; run before the end of follow-up is known) and an ``emit_*`` step (events and sidecar rows;
run after).  All effect sizes are test oracles, not medical claims (see data_prep/README.md).
"""

from __future__ import annotations

import numpy as np

from data_prep import synthetic_imaging as IM
from data_prep import synthetic_vocab as V
from data_prep.synthetic_sim import (CUTOFF, HOUR, YEAR, Events, Shard, add_lab, cids, days, lab_values,
                                     logistic, ragged)

_SITE_NAMES = [s[0] for s in V.CANCER_SITES]
_SITE_CODES = cids([s[1] for s in V.CANCER_SITES])
_SITE_EFFECTS = np.array([s[5:8] for s in V.CANCER_SITES])     # (n_sites, 3): death, progression, mets
_REG_CIS = np.array([r[2] for r in V.REGIMENS], dtype=float)
_REG_MYELO = np.array([r[3] for r in V.REGIMENS], dtype=float)
_REG_ANEMIA = np.array([r[4] for r in V.REGIMENS])
_REG_PLT = np.array([r[5] for r in V.REGIMENS])
MAX_CYCLES = 8
LEAK_P = 0.3


def comorbidity(S: Shard, t: np.ndarray) -> np.ndarray:
    """Number of the organ-failure conditions heart failure, COPD and CKD 3 started by time ``t``."""
    return S.has("ICD10CM/I50.9", t) + S.has("ICD10CM/J44.9", t) + S.has("ICD10CM/N18.3", t)


def _piecewise_exp(e: np.ndarray, rate: np.ndarray, t1: float, mult: float) -> np.ndarray:
    """Invert a piecewise-constant cumulative hazard: rate*mult until t1, rate afterwards.

    Args:
        e: Exp(1) draws.
        rate: hazard after t1 (per year).
        t1: change point (years).
        mult: hazard multiplier before t1.

    Returns:
        Event times in years.
    """
    h1 = rate * mult * t1
    return np.where(e < h1, e / (rate * mult), t1 + (e - h1) / rate)


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a probability matrix (vectorised inverse CDF)."""
    c = np.cumsum(probs, axis=1)
    c /= c[:, -1:]
    return (rng.random((probs.shape[0], 1)) > c).sum(axis=1)


# ---------------------------------------------------------------------------------------------------
# oncology
# ---------------------------------------------------------------------------------------------------

def plan_oncology(S: Shard, rng: np.random.Generator, rng_leak: np.random.Generator) -> dict:
    """Choose oncology patients, cancer site, dates, regimen and latent outcome times.

    Hazards (per year, from treatment start; test oracle): death ~ exp(0.95 u + 0.5 (-z) + 0.4 age
    + 0.5 comorbidity + site), progression ~ exp(1.0 u + 0.4 (-z) + site), metastasis ~ exp(1.0 u +
    site); after two years the death hazard drops to 40 % (survivors are the cured).  ``u`` is seen
    by the staging CT and the biopsy WSI, the rest by the structured record (comorbidity = coded HF,
    COPD, CKD at diagnosis).  The leak coin comes from its own
    stream, so it is independent of everything.
    """
    n = S.n
    member = rng.random(n) < logistic(0.5 + 1.0 * S.age_std(S.start))
    lo = np.maximum(S.start + 0.5 * YEAR, days(2010))
    hi = np.minimum(S.end0 - 60.0, CUTOFF - 1.25 * YEAR)
    t_dx, ok = S.window(rng, lo, hi)
    member &= ok & (S.age(t_dx) >= 25.0)
    sex_ok = np.array([[("F" in s[3]), ("M" in s[3])] for s in V.CANCER_SITES], dtype=float)  # (sites, 2)
    w = np.array([s[4] for s in V.CANCER_SITES])
    site = _choose_rows(rng, (w[None, :] * sex_ok[:, S.male.astype(int)].T))
    reg_p = np.zeros((len(V.CANCER_SITES), len(V.REGIMENS)))
    for i, name in enumerate(_SITE_NAMES):
        for reg, p in V.SITE_REGIMENS[name].items():
            reg_p[i, V.REGIMEN_INDEX[reg]] = p
    regimen = _choose_rows(rng, reg_p[site])
    t_tx = t_dx + 14.0 + 42.0 * rng.random(n)          # treatment start 2-8 weeks after diagnosis
    n_cyc = 4 + rng.integers(0, MAX_CYCLES - 3, n)
    u, bad, age = S.u_onc, -S.z, S.age_std(t_dx)
    eff = _SITE_EFFECTS[site]
    met_dx = rng.random(n) < logistic(-2.6 + 0.9 * u)
    rate_d = np.exp(-1.9 + 0.95 * u + 0.5 * bad + 0.4 * age + 0.5 * comorbidity(S, t_dx) + eff[:, 0])
    rate_p = np.exp(-1.4 + 1.0 * u + 0.4 * bad + eff[:, 1])
    rate_m = np.exp(-1.85 + 1.0 * u + eff[:, 2])
    # death: hazard x2.5 in the first two years relative to later ones (cure plateau)
    t_death = t_tx + _piecewise_exp(rng.exponential(1.0, n), 0.4 * rate_d, 2.0, 2.5) * YEAR
    t_prog = t_tx + rng.exponential(1.0, n) / rate_p * YEAR
    t_met = np.where(met_dx, np.inf, t_tx + rng.exponential(1.0, n) / rate_m * YEAR)
    leak = rng_leak.random(n) < LEAK_P
    S.deaths["oncology"] = np.where(member, t_death, np.inf)
    return {"member": member, "site": site, "regimen": regimen, "t_dx": t_dx, "t_tx": t_tx, "n_cyc": n_cyc,
            "met_dx": met_dx, "t_prog": t_prog, "t_met": t_met, "leak": leak,
            "t_ct": t_dx + 1.0 + 11.0 * rng.random(n), "t_biopsy": t_dx - 2.0 - 8.0 * rng.random(n)}


def _cycle_trajectories(rng: np.random.Generator, S: Shard, idx: np.ndarray, P: dict, valid: np.ndarray):
    """Hemoglobin and platelets per chemo cycle with transfusion when they fall too low.

    Hb_k = Hb_0 - d k + noise + 1.8 * (# earlier RBC transfusions); an RBC transfusion follows a
    cycle lab with Hb < 8.0 g/dL, a platelet transfusion one with platelets < 50 (10^3/uL).

    Returns:
        (hb, plt, rbc, ptx) matrices of shape (m, MAX_CYCLES); rbc/ptx are boolean.
    """
    m = idx.size
    reg = P["regimen"][idx]
    bad = -S.z[idx]
    hb0 = S.hgb0[idx] - 0.8 - 0.3 * bad
    d = _REG_ANEMIA[reg] * np.exp(0.5 * rng.standard_normal(m)) * (1.0 + 0.2 * bad)
    q = _REG_PLT[reg] * np.exp(0.5 * rng.standard_normal(m))
    hb = np.zeros((m, MAX_CYCLES))
    plt = np.zeros((m, MAX_CYCLES))
    rbc = np.zeros((m, MAX_CYCLES), dtype=bool)
    ptx = np.zeros((m, MAX_CYCLES), dtype=bool)
    bump_h = np.zeros(m)
    bump_p = np.zeros(m)
    for k in range(MAX_CYCLES):                     # loop over cycle number, vectorised over patients
        hb[:, k] = hb0 - d * k + 0.35 * rng.standard_normal(m) + bump_h
        plt[:, k] = np.maximum(S.plt0[idx] - q * k + 12.0 * rng.standard_normal(m) + bump_p, 8.0)
        rbc[:, k] = valid[:, k] & (hb[:, k] < 8.0)
        ptx[:, k] = valid[:, k] & (plt[:, k] < 50.0)
        bump_h += 1.8 * rbc[:, k]
        bump_p += 40.0 * ptx[:, k]
    return hb, plt, rbc, ptx


def emit_oncology(S: Shard, rng: np.random.Generator, ev: Events, P: dict) -> dict:
    """Diagnosis work-up, chemo cycles with labs, toxicities (AKI, neutropenic fever, transfusion),
    progression, metastasis, follow-up visits, second-line therapy and the leak probe.

    Returns:
        Sidecar rows {"ct": ..., "wsi": ...} for the staging CTs and biopsies.
    """
    idx = np.flatnonzero(P["member"])
    m = idx.size
    t_dx, t_tx, site, reg = P["t_dx"][idx], P["t_tx"][idx], P["site"][idx], P["regimen"][idx]
    t_prog, t_met, end = P["t_prog"][idx], P["t_met"][idx], S.end[idx]
    dx_code = _SITE_CODES[site]
    # work-up: biopsy (WSI), diagnosis visit with labs, staging CT, metastases found at staging
    t_bx, t_ct = P["t_biopsy"][idx], P["t_ct"][idx]
    ev.add(idx, t_bx, "PATHOLOGY/BIOPSY")
    ev.add(idx, t_dx, "VISIT/ONCOLOGY")
    ev.add(idx, t_dx, dx_code)
    for name in ("creatinine", "hemoglobin", "platelets", "wbc", "anc"):
        add_lab(ev, name, idx, t_dx + 0.5 * HOUR, lab_values(S, rng, name, idx, t_dx))
    ev.add(idx, t_ct, "IMAGING/CT_STAGING")
    met_codes = cids(sorted(V.METASTASIS_CODES))
    met_code = met_codes[rng.integers(0, met_codes.size, m)]
    met_dx = P["met_dx"][idx]
    ev.add(idx[met_dx], t_ct[met_dx] + HOUR, met_code[met_dx])
    t_met_any = np.where(met_dx, t_ct + HOUR, t_met)
    # chemo cycles every 3 weeks until the planned number or progression
    c_par, k = ragged(np.full(m, MAX_CYCLES))
    t_cyc = t_tx[c_par] + 21.0 * k + np.where(k > 0, rng.random(c_par.size) * 3.0 - 1.0, 0.0)
    valid = ((k < P["n_cyc"][idx][c_par]) & (t_cyc < t_prog[c_par])).reshape(m, MAX_CYCLES)
    hb, plt, rbc, ptx = _cycle_trajectories(rng, S, idx, P, valid)
    vflat = valid.ravel()
    cp, ct, ck = idx[c_par[vflat]], t_cyc[vflat], k[vflat]
    t_lab = ct - 3.0 * HOUR                    # pre-chemo labs: visible at the first treatment time
    ev.add(cp, t_lab, "VISIT/ONCOLOGY")
    add_lab(ev, "hemoglobin", cp, t_lab, hb.ravel()[vflat])
    add_lab(ev, "platelets", cp, t_lab, plt.ravel()[vflat])
    myelo = _REG_MYELO[reg]
    for name in ("creatinine", "wbc", "temperature"):
        add_lab(ev, name, cp, t_lab, lab_values(S, rng, name, cp, t_lab))
    anc = lab_values(S, rng, "anc", cp, t_lab) * (1.0 - 0.08 * myelo[c_par[vflat]])
    add_lab(ev, "anc", cp, t_lab, np.maximum(anc, 900.0))
    for j, (_name, drugs, *_r) in enumerate(V.REGIMENS):
        sel = reg[c_par[vflat]] == j
        for drug in drugs:
            ev.add(cp[sel], ct[sel], drug)
    ev.add(cp[rbc.ravel()[vflat]], ct[rbc.ravel()[vflat]] + 2.0 * HOUR, "ICD10PCS/30233N1")
    ev.add(cp[ptx.ravel()[vflat]], ct[ptx.ravel()[vflat]] + 2.0 * HOUR, "ICD10PCS/30233R1")
    n_valid = valid.sum(axis=1)
    _emit_aki(S, rng, ev, idx, reg, t_cyc.reshape(m, MAX_CYCLES), n_valid)
    _emit_neutropenic_fever(S, rng, ev, idx, reg, t_cyc.reshape(m, MAX_CYCLES), n_valid)
    # progression, second-line therapy, metastasis
    ev.add(idx, t_prog, "ONCOLOGY/PROGRESSION")
    s_par, s_k = ragged(np.full(m, 4))
    second = cids(V.SECOND_LINE_DRUGS)[rng.integers(0, 3, m)]
    ev.add(idx[s_par], t_prog[s_par] + 14.0 + 21.0 * s_k, second[s_par])
    late = ~met_dx
    ev.add(idx[late], t_met[late], met_code[late])
    ev.add(idx[late], t_met[late], "VISIT/ONCOLOGY")
    # follow-up visits every ~90 days for up to five years after chemotherapy
    fu0 = t_tx + 21.0 * n_valid + 30.0
    fu_end = np.minimum(end, t_tx + 5.0 * YEAR)
    f_par, f_k = ragged(np.where(fu_end > fu0, np.floor((fu_end - fu0) / 90.0) + 1, 0).astype(int))
    fs, ft = idx[f_par], fu0[f_par] + 90.0 * f_k + rng.random(f_par.size) * 10.0
    ev.add(fs, ft, "VISIT/ONCOLOGY")
    ev.add(fs, ft, dx_code[f_par])
    has_met = t_met_any[f_par] <= ft
    ev.add(fs[has_met], ft[has_met], met_code[f_par][has_met])
    for name in ("creatinine", "hemoglobin", "platelets", "wbc", "anc"):
        add_lab(ev, name, fs, ft, lab_values(S, rng, name, fs, ft))
    # leak probe: pure coin flip; outcome at +180 d (or at end of follow-up if that comes first, so
    # the outcome is never dropped and the label stays independent of survival)
    lk = P["leak"][idx] & (end >= t_tx + HOUR)
    ev.add(idx[lk], t_tx[lk] + HOUR, "SYNTH/LEAK_PROBE")
    ev.add(idx[lk], np.minimum(t_tx[lk] + 180.0, end[lk]), "SYNTH/LEAK_OUTCOME")
    # sidecars: staging CT and biopsy embeddings carry the tumour latent u_onc
    u = S.u_onc[idx]
    ct = {"subj": idx, "time": t_ct, "study_id": S.ids[idx] * 100 + 50,
          "series": np.full(m, "staging", dtype=object), "embedding": IM.embed_ct(rng, u, np.zeros(m, int))}
    wsi = {"subj": idx, "time": t_bx, "slide_id": S.ids[idx] * 100 + 90, "site": np.array(_SITE_NAMES, object)[site],
           "embedding": IM.embed_wsi(rng, u, site)}
    return {"ct": ct, "wsi": wsi}


def _emit_aki(S, rng, ev, idx, reg, t_cyc, n_valid) -> None:
    """KDIGO-meeting creatinine rises (>= 1.5x a value 1-2 days earlier, and >= +0.3 mg/dL)
    driven by baseline creatinine, cisplatin and z; plus sub-threshold 'near-miss' rises."""
    m = idx.size
    c0 = S.creat0[idx]
    p = logistic(-2.2 + 1.5 * _REG_CIS[reg] + 1.6 * (c0 - 0.9) + 0.4 * (-S.z[idx]) + 0.2 * S.age_std(t_cyc[:, 0], idx))
    aki = rng.random(m) < p
    j = np.minimum((rng.random(m) * n_valid).astype(int), np.maximum(n_valid - 1, 0))
    t = t_cyc[np.arange(m), j] + 4.0 + 6.0 * rng.random(m)
    a = np.flatnonzero(aki)
    pre = c0[a] * np.exp(0.03 * rng.standard_normal(a.size))
    peak = np.maximum(pre * (1.6 + rng.random(a.size)), pre + 0.4)
    tt = t[a]
    ev.add(idx[a], tt - 1.0 - rng.random(a.size), "LOINC/2160-0", np.round(pre, 2))
    ev.add(idx[a], tt, "LOINC/2160-0", np.round(peak, 2))
    ev.add(idx[a], tt + 2.0, "LOINC/2160-0", np.round(pre + 0.6 * (peak - pre), 2))
    ev.add(idx[a], tt + 9.0, "LOINC/2160-0", np.round(pre * 1.05, 2))
    coded = rng.random(a.size) < 0.6
    ev.add(idx[a][coded], tt[coded] + 1.0, "ICD10CM/N17.9")
    # near misses: a repeat check with a rise below both KDIGO thresholds
    nm = np.flatnonzero(~aki & (rng.random(m) < 0.12))
    base = c0[nm] * np.exp(0.03 * rng.standard_normal(nm.size))
    ev.add(idx[nm], t[nm] - 1.0, "LOINC/2160-0", np.round(base, 2))
    ev.add(idx[nm], t[nm], "LOINC/2160-0", np.round(base + np.minimum(0.15 * base, 0.2), 2))


def _emit_neutropenic_fever(S, rng, ev, idx, reg, t_cyc, n_valid) -> None:
    """Admissions with ANC < 500 and temperature >= 38.3 C within hours, driven by regimen
    myelotoxicity and baseline ANC; plus afebrile neutropenia and non-neutropenic fever as decoys."""
    m = idx.size
    p = logistic(-3.4 + 1.1 * _REG_MYELO[reg] - 1.2 * np.log(S.anc0[idx] / 4200.0)
                 + 0.3 * S.age_std(t_cyc[:, 0], idx) + 0.3 * (-S.z[idx]))
    nf = rng.random(m) < p
    j = np.minimum((rng.random(m) * n_valid).astype(int), np.maximum(n_valid - 1, 0))
    t = t_cyc[np.arange(m), j] + 7.0 + 5.0 * rng.random(m)
    a = np.flatnonzero(nf)
    s, tt = idx[a], t[a]
    ev.add(s, tt, "HOSPITAL_ADMISSION")
    add_lab(ev, "temperature", s, tt + 0.1 * HOUR, 38.4 + 1.4 * rng.random(a.size))
    t_anc = tt + (1.0 + 7.0 * rng.random(a.size)) * HOUR
    add_lab(ev, "anc", s, t_anc, 50.0 + 430.0 * rng.random(a.size))
    add_lab(ev, "wbc", s, t_anc, 0.4 + 1.0 * rng.random(a.size))
    t_out = tt + 3.0 + 4.0 * rng.random(a.size)
    ev.add(s, t_out, "ICD10CM/D70.1")
    ev.add(s, t_out, "ICD10CM/R50.81")
    ev.add(s, t_out, "HOSPITAL_DISCHARGE")
    # decoys at other days of the cycle: afebrile neutropenia (day +10 after NF day... offsets differ
    # by >= 3 days from the NF window of the same cycle so they never combine within 24 h)
    r = rng.random(m)
    af = np.flatnonzero(~nf & (r < 0.10))
    t_af = t_cyc[af, j[af]] + 10.0
    add_lab(ev, "anc", idx[af], t_af, 200.0 + 290.0 * rng.random(af.size))
    add_lab(ev, "temperature", idx[af], t_af, 36.6 + 0.9 * rng.random(af.size))
    fe = np.flatnonzero(~nf & (r > 0.95))
    t_fe = t_cyc[fe, j[fe]] + 4.0
    add_lab(ev, "temperature", idx[fe], t_fe, 38.4 + 0.8 * rng.random(fe.size))
    add_lab(ev, "anc", idx[fe], t_fe + 2.0 * HOUR, 1500.0 + 4500.0 * rng.random(fe.size))


# ---------------------------------------------------------------------------------------------------
# ICU
# ---------------------------------------------------------------------------------------------------

def plan_icu(S: Shard, rng: np.random.Generator) -> dict:
    """One ICU stay for ~28 % of subjects: severity s = 0.55 (-z) + 0.85 e, LOS lognormal with median
    ~2.4 d rising with s, in-ICU death with log-odds -3.05 + 1.3 s at the end of the stay."""
    n = S.n
    member = rng.random(n) < logistic(-0.45 + 0.3 * (-S.z) + 0.3 * S.age_std(S.start))
    t, ok = S.window(rng, S.start + 0.3 * YEAR, S.end0 - 10.0)
    member &= ok & (S.age(t) >= 18.0)
    sev = 0.55 * (-S.z) + 0.85 * rng.standard_normal(n)
    los = np.exp(np.log(2.4) + 0.25 * sev + 0.62 * rng.standard_normal(n))
    die = rng.random(n) < logistic(-2.55 + 1.3 * sev)
    S.deaths["icu"] = np.where(member & die, t + los, np.inf)
    pre = np.where(rng.random(n) < 0.4, 0.05 + 0.1 * rng.random(n), 0.1 + 1.4 * rng.random(n))
    return {"member": member, "t": t, "sev": sev, "los": los, "die": die, "pre": pre}


# vital: (base, per unit severity, deterioration in the last 24 h before death, noise sd)
_VITALS = {"heart_rate": (84.0, 9.0, 22.0, 6.0), "map": (80.0, -6.0, -16.0, 5.0),
           "resp_rate": (18.0, 2.5, 7.0, 2.2), "spo2": (96.5, -1.3, -5.0, 1.2)}


def emit_icu(S: Shard, rng: np.random.Generator, ev: Events, P: dict) -> None:
    """Hospital + ICU admission, hourly vitals (GCS and temperature every 4 h), labs every 4-12 h,
    ICU and hospital discharge (both at the death time for in-ICU deaths), discharge diagnoses."""
    idx = np.flatnonzero(P["member"])
    m = idx.size
    t0, sev, los = P["t"][idx], P["sev"][idx], P["los"][idx]
    t_end = t0 + los
    dying = P["die"][idx]
    ev.add(idx, t0 - P["pre"][idx], "HOSPITAL_ADMISSION")
    ev.add(idx, t0, "ICU_ADMISSION")
    intub = rng.random(m) < logistic(-1.0 + 1.0 * sev)
    ev.add(idx[intub], t0[intub] + 0.5 * HOUR, "ICD10PCS/0BH17EZ")
    line = rng.random(m) < 0.4
    ev.add(idx[line], t0[line] + 1.0 * HOUR, "ICD10PCS/02HV33Z")
    # hourly vitals: level from severity + stay offset, a ramp towards death in the last 24 h
    n_h = np.floor(los * 24.0 - 0.5).astype(int) + 1
    hp, hk = ragged(n_h)
    th = t0[hp] + (hk + 0.5) * HOUR
    ramp = dying[hp] * np.clip(1.0 - (t_end[hp] - th), 0.0, 1.0)
    for name, (base, b_s, b_d, sd) in _VITALS.items():
        offset = 0.5 * sd * rng.standard_normal(m)
        v = base + b_s * sev[hp] + offset[hp] + b_d * ramp + sd * rng.standard_normal(hp.size)
        if name == "spo2":
            v = np.minimum(v, 100.0)
        add_lab(ev, name, idx[hp], th, np.maximum(v, 1.0))
    q4 = hk % 4 == 0
    gcs = np.clip(np.round(15.0 - 1.6 * np.maximum(sev[hp], 0) - 4.0 * ramp + rng.standard_normal(hp.size)), 3, 15)
    add_lab(ev, "gcs", idx[hp][q4], th[q4], gcs[q4])
    temp = 37.0 + 0.35 * np.maximum(sev[hp], 0) + 0.4 * rng.standard_normal(hp.size)
    add_lab(ev, "temperature", idx[hp][q4], th[q4], temp[q4])
    # labs every 4-12 h
    step = (4.0 + 8.0 * rng.random(m)) * HOUR
    lp, lk = ragged(np.floor((los - HOUR) / step).astype(int) + 1)
    tl = t0[lp] + HOUR + lk * step[lp]
    s, ramp_l = sev[lp], dying[lp] * np.clip(1.0 - (t_end[lp] - tl), 0.0, 1.0)
    e = rng.standard_normal((6, lp.size))
    sl = idx[lp]
    add_lab(ev, "creatinine", sl, tl, S.creat0[sl] * (1.0 + 0.12 * np.maximum(s, 0)) * np.exp(0.03 * e[0]))
    add_lab(ev, "lactate", sl, tl, np.exp(np.log(1.3) + 0.3 * s + 0.8 * ramp_l + 0.2 * e[1]))
    add_lab(ev, "wbc", sl, tl, S.wbc0[sl] * np.exp(0.25 * s + 0.12 * e[2]))
    add_lab(ev, "hemoglobin", sl, tl, S.hgb0[sl] - 1.0 - 0.4 * s + 0.3 * e[3])
    add_lab(ev, "platelets", sl, tl, S.plt0[sl] * np.exp(-0.15 * s + 0.08 * e[4]))
    add_lab(ev, "glucose", sl, tl, 130.0 + 20.0 * s + 20.0 * e[5])
    ev.add(idx, t_end, "ICU_DISCHARGE")
    t_hd = np.where(dying, t_end, t_end + 1.0 + 5.0 * rng.random(m))
    ev.add(idx, t_hd, "HOSPITAL_DISCHARGE")
    for code, logit in (("ICD10CM/A41.9", -1.5 + 1.0 * sev), ("ICD10CM/J96.00", -1.2 + 0.9 * sev),
                        ("ICD10CM/J18.9", np.full(m, -1.4)), ("ICD10CM/N17.9", -2.0 + 0.8 * sev)):
        sel = rng.random(m) < logistic(logit)
        ev.add(idx[sel], t_hd[sel], code)
    vent = intub & (los > 4.0)
    ev.add(idx[vent], t_hd[vent], "ICD10PCS/5A1955Z")


def emit_t2d_onset(S: Shard, rng: np.random.Generator, ev: Events) -> None:
    """Diagnostic primary-care visit at incident T2D onset: E11.9, HbA1c >= 6.5 %, glucose, metformin.
    Later routine visits carry E11 codes and T2D drugs because onset <= visit time."""
    s = np.flatnonzero((S.t2d_onset > S.start) & (S.t2d_onset <= S.end))
    t = S.t2d_onset[s]
    ev.add(s, t, "VISIT/PRIMARY_CARE")
    ev.add(s, t, "ICD10CM/E11.9")
    add_lab(ev, "hba1c", s, t, np.maximum(6.6 + 0.5 * rng.standard_normal(s.size), 6.5))
    add_lab(ev, "glucose", s, t, 150.0 + 30.0 * rng.standard_normal(s.size))
    ev.add(s, t + HOUR, "RXNORM/6809")

