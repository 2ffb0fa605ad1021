"""Imaging, notes and genetics of the synthetic cohort: embeddings, chest X-rays, reports, PNGs.

Embeddings are "precomputed foundation-model features" simulated as a FIXED random linear map of
[latent signal, nuisance factors] plus isotropic noise.  The maps come from a constant seed, so they
are the same for every cohort seed (like one frozen encoder applied to different hospitals).  The
signal norms are chosen so a linear model recovers the latent with R^2 ~ 0.75-0.8 (CT, WSI, PRS)
and each CXR finding is linearly decodable with AUROC ~ 0.9 (see data_prep/README.md).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from PIL import Image

from data_prep import synthetic_vocab as V
from data_prep.synthetic_sim import HOUR, YEAR, Events, Shard, cids, logistic, ragged

_MAP_SEED = 20250101          # fixed: the "encoders" do not change with the cohort seed
CT_DIM, WSI_DIM, CXR_DIM, NOTE_DIM, PRS_DIM = 64, 64, 128, 64, 32
CT_SERIES = ["staging", "ctpa", "cardiac"]
N_FIND = len(V.CXR_FINDINGS)
FIND = {f: i for i, f in enumerate(V.CXR_FINDINGS)}
IMAGE_SIZE = 64


@functools.cache
def _maps() -> dict[str, np.ndarray]:
    """Fixed linear maps (unit-norm columns) and offset vectors for every simulated encoder."""
    r = np.random.default_rng(_MAP_SEED)

    def unit(dim: int, k: int) -> np.ndarray:
        a = r.standard_normal((dim, k))
        return a / np.linalg.norm(a, axis=0, keepdims=True)

    return {
        "ct": unit(CT_DIM, 7), "ct_series": 3.0 * unit(CT_DIM, len(CT_SERIES)),
        "wsi": unit(WSI_DIM, 7), "wsi_site": 2.0 * unit(WSI_DIM, len(V.CANCER_SITES)),
        "prs": unit(PRS_DIM, 5), "prs_ancestry": 1.5 * unit(PRS_DIM, len(V.RACE_CODES)),
        "cxr": unit(CXR_DIM, N_FIND + 8), "cxr_view": 2.0 * unit(CXR_DIM, 2),
        "note": unit(NOTE_DIM, N_FIND + 4),
    }


def _linear_embed(rng: np.random.Generator, signal: np.ndarray, signal_scale: np.ndarray, a: np.ndarray,
                  n_nuisance: int, nuisance_scale: float) -> np.ndarray:
    """embedding = A @ [signal * scale, nuisance * scale] + N(0, 1) noise, as float32 (m, dim)."""
    m = signal.shape[0]
    x = np.concatenate([signal * signal_scale, nuisance_scale * rng.standard_normal((m, n_nuisance))], axis=1)
    return (x @ a.T + rng.standard_normal((m, a.shape[0]))).astype(np.float32)


# signal norm sqrt(3.5) against unit noise per dimension: population R^2 = 3.5 / 4.5 ~ 0.78
_U_SCALE = np.sqrt(3.5)


def embed_ct(rng: np.random.Generator, u: np.ndarray, series: np.ndarray) -> np.ndarray:
    """CT study embedding (64-d) carrying the image latent ``u`` plus series offset and nuisance.

    Args:
        rng: random stream.
        u: image latent per study (tumour aggressiveness, clot burden or coronary calcium).
        series: index into :data:`CT_SERIES` per study.

    Returns:
        float32 array (m, 64).
    """
    M = _maps()
    emb = _linear_embed(rng, u[:, None], np.array([_U_SCALE]), M["ct"], 6, 1.5)
    return emb + M["ct_series"][:, series].T.astype(np.float32)


def embed_wsi(rng: np.random.Generator, u: np.ndarray, site: np.ndarray) -> np.ndarray:
    """Whole-slide-image embedding (64-d): tumour latent ``u``, tissue-site offset, stain nuisance."""
    M = _maps()
    emb = _linear_embed(rng, u[:, None], np.array([_U_SCALE]), M["wsi"], 6, 1.5)
    return emb + M["wsi_site"][:, site].T.astype(np.float32)


def embed_prs(rng: np.random.Generator, g: np.ndarray, race: np.ndarray) -> np.ndarray:
    """Polygenic-risk vector (32-d): genetic latent ``g`` (R^2 ~ 0.8) plus ancestry offset."""
    M = _maps()
    emb = _linear_embed(rng, g[:, None], np.array([2.0]), M["prs"], 4, 1.0)
    return emb + M["prs_ancestry"][:, race].T.astype(np.float32)


def _prob_findings(rng: np.random.Generator, S: Shard, subj: np.ndarray, t: np.ndarray, icu: np.ndarray,
                   acute: np.ndarray, lung_ca: np.ndarray) -> np.ndarray:
    """Draw the 14 CheXpert-style labels per study from the latents (test oracle, not medicine)."""
    m = subj.size
    bad = -S.z[subj]
    hf = S.has("ICD10CM/I50.9", t, subj)
    age = S.age_std(t, subj)
    icu = icu.astype(float)
    y = np.zeros((m, N_FIND), dtype=np.int8)

    def draw(name: str, logit: np.ndarray) -> np.ndarray:
        y[:, FIND[name]] = rng.random(m) < logistic(logit)
        return y[:, FIND[name]].astype(float)

    devices = draw("Support_Devices", np.where(icu > 0, 1.0, -3.0))
    draw("Edema", -2.6 + 0.9 * bad + 1.3 * hf + 0.9 * icu)
    eff = draw("Pleural_Effusion", -2.4 + 0.8 * bad + 1.0 * hf + 0.8 * icu + 0.4 * acute)
    cm = draw("Cardiomegaly", -2.2 + 0.6 * bad + 1.6 * hf + 0.4 * age)
    draw("Enlarged_Cardiomediastinum", -2.5 + 1.6 * cm)
    cons = draw("Consolidation", -2.4 + 1.1 * acute + 0.4 * icu)
    draw("Pneumonia", -2.6 + 1.2 * acute + 1.2 * cons)
    draw("Atelectasis", -2.3 + 0.7 * icu + 0.4 * acute)
    draw("Lung_Lesion", -2.6 + 2.5 * lung_ca + 0.3 * age)
    draw("Pneumothorax", -2.7 + 0.6 * icu + 0.6 * devices)
    draw("Fracture", -2.3 + 0.35 * age)
    draw("Pleural_Other", -2.3 + 0.6 * eff)
    parenchymal = y[:, [FIND["Consolidation"], FIND["Edema"], FIND["Atelectasis"], FIND["Pneumonia"]]].max(1)
    draw("Lung_Opacity", -2.6 + 2.2 * parenchymal + 0.3 * acute)
    pathology = np.delete(y, [FIND["No_Finding"], FIND["Support_Devices"]], axis=1).max(1)
    y[:, FIND["No_Finding"]] = 1 - pathology
    return y


def plan_cxr(S: Shard, rng: np.random.Generator, icu_member: np.ndarray, icu_time: np.ndarray,
             icu_sev: np.ndarray, lung_ca_time: np.ndarray) -> dict[str, np.ndarray]:
    """Schedule chest X-ray studies (1-3 per member; ICU patients often get one in the ICU).

    Args:
        S: the shard (``S.end`` set).
        rng: CXR stream.
        icu_member, icu_time, icu_sev: ICU membership, ICU admission time and severity.
        lung_ca_time: lung-cancer diagnosis time per subject (inf = none).

    Returns:
        Dict of per-study arrays: subj, k (study rank), time, icu flag, labels (m, 14), strength.
    """
    icu_cxr = icu_member & (rng.random(S.n) < 0.6)
    out_member = ~icu_cxr & (rng.random(S.n) < 0.19)
    n_out = np.where(icu_cxr, rng.choice(3, S.n, p=[0.5, 0.3, 0.2]),
                     np.where(out_member, 1 + rng.choice(3, S.n, p=[0.4, 0.35, 0.25]), 0))
    o_subj, _ = ragged(n_out)
    lo, hi = S.start[o_subj] + 0.25 * YEAR, S.end[o_subj]
    o_t = lo + rng.random(o_subj.size) * np.maximum(hi - lo, 0.0)
    o_t = np.where(hi > lo, o_t, np.inf)                     # no room in follow-up: study vanishes
    i_subj = np.flatnonzero(icu_cxr)
    i_t = icu_time[i_subj] + (1.0 + 9.0 * rng.random(i_subj.size)) * HOUR
    subj = np.concatenate([i_subj, o_subj])
    t = np.concatenate([i_t, o_t])
    icu = np.concatenate([np.ones(i_subj.size, bool), np.zeros(o_subj.size, bool)])
    ok = np.isfinite(t)
    subj, t, icu = subj[ok], t[ok], icu[ok]
    order = np.lexsort((t, subj))
    subj, t, icu = subj[order], t[order], icu[order]
    _, k = ragged(np.bincount(subj, minlength=S.n))
    acute = np.where(icu, 0.5 + 0.6 * icu_sev[subj] + 0.6 * rng.standard_normal(subj.size),
                     -0.3 + 0.9 * rng.standard_normal(subj.size))
    lung_ca = (lung_ca_time[subj] <= t + 30.0).astype(float)
    labels = _prob_findings(rng, S, subj, t, icu, acute, lung_ca)
    strength = np.clip(1.0 + 0.3 * rng.standard_normal((subj.size, N_FIND)), 0.4, 1.8) * labels
    return {"subj": subj, "k": k, "time": t, "icu": icu, "labels": labels, "strength": strength}


def _str_series(name: str, values: np.ndarray) -> pl.Series:
    """Object array of str/None -> polars String series (polars cannot cast numpy object arrays)."""
    return pl.from_arrow(pa.array(values, type=pa.string())).alias(name)


_INDICATIONS = np.array(["Cough.", "Shortness of breath.", "Fever.", "Chest pain.", "Preoperative evaluation.",
                         "Follow-up.", "Hypoxia.", "Line placement."], dtype=object)


def _reports(rng: np.random.Generator, labels: np.ndarray, icu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Templated radiology reports with omissions, negations and hedged false mentions.

    Returns:
        (texts as object array, mention matrix (m, 14) float: +1 positive mention, +0.5 hedge,
        -0.3 negation, 0 not mentioned) — the mention matrix drives the note embedding, so the text
        embedding sees the same noisy view of the findings as the text.
    """
    m = labels.shape[0]
    cols = []
    mention = np.zeros((m, N_FIND))
    pos_cols = []
    for j, name in enumerate(V.CXR_FINDINGS):
        pos_ph, neg_ph = V.CXR_PHRASES[name]
        r = rng.random(m)
        pos = (labels[:, j] == 1) & (r < 0.92)
        neg = (labels[:, j] == 0) & (r < 0.35) & (len(neg_ph) > 0)
        hedge = (labels[:, j] == 0) & (r > 0.97) & (name != "No_Finding")
        pos_txt = np.array(pos_ph, dtype=object)[rng.integers(0, len(pos_ph), m)]
        neg_txt = np.array(neg_ph or ["."], dtype=object)[rng.integers(0, max(len(neg_ph), 1), m)]
        hedge_txt = f"Cannot exclude {name.replace('_', ' ').lower()}."
        txt = np.full(m, None, dtype=object)
        txt[neg] = neg_txt[neg]
        txt[hedge] = hedge_txt
        txt[pos] = pos_txt[pos]
        mention[:, j] = np.select([pos, hedge, neg], [1.0, 0.5, -0.3], 0.0)
        cols.append(_str_series(f"f{j}", txt))
        pos_cols.append(_str_series(f"p{j}", np.where(pos, pos_txt, None)))
    header = np.where(icu, "EXAMINATION: CHEST (PORTABLE AP).", "EXAMINATION: CHEST (PA AND LAT).")
    indication = _INDICATIONS[np.where(icu, rng.integers(5, 8, m), rng.integers(0, 6, m))]
    df = pl.DataFrame([_str_series("h", header.astype(object)), _str_series("i", indication), *cols, *pos_cols])
    text = df.select(pl.concat_str([
        pl.col("h"), pl.lit("INDICATION:"), pl.col("i"), pl.lit("FINDINGS:"),
        pl.concat_str([pl.col(f"f{j}") for j in range(N_FIND)], separator=" ", ignore_nulls=True),
        pl.lit("IMPRESSION:"),
        pl.coalesce([pl.col(f"p{j}") for j in range(N_FIND)] + [pl.lit("No acute findings.")]),
    ], separator=" ")).to_series()
    return text.to_numpy().astype(object), mention


def emit_cxr(S: Shard, rng: np.random.Generator, ev: Events, plan: dict[str, np.ndarray]) -> dict[str, pa.Table]:
    """Events (IMAGING/CXR at study time; report text and CXR_FINDING/* at +2 h) and the cxr/note
    sidecars.  The findings and the report are signed after the study: at the prediction time (the
    study time) only the image and its embedding are visible.

    Returns:
        {"cxr": table, "note": table} (times still float days; converted by the caller).
    """
    subj, t, labels, icu = plan["subj"], plan["time"], plan["labels"], plan["icu"]
    m = subj.size
    study_id = S.ids[subj] * 100 + plan["k"]
    ev.add(subj, t, "IMAGING/CXR")
    texts, mention = _reports(rng, labels, icu)
    t_rep = t + 2.0 * HOUR
    ev.add(subj, t_rep, "NOTE/RADIOLOGY", text=texts)
    si, fj = np.nonzero(labels)
    ev.add(subj[si], t_rep[si], cids(V.CXR_FINDING_CODES)[fj])
    M = _maps()
    view = icu.astype(int)                               # 0 = PA (outpatient), 1 = AP (portable)
    emb = _linear_embed(rng, plan["strength"], np.full(N_FIND, 2.2), M["cxr"], 8, 1.5)
    emb += M["cxr_view"][:, view].T.astype(np.float32)
    note_emb = _linear_embed(rng, mention, np.full(N_FIND, 2.5), M["note"], 4, 1.0)
    cxr = {"subj": subj, "time": t, "study_id": study_id,
           "view": np.where(view == 1, "AP", "PA").astype(object), "embedding": emb, "labels": labels}
    note = {"subj": subj, "time": t_rep, "note_id": study_id, "study_id": study_id, "embedding": note_emb}
    return {"cxr": cxr, "note": note}


def _grid() -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE * 2.0 - 1.0
    return np.meshgrid(c, c, indexing="ij")  # yy (rows, down = +), xx (cols)


def _ellipse(yy, xx, cy, cx, ry, rx, soft=0.08):
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - d) / soft + 0.5, 0.0, 1.0)


def render_cxr(rng: np.random.Generator, strength: np.ndarray) -> np.ndarray:
    """Render 64x64 grayscale chest radiographs whose appearance encodes the findings.

    Each positive finding draws a characteristic pattern (bigger heart, basal fluid, haze, nodule,
    device line, ...) with intensity proportional to its strength, at a jittered position; global
    brightness/contrast jitter and pixel noise make the mapping noisy.

    Args:
        rng: image stream (separate from the data streams, so images=False changes nothing else).
        strength: (m, 14) finding strengths (0 for absent findings).

    Returns:
        uint8 array (m, 64, 64).
    """
    m = strength.shape[0]
    yy, xx = _grid()
    yy, xx = yy[None], xx[None]
    s = {f: strength[:, i][:, None, None] for f, i in FIND.items()}

    def col(shape_scale=1.0):
        return (rng.random((m, 1, 1)) * 2.0 - 1.0) * shape_scale

    side = np.where(rng.random((m, 1, 1)) < 0.5, -1.0, 1.0)
    img = 0.30 * _ellipse(yy, xx, 0.05, 0.0, 0.95, 0.85)
    lungs = _ellipse(yy, xx, -0.05, -0.40, 0.60, 0.28) + _ellipse(yy, xx, -0.05, 0.40, 0.60, 0.28)
    img = img - 0.20 * lungs
    heart_r = 0.22 * (1.0 + 0.3 * s["Cardiomegaly"]) * (0.9 + 0.2 * rng.random((m, 1, 1)))
    img = img + 0.35 * _ellipse(yy, xx, 0.25, -0.08, 0.20, heart_r)
    med_w = 0.08 * (0.8 + 0.4 * rng.random((m, 1, 1))) * (1.0 + 0.6 * s["Enlarged_Cardiomediastinum"])
    img = img + 0.25 * np.clip((med_w - np.abs(xx)) / 0.04, 0, 1) * (yy < 0.1)
    img = img + 0.30 * s["Pleural_Effusion"] * lungs * np.clip((yy - 0.30) / 0.1, 0, 1)
    img = img + 0.20 * s["Edema"] * np.exp(-((yy - 0.0) ** 2 + (np.abs(xx) - 0.3) ** 2) / 0.08)
    img = img + 0.35 * s["Consolidation"] * _ellipse(yy, xx, 0.2 + 0.1 * col(), 0.4 * side, 0.15, 0.12)
    img = img + 0.25 * s["Pneumonia"] * _ellipse(yy, xx, 0.3 + 0.1 * col(), -0.4 * side, 0.2, 0.15)
    img = img + 0.25 * s["Atelectasis"] * np.exp(-((yy - 0.40) ** 2) / 0.002) * lungs
    img = img + 0.20 * s["Lung_Opacity"] * lungs * (0.5 + 0.5 * np.sin(9 * xx + 7 * yy + 3 * col()))
    img = img + 0.45 * s["Lung_Lesion"] * _ellipse(yy, xx, -0.3 + 0.1 * col(), 0.38 * side, 0.06, 0.06)
    ptx = np.clip((np.abs(xx) - 0.55) / 0.05, 0, 1) * (np.sign(xx) == side) * (yy < 0.2)
    img = img - 0.25 * s["Pneumothorax"] * ptx
    rib = np.exp(-((yy + 0.1 + 0.1 * col() - 0.5 * (xx - 0.6 * side)) ** 2) / 0.0015)
    img = img + 0.40 * s["Fracture"] * rib * (np.abs(xx - 0.6 * side) < 0.12)
    img = img + 0.08 * s["Pleural_Other"] * np.clip((np.abs(xx) - 0.62) / 0.04, 0, 1) * (yy < 0.5)
    tube = np.exp(-((xx - 0.02 * col()) ** 2) / 0.0008) * (yy < 0.0)
    img = img + 0.45 * s["Support_Devices"] * tube
    img = (0.9 + 0.2 * rng.random((m, 1, 1))) * img + 0.05 * rng.random((m, 1, 1))
    img = img + 0.08 * rng.standard_normal(img.shape)
    return np.clip(np.round(img * 255.0 * 1.4), 0, 255).astype(np.uint8)


def write_pngs(pixels: np.ndarray, paths: list[Path]) -> None:
    """Write uint8 images as PNG with fixed options (no metadata, fixed zlib level) for
    byte-determinism.  One PIL call per image is unavoidable; pixel synthesis is vectorised."""
    for arr, path in zip(pixels, paths):
        Image.fromarray(arr).save(path, format="PNG", optimize=False, compress_level=6)
