"""MEHRT batches: (document, window start) pairs -> right-padded model inputs.

A window is the document's demographic prefix (always kept) followed by a contiguous span of
tokens. Training draws random spans (`trainer.sample_windows`); evaluation and downstream encoding
keep the most recent tokens (`recent_starts`, the truncation rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from encoders.mehrt.model import IGNORE_INDEX, MEHRTConfig
from encoders.mehrt.tokenizer import PAD_ID, PREFIX_LEN, Corpus, Tokenizer


def recent_starts(lengths: np.ndarray, docs: np.ndarray, seq_len: int) -> np.ndarray:
    """Window starts that keep the most recent seq_len - PREFIX_LEN tokens (truncation rule)."""
    return np.maximum(lengths[docs] - (seq_len - PREFIX_LEN), PREFIX_LEN)


def shared_recent_starts(corpus: Corpus, docs: np.ndarray, seq_len: int, multimodal: bool) -> np.ndarray:
    """Starts of the most recent window of the *multimodal* documents, in a variant's coordinates.

    The window is chosen once on the full documents (placeholders included): prefix + the most
    recent seq_len - PREFIX_LEN tokens. For the multimodal variant the start is that window's; for
    the structured-only variant it is the same position minus the placeholders before it, so the
    window holds exactly the same structured tokens (the placeholders dropped). Both variants then
    predict the same target tokens, which makes EHRT and MEHRT perplexities comparable.

    Args:
        corpus: the documents.
        docs: document indices [B].
        seq_len: window length of the multimodal variant (prefix included).
        multimodal: the variant the starts are for.

    Returns:
        int64 [B] starts for `Collator(..., multimodal=multimodal)(docs, starts, seq_len)`.
    """
    full = corpus.lengths(True)
    starts = recent_starts(full, docs, seq_len)
    if multimodal:
        return starts
    rows = np.asarray(corpus.image_rows)
    before = [int((rows[corpus.offsets[d]:corpus.offsets[d] + s] >= 0).sum()) for d, s in zip(docs, starts)]
    return starts - np.asarray(before, dtype=np.int64)


@dataclass(frozen=True)
class Collator:
    """Turns (document, window start) pairs into model inputs.

    Args:
        corpus: the tokenized documents.
        multimodal: keep image placeholders (and give PRS); False = structured-only (EHRT).
        image_dims: the model's (modality, dim) in config order (empty for EHRT).
        placeholder_ids: placeholder token id -> 1-based modality index in image_dims.
        use_prs: pass the PRS vector (when the model has a PRS pathway).
    """

    corpus: Corpus
    multimodal: bool
    image_dims: tuple[tuple[str, int], ...] = ()
    placeholder_ids: tuple[tuple[int, int], ...] = ()
    use_prs: bool = False

    def sequence(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and image rows of document d in this variant."""
        ids, rows = self.corpus.doc(int(d))
        if not self.multimodal:
            keep = rows < 0
            ids, rows = ids[keep], rows[keep]
        return ids, rows

    def __call__(self, docs: np.ndarray, starts: np.ndarray, seq_len: int,
                 repeat: bool = False) -> dict[str, torch.Tensor]:
        """Right-padded batch.

        Args:
            docs: document indices [B].
            starts: window starts [B] (see `sample_windows`).
            seq_len: window length (prefix included).
            repeat: echo embeddings: the window twice in a row ([x; x]).

        Returns:
            input_ids, labels (IGNORE_INDEX on padding and placeholders), lengths, and when
            multimodal image_index, image_values, prs.
        """
        seqs = []
        for d, s in zip(docs, starts):
            ids, rows = self.sequence(d)
            body = seq_len - PREFIX_LEN
            w_ids = np.concatenate([ids[:PREFIX_LEN], ids[s:s + body]])
            w_rows = np.concatenate([rows[:PREFIX_LEN], rows[s:s + body]])
            if repeat:
                w_ids, w_rows = np.tile(w_ids, 2), np.tile(w_rows, 2)
            seqs.append((w_ids, w_rows))
        B, T = len(seqs), max(len(s[0]) for s in seqs)
        input_ids = np.full((B, T), PAD_ID, np.int64)
        rows = np.full((B, T), -1, np.int64)
        lengths = np.zeros(B, np.int64)
        for i, (a, r) in enumerate(seqs):
            input_ids[i, :len(a)], rows[i, :len(a)], lengths[i] = a, r, len(a)
        real = np.arange(T)[None, :] < lengths[:, None]
        labels = np.where(real & (rows < 0), input_ids, IGNORE_INDEX)
        out = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
               "lengths": torch.from_numpy(lengths)}
        if self.multimodal and self.image_dims:
            lut = dict(self.placeholder_ids)
            index = np.zeros((B, T), np.int64)
            has = rows >= 0
            index[has] = [lut.get(int(t), 0) for t in input_ids[has]]
            E = max(d for _, d in self.image_dims)
            values = np.zeros((B, T, E), np.float32)
            if has.any():
                values[has] = np.asarray(self.corpus.images[rows[has]])[:, :E]
            out["image_index"] = torch.from_numpy(index)
            out["image_values"] = torch.from_numpy(values)
        if self.multimodal and self.use_prs:
            out["prs"] = torch.from_numpy(np.asarray(self.corpus.prs[docs], dtype=np.float32))
        return out


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's model keyword arguments on a device (lengths dropped).

    Right padding needs no attention mask: under causal attention a real token only sees earlier
    positions, which are real, so SDPA's mask-free causal path (flash kernels) stays usable.
    """
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "lengths"}


def collator(corpus: Corpus, tokenizer: Tokenizer, config: MEHRTConfig) -> Collator:
    """The Collator matching a model config (multimodal iff it has images or PRS)."""
    multimodal = bool(config.image_dims) or config.prs_mode is not None
    return Collator(corpus, multimodal=multimodal, image_dims=config.image_dims,
                    placeholder_ids=tuple(sorted(tokenizer.placeholder_ids(config.image_dims).items())),
                    use_prs=config.prs_mode is not None)
