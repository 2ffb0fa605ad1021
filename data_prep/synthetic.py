"""Deterministic synthetic multimodal cohort generator (the benchmark's embedded default dataset).

``generate(out_dir, n_subjects, seed)`` writes a MEDS dataset plus multimodal sidecars (CT, WSI, CXR,
note and PRS embeddings; optional 64x64 CXR PNGs) and a ``predicates.yaml`` map.  The simulator is a
test oracle for the benchmark machinery, not a model of medicine: latent states drive planted
effects documented in data_prep/README.md.

Determinism: the output bytes depend only on (n_subjects, seed, shard_size) and the pinned library
versions.  Each output shard draws from its own ``numpy.random.SeedSequence(seed, spawn_key=(split,
shard, stream))`` streams, so shards are independent and can be produced one at a time with bounded
memory.  Parquet files use fixed writer options and no wall-clock timestamps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import meds
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.artifacts import atomic_dir, atomic_write
from benchmark.errors import UserError
from benchmark.vocabulary import SPLITS as BENCHMARK_SPLITS
from data_prep import synthetic_cardio as CARD
from data_prep import synthetic_clinical as CL
from data_prep import synthetic_imaging as IM
from data_prep import synthetic_sim as SIM
from data_prep.synthetic_site import SITE_A, Site, shift_embedding, shift_pixels
from data_prep.synthetic_site import site as site_named
from data_prep import synthetic_vocab as V

GENERATOR_VERSION = "2.1.0"
PREDICATES_FILE = Path(__file__).resolve().parent / "datasets" / "synthetic" / "predicates.yaml"
SPLITS = (meds.train_split, meds.tuning_split, meds.held_out_split)  # written by name from meds
assert SPLITS == BENCHMARK_SPLITS, f"meds split names {SPLITS} differ from benchmark.vocabulary.SPLITS"
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
LATENTS_FILE = "_latents.parquet"
_SPLIT_KEY = 10_000                  # spawn key of the split-assignment stream (distinct from shards)
_ROW_GROUP = 250_000

# stream numbers inside a shard; never renumber (it would change every cohort)
_S_DEMO, _S_T2D, _S_ONC, _S_LEAK, _S_ICU, _S_PE, _S_CARD, _S_BG, _S_T2D_EMIT = range(9)
_S_ONC_EMIT, _S_ICU_EMIT, _S_PE_EMIT, _S_CARD_EMIT, _S_CXR, _S_PRS, _S_IMG = range(9, 16)
# generator 2 (repeat studies, heart failure, sudden cardiac death) and the site's scanner noise
_S_PE2, _S_PE2_EMIT, _S_CARD2, _S_CARD2_EMIT, _S_SITE, _S_SITE_IMG = range(16, 22)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a table with pinned options so equal tables always give equal bytes.

    Args:
        table: the Arrow table (its schema is written as is).
        path: destination file.
    """
    pq.write_table(table, path, compression="zstd", compression_level=3, use_dictionary=True,
                   write_statistics=True, version="2.6", data_page_version="1.0", row_group_size=_ROW_GROUP,
                   store_schema=True, write_page_index=False, use_byte_stream_split=False)


def assign_splits(n_subjects: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 70/15/15 train/tuning/held_out split of subject ids 1..n.

    Args:
        n_subjects: number of subjects.
        seed: cohort seed.

    Returns:
        (subject_ids int64 sorted, split index per subject: 0 train, 1 tuning, 2 held_out).
    """
    ids = np.arange(1, n_subjects + 1, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEY,)))
    perm = rng.permutation(n_subjects)
    n_train = int(round(SPLIT_FRACTIONS[0] * n_subjects))
    n_tune = int(round(SPLIT_FRACTIONS[1] * n_subjects))
    split = np.empty(n_subjects, dtype=np.int64)
    split[perm[:n_train]] = 0
    split[perm[n_train:n_train + n_tune]] = 1
    split[perm[n_train + n_tune:]] = 2
    return ids, split


def _rng(seed: int, split: int, shard: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split, shard, stream)))


def _fsl(emb: np.ndarray) -> pa.Array:
    """(m, d) float32 -> fixed_size_list<float32>[d]."""
    d = emb.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(emb, np.float32).ravel()), d)


def _sidecar_table(S: SIM.Shard, rows: dict, id_col: str, static: bool = False) -> tuple[pa.Table, np.ndarray]:
    """Turn per-row sidecar arrays (local subject index, float-day time, items) into an Arrow table,
    dropping rows after the subject's end of follow-up and sorting by (subject, time, id).

    Returns:
        (table, kept-row positions into the original arrays, in output order).
    """
    subj = rows["subj"]
    if static:
        t_us = np.zeros(subj.size, dtype=np.int64)
        keep = np.ones(subj.size, dtype=bool)
    else:
        t_us = SIM.to_us(rows["time"])
        keep = t_us <= SIM.to_us(S.end)[subj]
    pos = np.flatnonzero(keep)
    pos = pos[np.lexsort((rows[id_col][pos], t_us[pos], subj[pos]))]
    cols = {"subject_id": pa.array(S.ids[subj[pos]], type=pa.int64()),
            "time": (pa.nulls(pos.size, pa.timestamp("us")) if static
                     else pa.array(t_us[pos], type=pa.int64()).cast(pa.timestamp("us")))}
    for name, val in rows.items():
        if name in ("subj", "time", "embedding", "labels"):
            continue
        arr = np.asarray(val)[pos]
        cols[name] = pa.array(arr, type=pa.string() if arr.dtype == object else pa.int64())
    if "labels" in rows:
        lab = np.asarray(rows["labels"], dtype=np.int8)[pos]
        offsets = np.arange(0, lab.size + 1, lab.shape[1], dtype=np.int32)
        cols["labels"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(lab.ravel(), type=pa.int8()))
    cols["embedding"] = _fsl(rows["embedding"][pos])
    return pa.table(cols), pos


def simulate_shard(subject_ids: np.ndarray, seed: int, split: int, shard: int, *,
                   image_dir: Path | None = None, site: Site = SITE_A) -> dict:
    """Simulate one output shard (all its subjects belong to one split).

    Args:
        subject_ids: sorted int64 ids of the shard's subjects.
        seed: cohort seed.
        split: split index (0 train, 1 tuning, 2 held_out).
        shard: shard number within the split.
        image_dir: when given, CXR PNGs are written there (named ``<study_id>.png``).
        site: the hospital (data_prep.synthetic_site): case mix, coding habits, image shift.

    Returns:
        {"data": MEDS table, "modalities": {name: table}, "latents": table}.
    """
    r = lambda k: _rng(seed, split, shard, k)  # noqa: E731 - short local alias
    S = SIM.make_subjects(subject_ids, r(_S_DEMO), site.birth_years, site.ltfu_per_year)
    SIM.plan_t2d(S, r(_S_T2D))
    onc = CL.plan_oncology(S, r(_S_ONC), r(_S_LEAK))
    icu = CL.plan_icu(S, r(_S_ICU))
    pe = CARD.plan_pe(S, r(_S_PE), r(_S_PE2), onc, site)
    card = CARD.plan_cardiac(S, r(_S_CARD), r(_S_CARD2), site)
    SIM.finish_follow_up(S)

    ev = SIM.Events()
    SIM.emit_static(S, ev)
    SIM.emit_death(S, ev)
    CARD.emit_death_causes(S, ev, card, site)
    SIM.emit_background(S, r(_S_BG), ev)
    CL.emit_t2d_onset(S, r(_S_T2D_EMIT), ev)
    side_onc = CL.emit_oncology(S, r(_S_ONC_EMIT), ev, onc)
    CL.emit_icu(S, r(_S_ICU_EMIT), ev, icu)
    side_pe = CARD.emit_pe(S, r(_S_PE_EMIT), r(_S_PE2_EMIT), ev, pe, site)
    side_card = CARD.emit_cardiac(S, r(_S_CARD_EMIT), r(_S_CARD2_EMIT), ev, card, site)
    lung = onc["member"] & (onc["site"] == 0)
    rng_cxr = r(_S_CXR)
    cxr_plan = IM.plan_cxr(S, rng_cxr, icu["member"], icu["t"], icu["sev"], np.where(lung, onc["t_dx"], np.inf))
    side_cxr = IM.emit_cxr(S, rng_cxr, ev, cxr_plan)
    data = ev.finalize(S.ids, S.end, site.never_codes)

    mods: dict[str, pa.Table] = {}
    ct_rows = {k: np.concatenate([side_onc["ct"][k], side_pe[k], side_card[k]]) for k in side_pe}
    if site.shifted:                       # the site's scanners: CT and CXR embeddings shift
        rng_site = r(_S_SITE)
        ct_rows["embedding"] = shift_embedding(rng_site, ct_rows["embedding"], site.ct_shift, 0)
        side_cxr["cxr"]["embedding"] = shift_embedding(rng_site, side_cxr["cxr"]["embedding"], site.cxr_shift, 1)
    mods["ct"], _ = _sidecar_table(S, ct_rows, "study_id")
    mods["wsi"], _ = _sidecar_table(S, side_onc["wsi"], "slide_id")
    mods["note"], _ = _sidecar_table(S, side_cxr["note"], "note_id")
    prs = {"subj": np.arange(S.n), "embedding": IM.embed_prs(r(_S_PRS), S.g, S.race)}
    mods["prs"], _ = _sidecar_table(S, prs, "subj", static=True)
    cxr, pos = _sidecar_table(S, side_cxr["cxr"], "study_id")
    if image_dir is not None:
        study = side_cxr["cxr"]["study_id"][pos]
        rel = np.array([f"images/cxr/{s}.png" for s in study], dtype=object)
        cxr = cxr.add_column(cxr.schema.get_field_index("view") + 1, "path", pa.array(rel, type=pa.string()))
        rng_img, rng_site_img = r(_S_IMG), r(_S_SITE_IMG)
        for b in range(0, pos.size, 512):            # bounded memory: 512 images at a time
            px = IM.render_cxr(rng_img, cxr_plan["strength"][pos[b:b + 512]])
            if site.shifted:
                px = shift_pixels(rng_site_img, px, site.png_shift)
            IM.write_pngs(px, [image_dir / f"{s}.png" for s in study[b:b + 512]])
    mods["cxr"] = cxr
    return {"data": data, "modalities": mods, "latents": _latents(S, split, onc, icu, pe, card)}


def _latents(S: SIM.Shard, split: int, onc: dict, icu: dict, pe: dict, card: dict) -> pa.Table:
    """Ground-truth latents and planned schedule per subject (debug / test oracle only).

    Population flags and times are as planned: a subject may die before a planned event (e.g. before
    treatment start), in which case the event is absent from the MEDS data.
    """
    def ts(t: np.ndarray, member: np.ndarray) -> pa.Array:
        ok = member & np.isfinite(t)
        return pa.array(SIM.to_us(np.where(ok, t, 0.0)), mask=~ok, type=pa.int64()).cast(pa.timestamp("us"))

    return pa.table({
        "subject_id": pa.array(S.ids, pa.int64()),
        "split": pa.array(np.array(SPLITS, dtype=object)[np.full(S.n, split)], pa.string()),
        "z": S.z, "g": S.g, "u_onc": S.u_onc, "u_pe": S.u_pe, "u_cac": S.u_cac,
        "died": S.died, "end_of_follow_up": ts(S.end, np.ones(S.n, bool)),
        "oncology": onc["member"],
        "cancer_site": pa.array(np.where(onc["member"], np.array([s[0] for s in V.CANCER_SITES], object)[onc["site"]],
                                         None), type=pa.string()),
        "regimen": pa.array(np.where(onc["member"], np.array([g[0] for g in V.REGIMENS], object)[onc["regimen"]],
                                     None), type=pa.string()),
        "treatment_start": ts(onc["t_tx"], onc["member"]), "leak_coin": onc["member"] & onc["leak"],
        "icu": icu["member"], "icu_severity": icu["sev"], "icu_admission": ts(icu["t"], icu["member"]),
        "pe": pe["member"], "cardiac_ct": card["member"],
        # generator 2 oracles: the structured half of each hazard at the first study, repeats, HF
        "pe_time": ts(pe["t"], pe["member"]), "pe_age_std": S.age_std(pe["t"]), "pe_cancer": pe["cancer"],
        "pe_hf": pe["hf"], "pe_copd": pe["copd"], "repeat_pe": pe["rep"],
        "cardiac_ct_time": ts(card["t"] + SIM.HOUR, card["member"]), "card_age_std": S.age_std(card["t"]),
        "card_htn": card["htn"], "card_hld": card["hld"], "repeat_cardiac_ct": card["rep"],
        "hf_event": ts(card["t_hf"], np.isfinite(card["t_hf"])), "sudden_cardiac_death": card["sudden"],
        "t2d_onset": ts(S.t2d_onset, np.isfinite(S.t2d_onset)),
    })


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"output folder {out_dir} already exists and is not empty", file=out_dir, field="--out",
                        fix="choose a new folder or delete it")


def generate(out_dir: Path, n_subjects: int = 5000, seed: int = 0, *, images: bool = True, shard_size: int = 5000,
             progress: Callable[[int, int], None] | None = None, write_latents: bool = False,
             site: str = "a") -> Path:
    """Generate the synthetic multimodal MEDS cohort.

    The cohort is built in a temporary folder next to ``out_dir`` and renamed at the end, so an
    interrupted run never leaves a half-written cohort.

    Args:
        out_dir: destination folder; must not exist or be empty.
        n_subjects: number of subjects (>= 20).
        seed: random seed; equal (n_subjects, seed, shard_size) give byte-identical output.
        images: also write 64x64 CXR PNGs under images/cxr/ (and a ``path`` column in cxr).
        shard_size: maximum subjects per data shard file within a split.
        progress: optional callback ``progress(done_subjects, total_subjects)`` after each shard.
        write_latents: debug/test option: also write ``_latents.parquet`` (true latents and planted
            schedule) at the cohort root, outside the MEDS files.  Never give it to a model.
        site: "a" (the default cohort) or "b" (a second hospital for external validation: same
            latent model and coefficients, other case mix, coding habits and image distribution;
            data_prep/synthetic_site.py).

    Returns:
        The cohort folder (``out_dir``).

    Raises:
        UserError: out_dir is not empty, or n_subjects / shard_size are out of range.
    """
    out_dir = Path(out_dir)
    the_site = site_named(site)
    _check_out_dir(out_dir)
    if int(n_subjects) < 20:
        raise UserError(f"n_subjects must be at least 20, got {n_subjects}", field="--subjects",
                        fix="pass --subjects 20 or more")
    if int(shard_size) < 1:
        raise UserError(f"shard_size must be positive, got {shard_size}", field="shard_size",
                        fix="pass a positive shard size")
    n_subjects, seed, shard_size = int(n_subjects), int(seed), int(shard_size)
    with atomic_dir(out_dir) as tmp:
        _build(tmp, n_subjects, seed, images, shard_size, progress, write_latents, the_site)
        _check_out_dir(out_dir)                 # someone may have created it meanwhile
    return out_dir


def _build(root: Path, n_subjects: int, seed: int, images: bool, shard_size: int,
           progress: Callable[[int, int], None] | None, write_latents: bool, site: Site) -> None:
    ids, split = assign_splits(n_subjects, seed)
    (root / "metadata").mkdir(parents=True)
    (root / "modalities").mkdir()
    image_dir = None
    if images:
        image_dir = root / "images" / "cxr"
        image_dir.mkdir(parents=True)
    data_schema = meds.DataSchema.schema()
    code_counts = np.zeros(len(SIM.CODES), dtype=np.int64)
    code_lookup = {c: i for i, c in enumerate(SIM.CODES)}
    mods: dict[str, list[pa.Table]] = {}
    latents: list[pa.Table] = []
    done = 0
    for s_idx, s_name in enumerate(SPLITS):
        (root / "data" / s_name).mkdir(parents=True)
        members = ids[split == s_idx]
        for shard, lo in enumerate(range(0, members.size, shard_size)):
            out = simulate_shard(members[lo:lo + shard_size], seed, s_idx, shard, image_dir=image_dir, site=site)
            table = out["data"].cast(data_schema)
            write_parquet(table, root / "data" / s_name / f"{shard}.parquet")
            vc = table.column("code").value_counts()
            for item in vc.to_pylist():
                code_counts[code_lookup[item["values"]]] += item["counts"]
            for name, t in out["modalities"].items():
                mods.setdefault(name, []).append(t)
            latents.append(out["latents"])
            del out, table
            done += min(shard_size, members.size - lo)
            if progress is not None:
                progress(done, n_subjects)
    for name, tables in sorted(mods.items()):
        t = pa.concat_tables(tables)
        sort_keys = [("subject_id", "ascending"), ("time", "ascending")]
        id_keys = [(c, "ascending") for c in ("study_id", "slide_id", "note_id") if c in t.column_names]
        t = t.sort_by(sort_keys + id_keys)
        write_parquet(t, root / "modalities" / f"{name}.parquet")
    present = [c for c, k in zip(SIM.CODES, code_counts) if k > 0]
    codes = pa.table({"code": pa.array(present, pa.string()),
                      "description": pa.array([V.description_for(c) for c in present], pa.string()),
                      "parent_codes": pa.array([V.parent_codes_for(c) for c in present], pa.list_(pa.string()))})
    write_parquet(codes.cast(meds.CodeMetadataSchema.schema()), root / "metadata" / "codes.parquet")
    splits = pa.table({"subject_id": pa.array(ids, pa.int64()),
                       "split": pa.array(np.array(SPLITS, dtype=object)[split], pa.string())})
    write_parquet(splits.cast(meds.SubjectSplitSchema.schema()), root / "metadata" / "subject_splits.parquet")
    meta = {
        "dataset_name": site.dataset_name,
        "dataset_version": (f"{GENERATOR_VERSION}+n{n_subjects}.seed{seed}.shard{shard_size}"
                            + ("" if site.name == "a" else f".site{site.name}")),
        "etl_name": "data_prep.synthetic",
        "etl_version": GENERATOR_VERSION,
        "meds_version": meds.__version__,
        "license": "CC0-1.0 (synthetic data)",
        "additional_value_modality_columns": [],
    }
    atomic_write(root / "metadata" / "dataset.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(PREDICATES_FILE, root / "predicates.yaml")
    if write_latents:
        t = pa.concat_tables(latents)
        write_parquet(t.sort_by([("subject_id", "ascending")]), root / LATENTS_FILE)
