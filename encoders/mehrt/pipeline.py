"""The fit / predict object the runner uses for `mehrt` and `ehrt`.

    model = MEHRTPipeline(budget=Budget, seed=int, multimodal=True)   # `mehrt` (Stage 3 weights)
    MEHRTPipeline(..., stage="3joint")                                # `mehrt-joint` (Stage 3-Joint)
    MEHRTPipeline(..., multimodal=False)                              # `ehrt` (Stage 1)
    model.prepare(cohort)          # optional, before the cells: pretrain (or find cached) once
    model.fit(data)                # pretrain once per cohort (cached), encode, tune + fit the probe
    model.predict(data, "held_out")

fit():
  1. pretraining (`pretrain.run_curriculum`): the training split's records only, cached under
     cache_dir()/mehrt by (data fingerprint, tokenizer, config, stage, steps, settings), so `run`
     pretrains once per cohort and budget and every task reuses it;
  2. encoding: each sample's timeline up to its prediction time, read through the leakage guard
     (`TaskData.visible_events` / `visible_modality`), tokenized with the training-split
     tokenizer, cut to the most recent `encode_len` tokens (demographic prefix kept), and encoded
     by the frozen model (bf16 autocast where the hardware has native bf16) into patient
     representations: ``last`` (hidden state of the last token), ``mean`` (mean over the
     window's hidden states) and ``echo`` (the window repeated, mean over the second copy, which
     has seen the whole window; Springer et al. 2024). The MEHRT paper probes echo embeddings and
     the last token; ``mean`` is ours (free: the same pass). MEHRT and EHRT get the same three
     candidates at every budget (`settings_for`), so their comparison differs only in the inputs.
     ``mean+studies`` (``mean`` plus the hidden state at the most recent placeholder of each image
     modality) exists for MEHRT but only on request (`representations=`): EHRT has no
     placeholders, and offering it to one model only would confound MEHRT vs EHRT. One forward
     pass per window gives every representation (with echo it is the [x; x] pass: causal
     attention makes its first copy x's own states). Representations are cached per (checkpoint,
     input window, masked modalities, sample), not per task, so tasks sharing prediction times
     encode once, the test-time modality masking of the leave-one-modality-out attribution included;
  3. probing (`probe.Probe`): representation and regularisation chosen by 5-fold CV on train +
     tuning, then refit on both.

Budgets: MEHRT reads the runner's level name (LEVELS): smoke -> size "tiny", 60 steps; default ->
"small", 600; full -> "small", 5000. Stage 1 trains that many steps, Stages 2 / 3 / 3-Joint half,
half and as many (the paper's 10 / 5 / 5 / 10 epochs as a step ratio; see `pretrain.default_plan`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from benchmark.model_api import Budget, Prediction, TaskData
from benchmark.artifacts import cached_artifact
from encoders.mehrt.collate import collator, model_inputs, recent_starts
from encoders.mehrt.corpora import PRS_MODALITY, mehrt_cache
from encoders.mehrt.pretrain import default_plan, run_curriculum
from encoders.mehrt.trainer import peak_memory_mb
from encoders.mehrt.probe import Probe
from encoders.mehrt.settings import (DEFAULT_PRS_MODE, LEVELS, PIPELINE_VERSION, REPRESENTATIONS,  # noqa: F401 - re-exported
                                     STUDY_REPRESENTATION, Settings, settings_for)
from encoders.mehrt.tokenizer import EVENT_COLUMNS, IMAGE_MODALITIES, embedding_matrix

_MODELS: dict = {}  # in-process cache of loaded pretrained models: key -> (model, meta)


# ------------------------------------------------------------------------------ pretrained models
def load_pretrained(cohort, settings: Settings, log=None):
    """The pretrained model for the settings (trained on first use, then cached on disk and here).

    Args:
        cohort: the Cohort.
        settings: pipeline settings (size, steps, stage).
        log: progress callback.

    Returns:
        (model, meta) where meta["stages"] has per-stage perplexity, tokens/s, ... and
        meta["key"] identifies the checkpoint.
    """
    plan = default_plan(settings.size, settings.steps, compile=settings.compile, prs_mode=settings.prs_mode)
    k = (str(cohort.root), cohort.fingerprint(), repr(plan), settings.stage)
    if k not in _MODELS:
        model, meta = run_curriculum(cohort, plan, settings.stage, log=log)
        meta["key"] = meta["stages"][settings.stage]["key"]
        _MODELS.clear()  # hold one model at a time
        _MODELS[k] = (model, meta)
    return _MODELS[k]


# ------------------------------------------------------------------------------ encoding
def represent(model, collate, encode_len: int, representations=REPRESENTATIONS,
              encode_tokens: int = 16384) -> dict[str, np.ndarray]:
    """Patient representations of every document of a corpus.

    Args:
        model: a MEHRT in eval mode.
        collate: a collate.Collator over the corpus, in the model's variant.
        encode_len: window length (most recent tokens, prefix kept).
        representations: names among REPRESENTATIONS and STUDY_REPRESENTATION.
        encode_tokens: tokens per forward pass.

    Returns:
        name -> float32 [D, width] in document order; width = d_model, or d_model * (1 + M) for
        "mean+studies" (M image modalities).
    """

    device = next(model.parameters()).device
    corpus = collate.corpus
    full = corpus.lengths(collate.multimodal)
    lengths = np.minimum(full, encode_len)
    D, d = len(corpus), model.config.d_model
    M = len(model.config.image_dims)
    width = {r: d * (1 + M) if r == STUDY_REPRESENTATION else d for r in representations}
    out = {r: np.zeros((D, width[r]), np.float32) for r in representations}
    # One forward pass per batch for every representation. With echo it is the repeated window
    # [x; x]: under causal attention the first copy sees only x, so its hidden states are those of
    # x alone (last, mean and the study states read them), and the second copy gives echo. Before,
    # x was encoded once more on its own: a third of the encoding compute.
    echo = "echo" in out
    order = np.argsort(lengths, kind="stable")
    i = 0
    with torch.inference_mode(), encode_autocast(device):
        while i < D:
            # Documents of one window length only, as many as fit the token budget. Padding is not
            # neutral in floating point: the padded length changes how the attention and matmul
            # kernels block their sums, so a window padded to a longer neighbour's length comes out
            # slightly different (~1e-2 in bf16). With one length per batch (no padding) a window's
            # representation depends on its own tokens only, not on which other windows (tasks,
            # grids) were encoded with it; the batch size does not change the numbers
            # (tests/test_mehrt_pipeline.py).
            j = i + 1
            while (j < D and lengths[order[j]] == lengths[order[i]]
                   and (j + 1 - i) * lengths[order[j]] * (2 if echo else 1) <= encode_tokens):
                j += 1
            docs = order[i:j]
            starts = recent_starts(full, docs, encode_len)
            n = torch.from_numpy(lengths[docs])
            rows = torch.arange(len(docs))
            batch = collate(docs, starts, encode_len, repeat=echo)
            h = model.encode(**_enc_inputs(model_inputs(batch, device))).float().cpu()  # [B, T or 2T, d]
            pos = torch.arange(h.shape[1])[None, :]
            real = pos < n[:, None]  # the (first copy of the) window
            mean = (h * real[..., None]).sum(1) / n[:, None]  # [B, d]
            if "last" in out:
                out["last"][docs] = h[rows, n - 1].numpy()
            if "mean" in out:
                out["mean"][docs] = mean.numpy()
            if STUDY_REPRESENTATION in out:
                parts = [mean]
                for m in range(1, M + 1):
                    # hidden state at the most recent placeholder of modality m in the window (0 if none)
                    at = ((batch["image_index"] == m) & real) if "image_index" in batch else torch.zeros_like(real)
                    last = torch.where(at, pos, -1).max(1).values  # [B]
                    parts.append(h[rows, last.clamp(min=0)] * (last >= 0)[:, None])
                out[STUDY_REPRESENTATION][docs] = torch.cat(parts, 1).numpy()
            if echo:
                second = (pos >= n[:, None]) & (pos < 2 * n[:, None])
                out["echo"][docs] = ((h * second[..., None]).sum(1) / n[:, None]).numpy()
            i = j
    return out


def bf16_supported(device) -> bool:
    """Whether encoding should run under bfloat16 autocast: CUDA, or a CPU with native bf16 math.

    On a CPU with AVX512-BF16 / AMX the frozen model encodes about 1.8x faster in bf16 (measured on
    this project's 2-core AMD EPYC); without those instructions bf16 is emulated and slower.
    """
    if getattr(device, "type", str(device)) == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def encode_autocast(device):
    """The autocast context encoding runs under (bf16 where supported, else a no-op)."""
    dev = getattr(device, "type", str(device))
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16_supported(device))


def _enc_inputs(inputs: dict) -> dict:
    inputs.pop("labels", None)
    return inputs


class RepresentationCache:
    """Representations per (subject_id, prediction_time) for one checkpoint + encode settings.

    Parquet chunks in one folder; tasks whose samples share prediction times (all oncology tasks
    index on the first treatment) encode each sample once. Matching is done on key columns only
    and the vectors are gathered with numpy (polars 1.44 panics on some joins of array columns).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def lookup(self, samples: pl.DataFrame, names: tuple[str, ...]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
        """Cached keys among the samples (subject_id, prediction_time) and their vectors per name."""
        files = sorted(self.folder.glob("chunk-*.parquet"))
        empty = pl.DataFrame(schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")})
        if not files:
            return empty, {}
        cached = pl.concat([pl.read_parquet(f, columns=["subject_id", "prediction_time", *names]) for f in files])
        hit = (cached.select("subject_id", "prediction_time").with_row_index("_r")
               .unique(["subject_id", "prediction_time"], keep="first", maintain_order=True)
               .join(samples.select("subject_id", "prediction_time").unique(), on=["subject_id", "prediction_time"],
                     how="semi", maintain_order="left"))
        r = hit["_r"].to_numpy()
        return hit.drop("_r"), {n: embedding_matrix(cached[n])[r] for n in names}

    def add(self, keys: pl.DataFrame, vectors: dict[str, np.ndarray]) -> None:
        """Store new rows (atomic chunk write)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        frame = keys.select("subject_id", "prediction_time").with_columns([pl.Series(n, v) for n, v in vectors.items()])
        h = hashlib.sha256(frame.select("subject_id", "prediction_time").hash_rows().to_numpy().tobytes()).hexdigest()[:16]
        path = self.folder / f"chunk-{h}.parquet"
        # Concurrent runs encoding the same samples store the chunk once; a corrupt chunk is rewritten.
        cached_artifact(path, lambda: frame, read=pl.read_parquet_schema,
                        write=lambda tmp, f: f.write_parquet(tmp), suffix=".parquet")


def encode_split(model, meta: dict, data: TaskData, split, settings: Settings) -> dict[str, np.ndarray]:
    """Representations of a split's samples (in label order), encoding only uncached samples.

    Args:
        model: the pretrained model.
        meta: its meta (key, tokenizer).
        data: the task.
        split: a split name or a tuple of them.
        settings: pipeline settings.

    Returns:
        name -> float32 [n, d_model], rows aligned with data.samples(split).
    """
    return encode_samples(model, meta, data, split, data.samples(split), settings)


def encode_samples(model, meta: dict, data: TaskData, split, samples: pl.DataFrame, settings: Settings,
                   without: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Representations of some of a split's samples, encoding only those not in the cache.

    The cache is keyed by sample (subject_id, prediction_time), not by task: every task of the same
    checkpoint, encoding settings and input window reads the vectors another task stored (all
    oncology tasks index on the first treatment, so the second one encodes nothing).

    Args:
        model: the pretrained model.
        meta: its meta (key, tokenizer).
        data: the task.
        split: the split (or tuple of splits) the samples belong to.
        samples: subject_id, prediction_time rows (duplicates allowed).
        settings: pipeline settings.
        without: modalities treated as absent for every one of these samples (test-time masking,
            benchmark.ablation); each set has a cache folder of its own.

    Returns:
        name -> float32 [n, width], rows aligned with `samples`.
    """
    names = tuple(settings.representations)
    cache = RepresentationCache(_rep_folder(meta, settings, model, data.task, without))
    samples = samples.select("subject_id", "prediction_time")
    keys = samples.unique(maintain_order=True)
    have_keys, have = cache.lookup(keys, names)
    missing = keys.join(have_keys, on=["subject_id", "prediction_time"], how="anti", maintain_order="left")
    if missing.height:
        tok = meta["tokenizer"]
        drop = {m: missing for m in without} or None
        corpus = task_corpus(model, tok, data, split, missing, settings.multimodal, drop=drop)
        reps = represent(model, collator(corpus, tok, model.config), settings.encode_len, names,
                         settings.encode_tokens)
        cache.add(corpus.keys, reps)
        have_keys = pl.concat([have_keys, corpus.keys.select("subject_id", "prediction_time")])
        have = {n: np.concatenate([have[n], reps[n]]) if n in have else reps[n] for n in names}
    row = (samples.join(have_keys.with_row_index("_i"), on=["subject_id", "prediction_time"], how="left",
                        maintain_order="left")["_i"].to_numpy())
    return {n: np.asarray(have[n][row], dtype=np.float32) for n in names}


def task_corpus(model, tokenizer, data: TaskData, split, samples: pl.DataFrame, multimodal: bool,
                drop: dict[str, pl.DataFrame] | None = None):
    """Tokenize task samples' timelines up to their prediction times, through the leakage guard.

    Args:
        model: the model (its config says which image modalities and whether PRS are inputs).
        tokenizer: the training-split tokenizer.
        data: the task.
        split: the split (or tuple of splits) the samples belong to.
        samples: subject_id, prediction_time to tokenize (a subset of data.samples(split)).
        multimodal: read image sidecars and PRS too.
        drop: modality -> samples (subject_id, prediction_time) that get none of its studies (test-time
            modality masking, benchmark.ablation).

    Returns:
        A Corpus, documents in `samples` order, image layout matching the model.
    """

    config = model.config
    events = data.visible_events(split, columns=EVENT_COLUMNS)  # the leakage guard
    images, prs = {}, None
    if multimodal:
        present = set(data.cohort.modality_names())
        wanted = [m for m, _ in config.image_dims if m in present and m in IMAGE_MODALITIES]
        images = {m: _without(data.visible_modality(m, split), (drop or {}).get(m)) for m in wanted}
        if config.prs_mode and PRS_MODALITY in present:
            prs = _without(data.visible_modality(PRS_MODALITY, split), (drop or {}).get(PRS_MODALITY))
    corpus = tokenizer.tokenize(events, samples, images, prs, eos=False)
    return _align_image_dims(corpus, config.image_dims, config.prs_dim)


def _without(rows: pl.LazyFrame, keys: pl.DataFrame | None) -> pl.LazyFrame:
    """Guarded sidecar rows minus those of the given samples."""
    if keys is None or keys.height == 0:
        return rows
    # a filter rather than an anti-join: polars 1.44 panics joining frames with array columns
    drop = keys.select(pl.struct("subject_id", "prediction_time").alias("_k")).to_series().implode()
    return rows.filter(~pl.struct("subject_id", "prediction_time").is_in(drop))


def _align_image_dims(corpus, image_dims, prs_dim: int | None = None):
    """Give a task corpus the model's image and PRS layout (a modality absent from these samples keeps
    its width: e.g. every PRS masked, read from a list-typed sidecar that gives no width when empty)."""
    width = max((d for _, d in image_dims), default=0)
    images = corpus.images
    if images.shape[1] < width:
        images = np.pad(images, ((0, 0), (0, width - images.shape[1])))
    prs = corpus.prs
    if prs_dim and prs.shape[1] < prs_dim and not corpus.has_prs.any():
        prs = np.zeros((prs.shape[0], prs_dim), np.float32)  # nobody has one: the zero vector
    return replace(corpus, images=images, image_dims=tuple(image_dims), prs=prs)


def _rep_folder(meta: dict, settings: Settings, model, task, without: tuple[str, ...] = ()) -> Path:
    """Cache folder of one checkpoint's representations under one encoding setup (incl. precision),
    the task's input window (a window changes what a (subject, prediction time) encodes to) and the
    masked modalities (`without`: none for the ordinary representations)."""
    precision = "bf16" if bf16_supported(next(model.parameters()).device) else "fp32"
    masked = f"-without-{'+'.join(sorted(set(without)))}" if without else ""
    return (mehrt_cache() / "reps"
            / f"{meta['key']}-{settings.encode_hash()}-{precision}{task.input_window_tag()}{masked}")


# ------------------------------------------------------------------------------ the model object
class MEHRTPipeline:
    """Runner model: pretrained MEHRT/EHRT encoder + linear probe.

    Args:
        budget: the runner's Budget.
        seed: the cell's seed (probe CV folds and candidates; pretraining uses its own fixed
            seed so every task and seed reuses one checkpoint).
        multimodal: True for `mehrt` (images + PRS, Stage 3), False for `ehrt` (Stage 1).
        stage: override the encoding stage ("3joint" for `mehrt-joint`).
        size: a MEHRT size name overriding the budget level's (registry entries `mehrt-<size>`).
        steps: Stage-1 pretraining steps overriding the budget level's (tests).
        prs_mode: the PRS pathway (None = DEFAULT_PRS_MODE; registry entries `mehrt-prs-*`).
        representations: the probe's candidates overriding REPRESENTATIONS (e.g. to add
            STUDY_REPRESENTATION for MEHRT; not comparable with EHRT then).
        compile: torch.compile pretraining on CUDA.
    """

    def __init__(self, budget: Budget, seed: int = 0, multimodal: bool = True, stage: str | None = None,
                 size: str | None = None, steps: int | None = None, prs_mode: str | None = None,
                 representations: tuple[str, ...] | None = None, compile: bool = False):
        self.budget, self.compile = budget, compile
        self.size, self.steps, self.prs_mode = size, steps, prs_mode
        self.representations = representations
        self.seed = seed
        self.multimodal = multimodal
        self.stage = stage

    def settings(self) -> Settings:
        """The pipeline settings of this budget, stage and size/steps overrides (see settings_for)."""
        return settings_for(self.budget, self.multimodal, self.stage, size=self.size, steps=self.steps,
                            prs_mode=self.prs_mode, representations=self.representations, compile=self.compile)

    def prepare(self, cohort) -> str:
        """The label-free, task-independent work of every cell, done once before them: the
        pretraining curriculum this model encodes with (Stage 1 for `ehrt`; 1, 2, 3 for `mehrt`;
        1, 3-Joint for `mehrt-joint`), into the on-disk cache under its file locks. Idempotent and
        safe in another process than the cells (they find the stages cached; in this process the
        loaded model is kept too).

        Args:
            cohort: the Cohort whose training split is pretrained on.

        Returns:
            One line for the console, e.g. "pretrained stages 1, 2, 3 (small, 600 steps) in 274 s" or
            "pretraining cached (stages 1, 2, 3, small, 600 steps)".
        """
        settings = self.settings()
        t0 = time.time()
        _, meta = load_pretrained(cohort, settings)
        stages = ", ".join(meta["stages"])
        what = f"{settings.size}, {settings.steps} steps"
        # a stage trained now has its meta.json (written last, atomically) from after t0
        fresh = [s for s, m in meta["stages"].items()
                 if (mehrt_cache() / "ckpt" / m["key"] / "meta.json").stat().st_mtime >= t0]
        if not fresh:
            return f"pretraining cached (stages {stages}, {what})"
        return f"pretrained stages {', '.join(fresh)} ({what}) in {time.time() - t0:.0f} s"

    def fit(self, data: TaskData) -> MEHRTPipeline:
        """Pretrain (or load), encode train + tuning samples, tune and fit the probe.

        Args:
            data: the task (train and tuning labels are used).

        Returns:
            self.
        """

        self._reps_memo = None  # representations of the previous fit's model
        self.settings_ = self.settings()
        t0 = time.perf_counter()
        self.model_, self.meta_ = load_pretrained(data.cohort, self.settings_)
        t1 = time.perf_counter()
        fit_splits = ("train", "tuning")
        reps = encode_split(self.model_, self.meta_, data, fit_splits, self.settings_)
        t2 = time.perf_counter()
        y = data.y(fit_splits)
        groups = data.samples(fit_splits)["subject_id"].to_numpy()
        self.probe_ = Probe(data.task.kind, n_trials=self.settings_.probe_trials,
                            n_folds=self.settings_.probe_folds, seed=self.seed).fit(reps, y, groups)
        t3 = time.perf_counter()
        if data.task.kind_obj.time_to_event:
            ev = y[y[:, 1] == 1, 0]
            times = np.unique(np.quantile(ev, [0.25, 0.5, 0.75])) if len(ev) >= 4 else np.zeros(0)
            self.surv_times_ = times if len(times) >= 2 else None
        self.timing_ = {"pretrain_or_load_s": t1 - t0, "encode_fit_s": t2 - t1, "probe_s": t3 - t2}
        self.peak_mb_ = peak_memory_mb(next(self.model_.parameters()).device)
        return self

    def represent(self, data: TaskData, split) -> np.ndarray:
        """The frozen patient vector of each sample (benchmark.model_api.Representer): the hidden
        state of the last token of its timeline window (CLMBR's patient representation, the EHR
        input of the CT + EHR fusion paper), from the budget's pretrained checkpoint (training split,
        no labels; cached) and the representation cache. No probe and no label is involved.

        Args:
            data: the task.
            split: a split name or a tuple of them.

        Returns:
            float32 [n, d_model], rows aligned with data.samples(split).
        """
        settings = replace(self.settings(), representations=("last",))  # one pass: no echo copy
        model, meta = load_pretrained(data.cohort, settings)
        return encode_split(model, meta, data, split, settings)["last"]

    def predict(self, data: TaskData, split: str) -> Prediction:
        """Probe scores for a split's samples (in label order), with provenance in info.

        Args:
            data: the task.
            split: "held_out" or "tuning".

        Returns:
            Prediction (survival: log relative hazard as score, plus Cox survival curves).
        """
        t0 = time.perf_counter()
        return self._predict_reps(data, self._split_reps(data, split), t0)

    def _split_reps(self, data: TaskData, split: str) -> dict[str, np.ndarray]:
        """encode_split, remembered for the last (data, split): an ablation predicts the same split
        many times with different masks, and the cache lookup reads every chunk file."""
        key = (id(data), id(data.labels), split)
        memo = getattr(self, "_reps_memo", None)
        if memo is None or memo[0] != key:
            self._reps_memo = memo = (key, encode_split(self.model_, self.meta_, data, split, self.settings_))
        return memo[1]

    # ---------------------------------------------------------------- test-time modality masking
    def maskable_modalities(self) -> list[str]:
        """Image modalities (placeholder tokens) and PRS (cross-attention or prefix) the model reads; none for EHRT."""
        if not self.settings_.multimodal:
            return []
        cfg = self.model_.config
        return [m for m, _ in cfg.image_dims] + ([PRS_MODALITY] if cfg.prs_mode else [])

    def present_rows(self, data: TaskData, split: str, modality: str) -> np.ndarray:
        """Rows of a split with at least one visible study of the modality."""
        samples = data.samples(split)
        if modality not in data.cohort.modality_names():
            return np.zeros(samples.height, dtype=bool)
        have = data.visible_modality(modality, split).select("subject_id", "prediction_time").unique().collect()
        return samples.join(have.with_columns(pl.lit(True).alias("_p")), on=["subject_id", "prediction_time"],
                            how="left", maintain_order="left")["_p"].fill_null(False).to_numpy()

    def predict_masked(self, data: TaskData, split: str, drop: dict[str, np.ndarray]) -> Prediction:
        """Predictions where drop[m] (bool over the split's rows) marks samples re-encoded without any
        study of modality m (no placeholder tokens; for PRS a zero PRS vector, as a subject without a
        PRS gets, read by the cross-attention or prefix pathway), as if they had none. The masked
        representations are cached per (sample, set of masked modalities) like the others, so the
        leave-one-modality-out of the next task with the same prediction times encodes nothing."""

        t0 = time.perf_counter()
        reps = self._split_reps(data, split)
        samples = data.samples(split)
        # only samples that have a study of m change (the others' tokens are identical): re-encode those
        rows = {m: np.asarray(r, dtype=bool) & self.present_rows(data, split, m) for m, r in sorted(drop.items())}
        # each row's set of masked modalities (usually one), one cache folder per set
        sets = ["+".join(m for m in rows if rows[m][i]) for i in range(samples.height)] if rows else []
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(sets):
            if key:
                groups.setdefault(key, []).append(i)
        if groups:
            reps = {n: v.copy() for n, v in reps.items()}
        for key, idx in groups.items():
            at = np.asarray(idx)
            new = encode_samples(self.model_, self.meta_, data, split, samples[at], self.settings_,
                                 without=tuple(key.split("+")))
            for n in reps:
                reps[n][at] = new[n]
        return self._predict_reps(data, reps, t0)

    def _predict_reps(self, data: TaskData, reps: dict[str, np.ndarray], t0: float) -> Prediction:
        score = self.probe_.predict(reps)
        pred = Prediction(score=np.asarray(score, dtype=np.float64))
        if data.task.kind_obj.time_to_event and self.surv_times_ is not None:
            pred.surv_times = self.surv_times_
            pred.surv_prob = self.probe_.survival_curves(reps, self.surv_times_)
        pred.info = self._info(time.perf_counter() - t0)
        return pred

    def _info(self, predict_s: float) -> dict:
        s = self.settings_
        stages = self.meta_["stages"]
        final = stages[s.stage]
        probe = self.probe_.info()
        return {
            **probe,
            "hyperparameters": {"representation": probe["representation"], "C": probe["C"], "stage": s.stage,
                                "size": s.size, "encode_len": s.encode_len, "pretrain_steps_stage1": s.steps,
                                "representation_candidates": list(s.representations)},
            "cv_score": probe["cv_best"], "explanations": None,
            "stage": {"1": "1 (EHRT)", "3": "3 (MEHRT)", "3joint": "3-Joint", "2": "2"}.get(s.stage, s.stage),
            "size": s.size, "n_parameters": final["n_parameters"],
            "tokens_per_s": round(final["tokens_per_s"], 1),
            "held_out_perplexity": round(final["held_out_perplexity"], 3),
            # per stage: every stage's perplexity has the same held-out windows and structured target
            # tokens (perplexity_tokens), EHRT's Stage 1 included, so the values compare directly
            "pretraining": {k: {"steps": v["train_config"]["steps"], "held_out_perplexity": round(v["held_out_perplexity"], 3),
                                "perplexity_tokens": v.get("perplexity_tokens"), "documents": v.get("n_stage_documents"),
                                "size": s.size, "n_parameters": v["n_parameters"],
                                "tokens_per_s": round(v["tokens_per_s"], 1), "train_seconds": round(v["train_seconds"], 1),
                                "tokens": v.get("tokens")}
                            for k, v in stages.items()},
            "pretraining_data": "training-split subjects' whole records (tuning and held-out never used)",
            "encode_len": s.encode_len, "peak_memory_mb": round(self.peak_mb_, 1),
            "device": str(next(self.model_.parameters()).device),
            "modalities_used": (["structured", *[m for m, _ in self.model_.config.image_dims]]
                                + (["prs"] if self.model_.config.prs_mode else [])) if s.multimodal else ["structured"],
            "timing_s": {**{k: round(v, 2) for k, v in self.timing_.items()}, "predict_s": round(predict_s, 2)},
            "settings": asdict(s),
        }
