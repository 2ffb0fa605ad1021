"""MEHRT tokenizer: MEDS events + image sidecars -> token ids, vectorized with polars.

A timeline ("document") is one subject's events up to a cut time: the prediction time of a task
sample, or the end of the record for pretraining. It becomes

    [BOS] GENDER/x RACE/x ETHNICITY/x AGE//a-b   <- prefix (fixed length, kept when truncating)
    [T_1w-2w] ICD10CM/R11 ICD10CM/10 LOINC/2160-0 [Q7] [IMG_ct] ...
    [EOS]                                         <- pretraining documents only

* one token per structured event; ICD codes are split into 1-3 hierarchy tokens: the category
  (first 3 characters after the vocabulary; which code families and how many characters come from
  the cohort's dataset profile, ``hierarchy.truncate``), then the rest of the code in chunks of 2
  ("ICD10CM/R11.10" -> "ICD10CM/R11", "ICD10CM/10"; "ICD10PCS/30233N1" -> "ICD10PCS/302",
  "ICD10PCS/33", "ICD10PCS/N1"), so rare leaf codes share their category's token;
* a numeric value becomes a quantile-bin token [Q0]..[Q9] right after its code token; the 9
  cut points are per code, fitted on the training split (ETHOS, Renc et al. 2024);
* a gap of >= 5 minutes between consecutive structured events becomes one time-interval token
  (ETHOS-style buckets, 5 min to 5+ years); events at the same time share one gap token;
* image studies of the ct / wsi / cxr sidecars become placeholder tokens [IMG_<m>] at their time
  (after the structured events of the same time). Their model input is the study embedding (the
  mean over rows that share a study id, e.g. slices or tiles). Placeholders never produce time
  tokens, so dropping them (structured-only EHRT) leaves exactly the structured token sequence;
* demographics (sex, race, ethnicity, 5-year age bucket at the first timed event) open the
  document; MEDS_BIRTH is not a token (the age token carries it); other static codes follow;
* tokens seen in fewer than `min_subjects` training subjects map to [UNK].

All input comes through the leakage guard (`benchmark.data.leakage`): task timelines from
`TaskData.visible_events` / `visible_modality`, pretraining timelines from the same guard with an
unbounded prediction time for training-split subjects. Equal events always give equal tokens
(events are ordered by time, then code, then value).

A tokenized set of documents is a `Corpus`: flat numpy arrays (tokens, per-document offsets,
per-token image rows, image embeddings, PRS vectors) saved as .npy files and opened memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.data.leakage import visible_events, visible_modality
from benchmark.artifacts import atomic_write
from benchmark.vocabulary import IMAGE_MODALITIES

# 2: timelines without non-static null-time rows (issue 12); 3: hierarchy families from the dataset profile
# (tokens change on cohorts whose ICD codes are not "ICD.../", e.g. MIMIC-IV; the synthetic cohort's are equal)
TOKENIZER_VERSION = "3"

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
N_BINS = 10
VALUE_TOKENS = tuple(f"[Q{i}]" for i in range(N_BINS))

# ETHOS-style time-interval buckets: (lower bound in minutes, token). Gaps under 5 min get none.
_DAY = 24 * 60
TIME_BUCKETS: tuple[tuple[float, str], ...] = (
    (5, "[T_5m-15m]"), (15, "[T_15m-1h]"), (60, "[T_1h-2h]"), (120, "[T_2h-6h]"),
    (360, "[T_6h-12h]"), (720, "[T_12h-1d]"), (_DAY, "[T_1d-3d]"), (3 * _DAY, "[T_3d-1w]"),
    (7 * _DAY, "[T_1w-2w]"), (14 * _DAY, "[T_2w-1mt]"), (30.4 * _DAY, "[T_1mt-3mt]"),
    (91.3 * _DAY, "[T_3mt-6mt]"), (182.6 * _DAY, "[T_6mt-1y]"), (365.25 * _DAY, "[T_1y-2y]"),
    (730.5 * _DAY, "[T_2y-5y]"), (1826.25 * _DAY, "[T_5y+]"),
)
AGE_TOKENS = tuple(f"AGE//{a}-{a + 4}" for a in range(0, 90, 5)) + ("AGE//90+",)
DEMOGRAPHIC_PREFIXES = ("GENDER/", "RACE/", "ETHNICITY/")
PREFIX_LEN = 1 + len(DEMOGRAPHIC_PREFIXES) + 1  # BOS, sex, race, ethnicity, age
# Items that identify one study in a sidecar; rows sharing (subject, time, id) are averaged.
STUDY_ID_COLUMNS = ("study_id", "slide_id", "series_id", "accession_id")
# "Prediction time" of pretraining documents: the whole record is visible.
END_OF_TIME = datetime(9999, 12, 31)
EVENT_COLUMNS = ("subject_id", "time", "code", "numeric_value")


def placeholder(modality: str) -> str:
    """The placeholder token of an image modality, e.g. "[IMG_ct]"."""
    return f"[IMG_{modality}]"


def fixed_tokens() -> list[str]:
    """Tokens that are always in the vocabulary, in id order (specials first: PAD=0 ... UNK=3)."""
    return [*SPECIAL_TOKENS, *(placeholder(m) for m in IMAGE_MODALITIES), *(t for _, t in TIME_BUCKETS),
            *VALUE_TOKENS, *AGE_TOKENS]


# ------------------------------------------------------------------------------ polars pieces
def _code_tokens(code: pl.Expr, hierarchy: dict[str, int] | None = None) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Hierarchy tokens of a code column: (tok1, tok2, tok3), tok2/tok3 null when absent.

    A code of a hierarchical family splits as prefix + category (its first n characters, dot
    removed), then the rest in chunks of 2; every other code is a single token. The families are
    the cohort's profile ``hierarchy.truncate`` (code prefix -> n, the most specific prefix wins);
    without one, every "ICD.../" vocabulary with n = 3 (the behaviour before dataset profiles).
    """
    if hierarchy is None:
        prefix, n = code.str.extract(r"^(ICD[^/]*/)", 1), pl.lit(3)
    else:
        prefix, n = pl.lit(None, pl.String), pl.lit(None, pl.Int64)
        for p, k in sorted(hierarchy.items(), key=lambda kv: len(kv[0])):  # longer prefixes wrap shorter ones
            hit = code.str.starts_with(p)
            prefix = pl.when(hit).then(pl.lit(p)).otherwise(prefix)
            n = pl.when(hit).then(pl.lit(int(k), pl.Int64)).otherwise(n)
    is_h = prefix.is_not_null()
    body = code.str.slice(prefix.str.len_chars()).str.replace(".", "", literal=True)
    m = body.str.len_chars()
    tok1 = pl.when(is_h).then(prefix + body.str.slice(0, n)).otherwise(code)
    tok2 = pl.when(is_h & (m > n)).then(prefix + body.str.slice(n, 2)).otherwise(None)
    tok3 = pl.when(is_h & (m > n + 2)).then(prefix + body.str.slice(n + 2)).otherwise(None)
    return tok1, tok2, tok3


def _time_token(gap_minutes: pl.Expr) -> pl.Expr:
    """Interval token of a gap in minutes (null below 5 minutes or when there is no gap)."""
    expr = pl.lit(None, dtype=pl.String)
    for lo, tok in TIME_BUCKETS:  # later buckets override earlier ones: the last lo <= gap wins
        expr = pl.when(gap_minutes >= lo).then(pl.lit(tok)).otherwise(expr)
    return expr


def _age_token(age_years: pl.Expr) -> pl.Expr:
    lo = (age_years.clip(0, 90) // 5 * 5).cast(pl.Int32)
    return (pl.when(age_years.is_null()).then(pl.lit(UNK))
            .when(lo >= 90).then(pl.lit("AGE//90+"))
            .otherwise(pl.lit("AGE//") + lo.cast(pl.String) + pl.lit("-") + (lo + 4).cast(pl.String)))


def _bin_columns() -> list[str]:
    return [f"e{i}" for i in range(1, N_BINS)]


# ------------------------------------------------------------------------------ corpus
@dataclass
class Corpus:
    """Tokenized documents as flat arrays (memory-mapped when loaded from disk).

    Attributes:
        tokens: int32 [N] token ids of all documents back to back.
        offsets: int64 [D+1]; document d is tokens[offsets[d]:offsets[d+1]].
        image_rows: int32 [N]; -1 for ordinary tokens, else the row of `images` of a placeholder.
        images: float32 [I, E] study embeddings (zero-padded to the widest modality).
        prs: float32 [D, P] PRS vector per document (zeros where missing), or shape [D, 0].
        has_prs: bool [D].
        keys: one row per document: subject_id, prediction_time (END_OF_TIME for pretraining).
        image_dims: (modality, dim) of the image modalities present, in IMAGE_MODALITIES order.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    image_rows: np.ndarray
    images: np.ndarray
    prs: np.ndarray
    has_prs: np.ndarray
    keys: pl.DataFrame
    image_dims: tuple[tuple[str, int], ...]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, image rows) of document d."""
        a, b = int(self.offsets[d]), int(self.offsets[d + 1])
        return np.asarray(self.tokens[a:b]), np.asarray(self.image_rows[a:b])

    def lengths(self, multimodal: bool = True) -> np.ndarray:
        """Tokens per document, with or without image placeholders. Returns int64 [D]."""
        n = np.diff(self.offsets)
        if multimodal or len(self.tokens) == 0:
            return n
        is_img = (np.asarray(self.image_rows) >= 0).astype(np.int64)
        n_img = np.add.reduceat(is_img, self.offsets[:-1]) if len(n) else n
        n_img = np.where(n > 0, n_img, 0)  # reduceat on an empty segment returns a neighbour's value
        return n - n_img

    def n_images(self) -> np.ndarray:
        """Image placeholders per document. Returns int64 [D]."""
        return self.lengths(True) - self.lengths(False)

    def save(self, folder: Path) -> None:
        """Write the arrays as .npy files (atomically: a temp folder renamed at the end).

        Args:
            folder: destination; replaced if it exists.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            for name in ("tokens", "offsets", "image_rows", "images", "prs", "has_prs"):
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            self.keys.write_parquet(tmp / "keys.parquet")
            (tmp / "meta.json").write_text(json.dumps({"image_dims": [list(x) for x in self.image_dims]}))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; left only by an error

    @classmethod
    def load(cls, folder: Path) -> Corpus:
        """Open a saved corpus memory-mapped (nothing is read until used).

        Args:
            folder: a folder written by `save`.

        Returns:
            The corpus.
        """
        folder = Path(folder)
        arr = {n: np.load(folder / f"{n}.npy", mmap_mode="r")
               for n in ("tokens", "offsets", "image_rows", "images", "prs", "has_prs")}
        meta = json.loads((folder / "meta.json").read_text())
        return cls(**arr, keys=pl.read_parquet(folder / "keys.parquet"),
                   image_dims=tuple((n, int(d)) for n, d in meta["image_dims"]))


# ------------------------------------------------------------------------------ tokenizer
class Tokenizer:
    """Vocabulary and value bins fitted on training timelines; maps timelines to `Corpus` arrays.

    Args:
        min_subjects: a token seen in fewer training subjects becomes [UNK] (also the minimum
            number of subjects with values for a code to get quantile bins).
        hierarchy: code prefix -> category length of the hierarchical code families (the cohort's
            ``Cohort.code_truncation``, from its dataset profile); None = every "ICD.../" code, 3.
    """

    def __init__(self, min_subjects: int = 5, hierarchy: dict[str, int] | None = None):
        self.min_subjects = min_subjects
        self.hierarchy = dict(hierarchy) if hierarchy is not None else None
        self.vocab: list[str] = []
        self.bins = pl.DataFrame(schema={"code": pl.String, **{c: pl.Float32 for c in _bin_columns()}})

    # -------------------------------------------------------------------------- fit
    def fit(self, events: pl.DataFrame | pl.LazyFrame) -> Tokenizer:
        """Fit value bins and vocabulary on training events (no prediction-time cut needed).

        Args:
            events: subject_id, time, code, numeric_value of training-split subjects only.

        Returns:
            self.
        """
        ev = events.lazy() if isinstance(events, pl.DataFrame) else events
        q = [pl.col("numeric_value").quantile(i / N_BINS, interpolation="linear").cast(pl.Float32).alias(c)
             for i, c in zip(range(1, N_BINS), _bin_columns())]
        self.bins = (ev.filter(pl.col("numeric_value").is_not_null() & pl.col("numeric_value").is_finite())
                     .group_by("code").agg(pl.col("subject_id").n_unique().alias("n"), *q)
                     .filter(pl.col("n") >= self.min_subjects).drop("n").sort("code").collect())
        tok1, tok2, tok3 = _code_tokens(pl.col("code"), self.hierarchy)
        counts = (ev.filter(pl.col("code") != "MEDS_BIRTH")
                  .select("subject_id", pl.concat_list(tok1, tok2, tok3).alias("tok"))
                  .explode("tok", empty_as_null=True).drop_nulls("tok").unique()
                  .group_by("tok").agg(pl.len().alias("n"))
                  .filter(pl.col("n") >= self.min_subjects).sort("tok").collect())
        fixed = fixed_tokens()
        seen = set(fixed)
        self.vocab = fixed + [t for t in counts["tok"].to_list() if t not in seen]
        self._index = None
        return self

    # -------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _vocab_frame(self) -> pl.DataFrame:
        if getattr(self, "_index", None) is None:
            self._index = pl.DataFrame({"tok": self.vocab, "id": np.arange(len(self.vocab), dtype=np.int32)})
        return self._index

    def token_id(self, token: str) -> int:
        """Id of a token string ([UNK]'s id if unknown)."""
        try:
            return self.vocab.index(token)
        except ValueError:
            return UNK_ID

    def decode(self, ids) -> list[str]:
        """Token strings of ids."""
        return [self.vocab[int(i)] for i in ids]

    def placeholder_ids(self, image_dims: tuple[tuple[str, int], ...]) -> dict[int, int]:
        """Placeholder token id -> modality index (1-based, in `image_dims` order) for the model."""
        return {self.token_id(placeholder(m)): k for k, (m, _) in enumerate(image_dims, start=1)}

    def state(self) -> dict:
        """JSON-able state (vocabulary, bins, settings)."""
        st = {"version": TOKENIZER_VERSION, "min_subjects": self.min_subjects, "vocab": self.vocab,
              "bins": self.bins.to_dict(as_series=False)}
        if self.hierarchy is not None:  # absent = the generic ICD rule
            st["hierarchy"] = self.hierarchy
        return st

    def hash(self) -> str:
        """16-hex-digit hash of the state: equal hashes tokenize equally."""
        return hashlib.sha256(json.dumps(self.state(), sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: Path) -> None:
        """Write the state as JSON (atomically)."""
        atomic_write(Path(path), json.dumps(self.state()))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Read a tokenizer written by `save`."""
        st = json.loads(Path(path).read_text())
        if st.get("version") != TOKENIZER_VERSION:
            raise ValueError(f"{path}: tokenizer version {st.get('version')} != {TOKENIZER_VERSION}")
        tok = cls(min_subjects=st["min_subjects"], hierarchy=st.get("hierarchy"))
        tok.vocab = list(st["vocab"])
        tok.bins = pl.DataFrame(st["bins"], schema={"code": pl.String, **{c: pl.Float32 for c in _bin_columns()}})
        tok._index = None
        return tok

    # -------------------------------------------------------------------------- tokenize
    def tokenize(self, events: pl.LazyFrame | pl.DataFrame, docs: pl.DataFrame,
                 images: dict[str, pl.LazyFrame | pl.DataFrame] | None = None,
                 prs: pl.LazyFrame | pl.DataFrame | None = None, eos: bool = False) -> Corpus:
        """Tokenize guarded events of many documents at once.

        Args:
            events: output of the leakage guard: subject_id, time, code, numeric_value,
                prediction_time (rows after their prediction time must already be gone).
            docs: subject_id, prediction_time, one row per document, in output order.
            images: modality name -> guarded sidecar rows (subject_id, time, prediction_time,
                embedding, optional study id column). Unknown names are ignored.
            prs: guarded PRS rows (subject_id, embedding) or None.
            eos: end each document with [EOS] (pretraining documents).

        Returns:
            The corpus, documents in `docs` order.
        """
        docs = (docs.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
                .with_row_index("doc").with_columns(pl.col("doc").cast(pl.Int64)))
        ev = events.lazy() if isinstance(events, pl.DataFrame) else events
        ev = ev.join(docs.lazy(), on=["subject_id", "prediction_time"], how="inner")
        ev = ev.select("doc", "time", "code", pl.col("numeric_value").cast(pl.Float32)).collect()
        prefix = self._prefix(ev, docs)
        timed = self._event_tokens(ev.filter(~pl.col("code").str.starts_with("GENDER/")
                                             & ~pl.col("code").str.starts_with("RACE/")
                                             & ~pl.col("code").str.starts_with("ETHNICITY/")
                                             & (pl.col("code") != "MEDS_BIRTH")))
        img_rows, image_mat, image_dims = self._images(images or {}, docs)
        body = pl.concat([timed, img_rows], how="vertical")
        # Structured events first at equal times, then studies; `maintain_order` keeps the
        # (time, code, value) order of events and the (modality, id) order of studies.
        body = body.sort(["doc", "time", "kind"], nulls_last=False, maintain_order=True)
        # An image row has one token, so exploding repeats its row index only onto that token.
        body = body.select("doc", "tok", "img").explode("tok", empty_as_null=True).drop_nulls("tok")
        parts = [prefix.with_columns(pl.lit(0, pl.Int8).alias("part")),
                 body.with_columns(pl.lit(1, pl.Int8).alias("part"))]
        if eos:
            parts.append(docs.select("doc", pl.lit(EOS).alias("tok"), pl.lit(None, pl.Int32).alias("img"),
                                     pl.lit(2, pl.Int8).alias("part")))
        allt = pl.concat([p.select("doc", "part", "tok", pl.col("img").cast(pl.Int32)) for p in parts])
        allt = allt.sort(["doc", "part"], maintain_order=True)
        allt = allt.join(self._vocab_frame(), on="tok", how="left", maintain_order="left")
        tokens = allt["id"].fill_null(UNK_ID).to_numpy().astype(np.int32)
        image_rows = allt["img"].fill_null(-1).to_numpy().astype(np.int32)
        counts = np.bincount(allt["doc"].to_numpy(), minlength=docs.height)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        prs_mat, has_prs = self._prs(prs, docs)
        return Corpus(tokens=tokens, offsets=offsets, image_rows=image_rows, images=image_mat,
                      prs=prs_mat, has_prs=has_prs, keys=docs.select("subject_id", "prediction_time"),
                      image_dims=image_dims)

    def _prefix(self, ev: pl.DataFrame, docs: pl.DataFrame) -> pl.DataFrame:
        """[BOS] sex race ethnicity age per document: rows doc, tok (PREFIX_LEN per document)."""
        static = ev.filter(pl.col("time").is_null()).sort("doc", "code")
        aggs = [pl.col("code").filter(pl.col("code").str.starts_with(p)).first().alias(p) for p in DEMOGRAPHIC_PREFIXES]
        demo = static.group_by("doc").agg(aggs)
        birth = ev.filter(pl.col("code") == "MEDS_BIRTH").group_by("doc").agg(pl.col("time").min().alias("birth"))
        first = (ev.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
                 .group_by("doc").agg(pl.col("time").min().alias("first")))
        d = (docs.select("doc").join(demo, on="doc", how="left").join(birth, on="doc", how="left")
             .join(first, on="doc", how="left").sort("doc"))
        age = (pl.col("first") - pl.col("birth")).dt.total_days() / 365.25
        cols = [pl.lit(BOS).alias("t0")] + [pl.col(p).fill_null(UNK).alias(f"t{i}")
                                            for i, p in enumerate(DEMOGRAPHIC_PREFIXES, start=1)]
        cols.append(_age_token(age).alias(f"t{PREFIX_LEN - 1}"))
        return (d.select("doc", pl.concat_list(cols).alias("tok")).explode("tok", empty_as_null=True)
                .with_columns(pl.lit(None, pl.Int32).alias("img")))

    def _event_tokens(self, ev: pl.DataFrame) -> pl.DataFrame:
        """Per event: doc, time, kind=0, tok (list: [time] code tokens [value], nulls dropped later), img=null."""
        ev = ev.sort(["doc", "time", "code", "numeric_value"], nulls_last=False)
        gap = (pl.col("time").diff().over("doc").dt.total_seconds() / 60.0)
        tok1, tok2, tok3 = _code_tokens(pl.col("code"), self.hierarchy)
        ev = ev.join(self.bins, on="code", how="left", maintain_order="left")
        v = pl.col("numeric_value")
        # bin = number of cut points <= value (numpy's searchsorted side="right"): 0..9
        bin_ = pl.sum_horizontal([(v >= pl.col(c)).cast(pl.Int8) for c in _bin_columns()])
        val_tok = (pl.when(v.is_not_null() & v.is_finite() & pl.col("e1").is_not_null())
                   .then(pl.lit("[Q") + bin_.cast(pl.String) + pl.lit("]")).otherwise(None))
        # Rare codes become [UNK] at vocabulary lookup; their value has no bins, so no value token.
        return ev.select("doc", "time", pl.lit(0, pl.Int8).alias("kind"),
                         pl.concat_list(_time_token(gap), tok1, tok2, tok3, val_tok).alias("tok"),
                         pl.lit(None, pl.Int32).alias("img"))

    def _images(self, images: dict, docs: pl.DataFrame):
        """Placeholder rows (doc, time, kind=1, tok=[placeholder], img=row) and the embedding matrix."""
        frames, mats, dims = [], [], []
        n_rows = 0
        for m in IMAGE_MODALITIES:
            if m not in images:
                continue
            lf = images[m].lazy() if isinstance(images[m], pl.DataFrame) else images[m]
            names = lf.collect_schema().names()
            idc = next((c for c in STUDY_ID_COLUMNS if c in names), None)
            keys = ["doc", "time"] + ([idc] if idc else [])
            g = lf.filter(pl.col("time").is_not_null()).collect()
            # Match rows to documents on key columns only and gather embeddings with numpy:
            # polars 1.44 panics on joins whose empty result carries a fixed-size-list column.
            df = (g.select("subject_id", "prediction_time", "time", *([idc] if idc else [])).with_row_index("_r")
                  .join(docs.select("doc", "subject_id", "prediction_time"), on=["subject_id", "prediction_time"],
                        how="inner").sort(keys + ["_r"]))
            emb = embedding_matrix(g["embedding"])[df["_r"].to_numpy()]
            dim = emb.shape[1]
            studies = df.select(keys).unique(maintain_order=True)  # df is sorted by keys
            if df.height:
                # mean over the rows of one study (slices, tiles): segment sums / segment sizes
                new = np.ones(df.height, bool)
                new[1:] = _changed(df.select(keys))
                starts = np.flatnonzero(new)
                emb = np.add.reduceat(emb, starts, axis=0) / np.diff(np.r_[starts, df.height])[:, None]
            frames.append(studies.select(
                "doc", "time", pl.lit(1, pl.Int8).alias("kind"),
                pl.concat_list(pl.lit(placeholder(m))).alias("tok"),
                (pl.int_range(pl.len(), dtype=pl.Int32) + n_rows).alias("img")))
            mats.append(emb.astype(np.float32))
            dims.append((m, dim))
            n_rows += len(emb)
        width = max((d for _, d in dims), default=0)
        mat = np.zeros((n_rows, width), np.float32)
        r = 0
        for e in mats:
            mat[r:r + len(e), :e.shape[1]] = e
            r += len(e)
        schema = {"doc": pl.Int64, "time": pl.Datetime("us"), "kind": pl.Int8, "tok": pl.List(pl.String),
                  "img": pl.Int32}
        rows = (pl.concat([f.cast(schema) for f in frames]) if frames else pl.DataFrame(schema=schema))
        return rows, mat, tuple(dims)

    @staticmethod
    def _prs(prs, docs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """PRS matrix [D, P] (zeros where a subject has none) and the has-PRS mask [D]."""
        if prs is None:
            return np.zeros((docs.height, 0), np.float32), np.zeros(docs.height, bool)
        lf = prs.lazy() if isinstance(prs, pl.DataFrame) else prs
        g = lf.select("subject_id", "embedding").collect()
        first = (g.select("subject_id").with_row_index("r").group_by("subject_id").agg(pl.col("r").min()))
        d = docs.select("doc", "subject_id").join(first, on="subject_id", how="left").sort("doc")
        emb = embedding_matrix(g["embedding"])
        has = d["r"].is_not_null().to_numpy()
        mat = np.zeros((docs.height, emb.shape[1]), np.float32)
        mat[has] = emb[d["r"].drop_nulls().to_numpy()]
        return mat, has


def _changed(keys: pl.DataFrame) -> np.ndarray:
    """bool [n-1]: row i+1 differs from row i in any key column (keys sorted)."""
    diff = np.zeros(keys.height - 1, bool)
    for c in keys.columns:
        col = keys[c]
        diff |= (col.slice(1) != col.slice(0, keys.height - 1)).fill_null(True).to_numpy()
    return diff


def embedding_matrix(col: pl.Series) -> np.ndarray:
    """A fixed-size-list / list embedding column -> float32 [n, d] (d = 0 for an empty column)."""
    if col.len() == 0:
        return np.zeros((0, col.dtype.size if isinstance(col.dtype, pl.Array) else 0), np.float32)
    if isinstance(col.dtype, pl.Array):
        return np.ascontiguousarray(col.to_numpy(), dtype=np.float32)
    return np.stack([np.asarray(v, np.float32) for v in col.to_list()])


# ------------------------------------------------------------------------------ guarded readers
def pretraining_documents(cohort, split: str) -> pl.DataFrame:
    """Documents of a split for pretraining / perplexity: each subject's whole record.

    Args:
        cohort: the Cohort.
        split: "train" (pretraining) or "held_out" (evaluation only).

    Returns:
        subject_id, prediction_time (= END_OF_TIME), sorted by subject.
    """
    return (cohort.splits.filter(pl.col("split") == split).select("subject_id").sort("subject_id")
            .with_columns(pl.lit(END_OF_TIME).cast(pl.Datetime("us")).alias("prediction_time")))


def guarded_inputs(cohort, docs: pl.DataFrame, modalities=IMAGE_MODALITIES, prs: str | None = "prs",
                   files: list[Path] | None = None):
    """Events, image sidecars and PRS for documents, through the leakage guard.

    Args:
        cohort: the Cohort.
        docs: subject_id, prediction_time.
        modalities: image sidecars to read (missing ones are skipped).
        prs: PRS sidecar name or None.
        files: read only these data shards (the shard-parallel corpus: `docs` are that shard's
            subjects, and sidecar rows are filtered to them before the guard's join).

    Returns:
        (events LazyFrame, {modality: LazyFrame}, prs LazyFrame | None).
    """
    have = set(cohort.modality_names())
    ev = visible_events(cohort.scan(EVENT_COLUMNS, files=files), docs)

    def side(name: str) -> pl.LazyFrame:
        lf = cohort.modality(name)
        if files is not None:  # one shard: read its subjects' rows only (pushed into the parquet scan)
            lf = lf.filter(pl.col("subject_id").is_in(docs["subject_id"].unique().implode()))
        return visible_modality(lf, docs)

    imgs = {m: side(m) for m in modalities if m in have}
    p = side(prs) if prs and prs in have else None
    return ev, imgs, p
