"""MEHRT pretraining corpora: the tokenizer fitted on the training split, train and held-out documents.

The pretraining corpus is the *training split's* subjects, each with its whole record (there is no
prediction time in pretraining; the leakage guard is applied with an unbounded one). The tuning
and held-out subjects are never used for pretraining; held-out subjects' records only give the
test perplexity reported per stage. The vocabulary and value bins are fitted on the training
split. Corpora are tokenized once per cohort into memory-mapped arrays under
``cache_dir()/mehrt/<fingerprint>/`` and reused.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmark.artifacts import atomic_write
from encoders.mehrt.tokenizer import (IMAGE_MODALITIES, TOKENIZER_VERSION, Corpus, Tokenizer, guarded_inputs,
                                      pretraining_documents)

PRS_MODALITY = "prs"


# ====================================================================================== corpora (cached)
def mehrt_cache() -> Path:
    """cache_dir()/mehrt."""
    from benchmark.paths import cache_dir
    return cache_dir() / "mehrt"


@contextmanager
def file_lock(path: Path):
    """An exclusive lock file: concurrent runs wait for the one doing the work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Corpora:
    """The tokenizer (fitted on train) and the train / held-out pretraining corpora of a cohort."""

    tokenizer: Tokenizer
    train: Corpus
    held_out: Corpus
    folder: Path


def prepare_corpora(cohort, min_subjects: int = 5) -> Corpora:
    """Fit the tokenizer on the training split and tokenize train and held-out records (cached).

    Args:
        cohort: the Cohort.
        min_subjects: rare-token threshold of the tokenizer.

    Returns:
        Corpora, loaded memory-mapped from cache_dir()/mehrt/<fingerprint>/.
    """
    folder = mehrt_cache() / cohort.fingerprint() / f"tok-v{TOKENIZER_VERSION}-k{min_subjects}"
    done = folder / "done.json"
    if not done.exists():
        with file_lock(folder.with_suffix(".lock")):
            if not done.exists():
                folder.mkdir(parents=True, exist_ok=True)
                train_docs = pretraining_documents(cohort, "train")
                ev, imgs, prs = guarded_inputs(cohort, train_docs, IMAGE_MODALITIES, PRS_MODALITY)
                tok = Tokenizer(min_subjects, hierarchy=cohort.code_truncation).fit(ev.drop("prediction_time"))
                tok.save(folder / "tokenizer.json")
                for split, docs in (("train", train_docs), ("held_out", pretraining_documents(cohort, "held_out"))):
                    ev, imgs, prs = guarded_inputs(cohort, docs, IMAGE_MODALITIES, PRS_MODALITY)
                    tok.tokenize(ev, docs, imgs, prs, eos=True).save(folder / split)
                atomic_write(done, json.dumps({"tokenizer": tok.hash()}, indent=1))
    tok = Tokenizer.load(folder / "tokenizer.json")
    return Corpora(tok, Corpus.load(folder / "train"), Corpus.load(folder / "held_out"), folder)
