"""Pulmonary embolism, cardiac CT / MACE and causes of death of the synthetic cohort.

Generator 2.0 (the use cases of "Fusion is not one-size-fits-all: Cross-Modal Representation
Alignment for Time-to-Event Modeling"): MACE has four components (myocardial infarction, ischemic
stroke, acute heart-failure hospitalization, cardiac death; a ``DEATH_CAUSE/<ICD-10>`` row at the
death time says why someone died), some patients get a repeat cardiac CT (~5 %), and PE patients a
repeat episode with its own CTPA (~15 %); some CTPAs are negative.  Everything new is drawn from
its own random streams (``rng2``), so the draws of generator 1.x are unchanged and the other
processes, deaths included, keep their values.  All effect sizes are test oracles, not medical claims.
"""

from __future__ import annotations

import numpy as np

from data_prep import synthetic_imaging as IM
from data_prep import synthetic_vocab as V
from data_prep.synthetic_clinical import _piecewise_exp
from data_prep.synthetic_site import Site
from data_prep.synthetic_sim import HOUR, YEAR, Events, Shard, add_lab, cids, lab_values, logistic

HF_RATIO = 0.5              # acute heart-failure hazard = HF_RATIO x the MI / stroke hazard (same predictor)
P_SUDDEN = 0.4              # share of fatal MACE that are out-of-hospital cardiac deaths (no admission)
P_REPEAT_CT = 0.05
P_REPEAT_PE = 0.15
# PE death hazard intercept: -3.2 in generator 1.x gave 16 one-year deaths in the default cohort's held-out
# split for the per-study 1-year task (PE v2); -2.7 (hazard x 1.65) gives the task enough events to
# support a C-index there. Only PE patients' death times move.
PE_DEATH_INTERCEPT = -2.7
P_NEGATIVE_CTPA = 0.04


def plan_pe(S: Shard, rng: np.random.Generator, rng2: np.random.Generator, onc: dict, site: Site) -> dict:
    """PE for ~17 % (site a): CTPA + I26 at the same time; death hazard exp(PE_DEATH_INTERCEPT + 1.0 u_pe + 0.6 age +
    0.4 (-z) + 0.9 active cancer + 0.7 HF + 0.5 COPD) (PESI-like risk factors), five times higher in
    the first 30 days.  u_pe (clot burden) is visible only in the CTPA embedding (the I26 sub-code is
    chosen independently of it); the risk factors only in the structured record: the two halves of
    the risk are of similar size, so a model needs both sources to approach the true risk.
    Repeat episodes (~15 % of PE patients, 3 months to 3.25 years later, same u_pe, death process
    unchanged) and negative CTPAs (~4 % of everyone, no I26) come from ``rng2``.

    Args:
        S: the shard.
        rng: this process's stream (generator 1.x draws).
        rng2: its generator-2 stream.
        onc: the oncology plan (active cancer = diagnosed before the PE, within 3 years).
        site: the site (selection intercept).
    """
    n = S.n
    member = rng.random(n) < logistic(site.pe_intercept + 0.4 * S.age_std(S.start) + 0.3 * (-S.z))
    t, ok = S.window(rng, S.start + 0.5 * YEAR, S.end0 - 14.0)
    member &= ok & (S.age(t) >= 18.0)
    cancer = (onc["member"] & (onc["t_dx"] <= t) & (t - onc["t_dx"] <= 3.0 * YEAR)).astype(float)
    hf, copd = S.has("ICD10CM/I50.9", t), S.has("ICD10CM/J44.9", t)
    rate = np.exp(PE_DEATH_INTERCEPT + 1.0 * S.u_pe + 0.6 * S.age_std(t) + 0.4 * (-S.z) + 0.9 * cancer + 0.7 * hf + 0.5 * copd)
    t_death = t + _piecewise_exp(rng.exponential(1.0, n), rate, 30.0 / 365.25, 5.0) * YEAR
    S.deaths["pe"] = np.where(member, t_death, np.inf)
    P = {"member": member, "t": t, "pre": (1.0 + 5.0 * rng.random(n)) * HOUR,
         "los": 2.0 + 4.0 * rng.random(n), "code": rng.random(n) < 0.25,
         "cancer": cancer, "hf": hf, "copd": copd}
    rep = member & (rng2.random(n) < P_REPEAT_PE)
    P.update(rep=rep, t_rep=t + (0.25 + 3.0 * rng2.random(n)) * YEAR, rep_pre=(1.0 + 5.0 * rng2.random(n)) * HOUR,
             rep_los=2.0 + 4.0 * rng2.random(n), rep_code=rng2.random(n) < 0.25)
    t_neg, ok_neg = S.window(rng2, S.start + 0.5 * YEAR, S.end0)
    P.update(neg=ok_neg & (rng2.random(n) < P_NEGATIVE_CTPA) & (S.age(t_neg) >= 18.0), t_neg=t_neg)
    return P


def _pe_episode(S: Shard, rng: np.random.Generator, ev: Events, idx: np.ndarray, t: np.ndarray, pre: np.ndarray,
                los: np.ndarray, code: np.ndarray, site: Site) -> None:
    """Admission, CTPA, I26, labs, anticoagulant and discharge of PE episodes at times ``t``."""
    ev.add(idx, t - pre, "HOSPITAL_ADMISSION")
    ev.add(idx, t, "IMAGING/CTPA")
    ev.add(idx, t, cids(list(site.pe_codes))[code.astype(int)])
    for name in ("heart_rate", "spo2", "resp_rate", "creatinine", "hemoglobin"):
        add_lab(ev, name, idx, t - 0.5 * HOUR, lab_values(S, rng, name, idx, t))
    ev.add(idx, t + 2.0 * HOUR, cids(V.ANTICOAGULANTS)[rng.integers(0, 3, idx.size)])
    ev.add(idx, t + los, "HOSPITAL_DISCHARGE")


def emit_pe(S: Shard, rng: np.random.Generator, rng2: np.random.Generator, ev: Events, P: dict,
            site: Site) -> dict:
    """PE episodes (first and repeat) and negative CTPAs; returns the CTPA sidecar rows (study ids
    <subject>51 first episode, 54 repeat episode, 55 negative CTPA)."""
    idx = np.flatnonzero(P["member"])
    m = idx.size
    t = P["t"][idx]
    _pe_episode(S, rng, ev, idx, t, P["pre"][idx], P["los"][idx], P["code"][idx], site)
    rows = [{"subj": idx, "time": t, "study_id": S.ids[idx] * 100 + 51, "series": np.full(m, "ctpa", dtype=object),
             "embedding": IM.embed_ct(rng, S.u_pe[idx], np.full(m, 1))}]
    r = np.flatnonzero(P["rep"])
    tr = P["t_rep"][r]
    _pe_episode(S, rng2, ev, r, tr, P["rep_pre"][r], P["rep_los"][r], P["rep_code"][r], site)
    rows.append({"subj": r, "time": tr, "study_id": S.ids[r] * 100 + 54, "series": np.full(r.size, "ctpa", object),
                 "embedding": IM.embed_ct(rng2, S.u_pe[r], np.full(r.size, 1))})
    g = np.flatnonzero(P["neg"])
    ev.add(g, P["t_neg"][g], "IMAGING/CTPA")
    rows.append({"subj": g, "time": P["t_neg"][g], "study_id": S.ids[g] * 100 + 55,
                 "series": np.full(g.size, "ctpa", object),
                 "embedding": IM.embed_ct(rng2, np.full(g.size, -2.0), np.full(g.size, 1))})
    return {k: np.concatenate([x[k] for x in rows]) for k in rows[0]}


def plan_cardiac(S: Shard, rng: np.random.Generator, rng2: np.random.Generator, site: Site) -> dict:
    """Cardiac CT for ~22 % (site a: age >= 40); MI / ischemic-stroke hazard exp(1.0 u_cac + 1.0 HTN +
    0.8 HLD + 0.7 age + 0.3 (-z)); 15 % of them are fatal within 20 days.  u_cac (coronary calcium) is
    visible only in the cardiac CT embedding, the risk factors in the structured record, with halves
    of similar size.  Also a 3 % background MI / stroke history in the rest of the population.
    Generator 2 (``rng2``): acute heart-failure hospitalizations with HF_RATIO x the same hazard (so
    the time to the first MACE of any kind keeps proportional hazards with the same coefficients),
    P_SUDDEN of the fatal events are out-of-hospital cardiac deaths, and P_REPEAT_CT of the CT
    patients get a second CT 0.5-3 years later.

    Args:
        S: the shard.
        rng: this process's stream (generator 1.x draws).
        rng2: its generator-2 stream.
        site: the site (who gets a cardiac CT).
    """
    n = S.n
    member = rng.random(n) < logistic(site.card_intercept + site.card_age_slope * S.age_std(S.start))
    t, ok = S.window(rng, S.start + 0.5 * YEAR, S.end0 - 14.0)
    member &= ok & (S.age(t) >= site.card_min_age)
    htn, hld = S.has("ICD10CM/I10", t), S.has("ICD10CM/E78.5", t)
    rate = np.exp(-3.1 + 1.0 * S.u_cac + 1.0 * htn + 0.8 * hld + 0.7 * S.age_std(t) + 0.3 * (-S.z))
    t_mace = t + 1.0 + rng.exponential(1.0, n) / rate * YEAR
    fatal = rng.random(n) < 0.15
    S.deaths["mace"] = np.where(member & fatal, t_mace + 20.0 * rng.random(n), np.inf)
    bg, bg_ok = S.window(rng, S.start, S.end0)
    bg_member = ~member & bg_ok & (rng.random(n) < 0.03) & (S.age(bg) >= 35.0)
    t_mace = np.where(member, t_mace, np.where(bg_member, bg, np.inf))
    P = {"member": member, "t": t, "t_mace": t_mace, "mace_code": rng.choice(len(V.MACE_CODES), n, p=V.MACE_WEIGHTS),
         "los": 2.0 + 5.0 * rng.random(n), "htn": htn, "hld": hld}
    t_hf = t + 1.0 + rng2.exponential(1.0, n) / (HF_RATIO * rate) * YEAR
    P.update(t_hf=np.where(member, t_hf, np.inf), sudden=member & fatal & (rng2.random(n) < P_SUDDEN))
    rep = member & (rng2.random(n) < P_REPEAT_CT)
    P.update(rep=rep, t_rep=t + (0.5 + 2.5 * rng2.random(n)) * YEAR, hf_code=rng2.integers(0, 2, n),
             hf_los=2.0 + 5.0 * rng2.random(n))
    return P


def emit_cardiac(S: Shard, rng: np.random.Generator, rng2: np.random.Generator, ev: Events, P: dict,
                 site: Site) -> dict:
    """Cardiac CTs (first and repeat), MI / stroke and heart-failure admissions; returns the cardiac
    CT sidecar rows (study ids <subject>52 first CT, 53 repeat CT)."""
    idx = np.flatnonzero(P["member"])
    m = idx.size
    t = P["t"][idx]
    ev.add(idx, t, "VISIT/PRIMARY_CARE")
    ev.add(idx, t + HOUR, "IMAGING/CARDIAC_CT")
    mi = np.flatnonzero(np.isfinite(P["t_mace"]) & ~P["sudden"])        # sudden deaths never reach hospital
    tm = P["t_mace"][mi]
    ev.add(mi, tm, "HOSPITAL_ADMISSION")
    ev.add(mi, tm + HOUR, cids(list(site.mace_codes))[P["mace_code"][mi]])
    ev.add(mi, tm + 1.0, "RXNORM/1191")
    ev.add(mi, tm + 1.0, "RXNORM/32968")
    ev.add(mi, tm + P["los"][mi], "HOSPITAL_DISCHARGE")
    rows = [{"subj": idx, "time": t + HOUR, "study_id": S.ids[idx] * 100 + 52,
             "series": np.full(m, "cardiac", dtype=object), "embedding": IM.embed_ct(rng, S.u_cac[idx], np.full(m, 2))}]
    hf = np.flatnonzero(np.isfinite(P["t_hf"]))
    th = P["t_hf"][hf]
    ev.add(hf, th, "HOSPITAL_ADMISSION")
    ev.add(hf, th + HOUR, cids(list(site.hf_codes))[P["hf_code"][hf]])
    ev.add(hf, th + HOUR, "RXNORM/4603")
    ev.add(hf, th + P["hf_los"][hf], "HOSPITAL_DISCHARGE")
    r = np.flatnonzero(P["rep"])
    tr = P["t_rep"][r]
    ev.add(r, tr, "VISIT/PRIMARY_CARE")
    ev.add(r, tr + HOUR, "IMAGING/CARDIAC_CT")
    rows.append({"subj": r, "time": tr + HOUR, "study_id": S.ids[r] * 100 + 53,
                 "series": np.full(r.size, "cardiac", dtype=object),
                 "embedding": IM.embed_ct(rng2, S.u_cac[r], np.full(r.size, 2))})
    return {k: np.concatenate([x[k] for x in rows]) for k in rows[0]}


def emit_death_causes(S: Shard, ev: Events, card: dict, site: Site) -> None:
    """``DEATH_CAUSE/<ICD-10>`` at the death time of everyone who died: the process whose death time
    ended follow-up (cardiac: MI I21, ischemic stroke I63, sudden cardiac death I46; PE I26; cancer
    C80; ICU J96 / A41; background R99).  Deterministic: no random draw."""
    idx = np.flatnonzero(S.died)
    end = S.end[idx]
    cause = np.full(idx.size, site.death_cause["other"], dtype=object)
    for proc in ("oncology", "icu", "pe", "mace"):
        if proc not in S.deaths:
            continue
        hit = S.deaths[proc][idx] == end
        if proc == "mace":
            stroke = card["mace_code"][idx] == len(V.MACE_CODES) - 1
            c = np.where(card["sudden"][idx], site.death_cause["sudden"],
                         np.where(stroke, site.death_cause["stroke"], site.death_cause["mi"]))
        else:
            c = np.full(idx.size, site.death_cause[proc], dtype=object)
        cause = np.where(hit, c, cause)
    ev.add(idx, end, cids(list(cause)) if idx.size else np.zeros(0, np.int32))
