"""Zero-shot binary prediction from generated trajectories: `ehrt-zeroshot-*` and `mehrt-zeroshot-*`.

    model = ZeroShotPipeline(budget, seed, multimodal=False, estimator="path")   # or "freq"
    model.fit(data)                     # the task's outcome in token terms (or a refusal), the checkpoint
    model.predict(data, "held_out")     # N trajectories per sample, mean of the chosen estimator

No probe and no label: the pretrained model (the same cached checkpoint `ehrt` / `mehrt` probe)
continues each sample's timeline, cut at the prediction time by the leakage guard
(`TaskData.visible_events` / `visible_modality`, the task's input window applied), and the
task's own outcome predicate and window label each path (`encoders.mehrt.generate`). The
Genomics paper (Amar et al. 2025, 2.4 and 3.2.3): N = 10 paths, K tokens, the frequency of paths
with the outcome ("freq") or the mean path-computed probability ("path", the paper's default).

The outcome in token terms. The task's label outcome goes through the task's own predicates
(`any_of_predicates` unions, task-local code `rule`s) to the dataset's predicate map; every code of
the cohort that the resulting code rule matches is mapped to its first tokenizer token (the code
itself, or its ICD category token). Refused by name (`ZeroShotNotApplicable`):
  * a task kind other than binary, or a label that is not "outcome within a window" (duration
    thresholds, `end_at` windows, a window that starts before the prediction time);
  * an outcome that depends on a measured value (value bounds, KDIGO AKI, neutropenic fever):
    generated values are only quantile-bin tokens;
  * an outcome none of whose codes has a token (all rarer than the tokenizer's min_subjects);
  * an outcome token that also stands for a code outside the predicate (an ICD category shared
    with codes the predicate does not match): counting it would label other codes as the outcome.

Prompt and horizon: the prompt is the demographic prefix plus the most recent tokens, so that
prompt + K fits the pretraining window (`Settings.encode_len`, 256 tokens): K = 128 new tokens
after a 128-token prompt. The paper instead drops samples with a shorter history; we keep every
sample (the runner scores every labeled sample) and truncate history, as the probe does.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.kinds import BINARY, kind_of
from benchmark.model_api import Budget, NotApplicable, Prediction, TaskData
from benchmark.predicates import BUILTIN_PREDICATES, CodeRule, DatasetRule, RuleUnion
from encoders.mehrt.collate import collator, recent_starts
from encoders.mehrt.generate import Sampling, Target, sample_paths
from encoders.mehrt.pipeline import load_pretrained, settings_for, task_corpus
from encoders.mehrt.tokenizer import (BOS_ID, EOS_ID, IMAGE_MODALITIES, PAD_ID, TIME_BUCKETS, Tokenizer,
                                      _code_tokens, placeholder)

ESTIMATORS = ("path", "freq")
N_PATHS = 10                 # the Genomics paper's N
NEW_TOKENS = 128             # K; prompt = encode_len - K tokens
ROWS_PER_BATCH = 2048        # prompts x N paths decoded together
_PATHS: dict = {}            # last sampled paths, shared by the -path and -freq specs of one run


class ZeroShotNotApplicable(NotApplicable, UserError):
    """The task cannot be answered from generated tokens; the message says which rule refuses it."""


# ------------------------------------------------------------------------------ the task in token terms
def label_window_minutes(task) -> tuple[float, float]:
    """The label window (start, end] in minutes after the prediction time, or a refusal.

    Args:
        task: a TaskSpec.

    Returns:
        (start_min, end_min); end may be inf.
    """
    lab = task.label
    why = None
    if kind_of(task.kind) is not BINARY:
        why = f"it is a {task.kind} task (zero-shot trajectories answer binary tasks only)"
    elif lab.duration_to is not None or lab.window is None or lab.outcome is None:
        why = "its label is not 'outcome within a window' (a duration threshold)"
    elif lab.end_at is not None:
        why = f"its label window closes at the first {lab.end_at!r} event (end_at), not at a fixed horizon"
    elif lab.window.seconds()[0] < 0:
        why = f"its label window starts before the prediction time ({lab.window.start})"
    if why:
        raise ZeroShotNotApplicable(f"zero-shot refuses task {task.name}: {why}", field="label",
                                    fix="run a probe model (ehrt, mehrt) on this task")
    start, end = lab.window.seconds()
    return start / 60.0, end / 60.0


def outcome_rule(task, dataset_rules: dict[str, DatasetRule]) -> DatasetRule:
    """The label outcome as one code rule (unions flattened), or a refusal naming the predicate.

    Args:
        task: a TaskSpec with a binary window label.
        dataset_rules: the cohort's predicate map (`Cohort.predicate_map()`).

    Returns:
        A CodeRule or RuleUnion without value bounds.
    """

    def refuse(name: str, why: str) -> ZeroShotNotApplicable:
        return ZeroShotNotApplicable(f"zero-shot refuses task {task.name}: outcome predicate {name!r} {why}",
                                     field="label.outcome", fix="run a probe model (ehrt, mehrt) on this task")

    def rules_of(name: str) -> list[CodeRule]:
        if name in task.predicates:
            r = task.predicates[name]
            if r.any_of_predicates is not None:
                return [c for n in r.any_of_predicates for c in rules_of(n)]
            if r.rule is not None:
                return rules_of_rule(name, r.rule)
            raise refuse(name, "is derived from measured values (value bounds or a lab rule); generated values "
                               "are quantile-bin tokens only")
        if name in BUILTIN_PREDICATES:
            raise refuse(name, "is a built-in record predicate, not a code")
        if name not in dataset_rules:
            raise refuse(name, "is not in the dataset's predicate map")
        return rules_of_rule(name, dataset_rules[name])

    def rules_of_rule(name: str, rule) -> list[CodeRule]:
        members = list(rule.rules) if isinstance(rule, RuleUnion) else [rule]
        for m in members:
            if m.value_min is not None or m.value_max is not None or m.value_from_text:
                raise refuse(name, "depends on a measured value; generated values are quantile-bin tokens only")
        return members

    members = rules_of(task.label.outcome)
    return members[0] if len(members) == 1 else RuleUnion(rules=tuple(members))


def outcome_tokens(task, rule: DatasetRule, codes: list[str], tokenizer: Tokenizer) -> dict[str, list[str]]:
    """Outcome token -> the cohort codes it stands for (all matching the rule), or a refusal.

    Args:
        task: the TaskSpec (messages).
        rule: the outcome's code rule.
        codes: the cohort's distinct codes.
        tokenizer: the checkpoint's tokenizer.

    Returns:
        token string -> codes, for tokens in the vocabulary.
    """
    tok1 = _code_tokens(pl.col("code"), tokenizer.hierarchy)[0]
    frame = pl.DataFrame({"code": codes}, schema={"code": pl.String}).with_columns(
        rule.code_expr().fill_null(False).alias("match"), tok1.alias("tok"))
    vocab = set(tokenizer.vocab)
    matched = frame.filter(pl.col("match") & pl.col("tok").is_in(list(vocab)))
    fix = "run a probe model (ehrt, mehrt) on this task"
    if matched.height == 0:
        n = frame["match"].sum()
        raise ZeroShotNotApplicable(
            f"zero-shot refuses task {task.name}: outcome {task.label.outcome!r} matches {n} code(s) of the cohort, "
            f"none of which the tokenizer can emit (rarer than its min_subjects={tokenizer.min_subjects}, or absent)",
            field="label.outcome", fix=fix)
    toks = matched["tok"].unique().to_list()
    shared = frame.filter(pl.col("tok").is_in(toks) & ~pl.col("match"))
    if shared.height:
        t, c = shared["tok"][0], shared["code"][0]
        raise ZeroShotNotApplicable(
            f"zero-shot refuses task {task.name}: outcome token {t!r} also stands for code {c!r}, which outcome "
            f"{task.label.outcome!r} does not match (the tokenizer keeps only the category of this code family)",
            field="label.outcome", fix=fix)
    return {t: sorted(g["code"].to_list()) for (t,), g in matched.group_by("tok", maintain_order=True)}


def step_minutes(tokenizer: Tokenizer) -> np.ndarray:
    """Minutes each token moves the clock: a time-interval token its bucket's lower bound, others 0."""
    out = np.zeros(tokenizer.vocab_size, np.float64)
    for lo, tok in TIME_BUCKETS:
        if tok in tokenizer.vocab:
            out[tokenizer.vocab.index(tok)] = lo
    return out


def task_target(task, dataset_rules, codes: list[str], tokenizer: Tokenizer) -> tuple[Target, dict]:
    """The sampler's Target for a task (refusals as above) and what the info records of it."""
    start, end = label_window_minutes(task)
    tokens = outcome_tokens(task, outcome_rule(task, dataset_rules), codes, tokenizer)
    banned = (PAD_ID, BOS_ID, *(tokenizer.token_id(placeholder(m)) for m in IMAGE_MODALITIES
                                if placeholder(m) in tokenizer.vocab))
    target = Target(outcome_ids=tuple(tokenizer.vocab.index(t) for t in tokens), step_minutes=step_minutes(tokenizer),
                    start_min=start, end_min=end, stop_ids=(EOS_ID,), banned_ids=banned)
    return target, {"outcome_tokens": tokens, "window_minutes": [start, end],
                    "clock": "each time token adds its bucket's lower bound"}


# ------------------------------------------------------------------------------ the model object
class ZeroShotPipeline:
    """Runner model: pretrained MEHRT / EHRT, N sampled trajectories per sample, no probe.

    Args:
        budget: the runner's Budget (its level picks the checkpoint, as for `ehrt` / `mehrt`).
        seed: the cell's seed (the trajectories' seed).
        multimodal: MEHRT (images + PRS, Stage 3) or EHRT (Stage 1).
        estimator: "path" (path-computed probability) or "freq" (fraction of paths with the outcome).
        sampling: N, K, temperature, top-p (seed = the cell's seed unless given).
        size, steps: checkpoint overrides (tests).
    """

    def __init__(self, budget: Budget, seed: int = 0, multimodal: bool = False, estimator: str = "path",
                 sampling: Sampling | None = None, size: str | None = None, steps: int | None = None):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
        self.budget, self.seed, self.multimodal, self.estimator = budget, seed, multimodal, estimator
        self.sampling = sampling or Sampling(n_paths=N_PATHS, max_new_tokens=NEW_TOKENS, seed=seed)
        self.size, self.steps = size, steps

    def prepare(self, cohort) -> str:
        """The checkpoint the trajectories are sampled from, pretrained (or found cached) once before
        the cells (the runner's prepare step); label-free and task-independent.

        Args:
            cohort: the Cohort whose training split is pretrained on.

        Returns:
            One line for the console.
        """
        settings = settings_for(self.budget, self.multimodal, size=self.size, steps=self.steps)
        t0 = time.perf_counter()
        load_pretrained(cohort, settings)
        return f"checkpoint ready ({settings.size}, {settings.steps} steps) in {time.perf_counter() - t0:.0f} s"

    def fit(self, data: TaskData) -> ZeroShotPipeline:
        """Refuse a task the tokens cannot answer (before pretraining), then load the checkpoint.

        Args:
            data: the task (no label is read).

        Returns:
            self.
        """
        label_window_minutes(data.task)
        rules = data.cohort.predicate_map()
        outcome_rule(data.task, rules)
        t0 = time.perf_counter()
        self.settings_ = settings_for(self.budget, self.multimodal, size=self.size, steps=self.steps)
        self.model_, self.meta_ = load_pretrained(data.cohort, self.settings_)
        self.model_.eval()
        codes = data.cohort.scan(("code",)).select(pl.col("code").unique()).collect()["code"].to_list()
        self.target_, self.target_info_ = task_target(data.task, rules, codes, self.meta_["tokenizer"])
        self.load_s_ = time.perf_counter() - t0
        return self

    def _paths(self, data: TaskData, split: str) -> dict:
        """Both estimators per sample of a split (sampled once per checkpoint, task, split and sampling)."""
        key = (self.meta_["key"], data.task.name, data.task.input_window_tag(), split, self.sampling,
               data.labels["subject_id"].to_numpy().tobytes(), data.samples(split).height)
        if key in _PATHS:
            return _PATHS[key]
        t0 = time.perf_counter()
        model, tok, s = self.model_, self.meta_["tokenizer"], self.sampling
        corpus = task_corpus(model, tok, data, split, data.samples(split), self.settings_.multimodal)
        coll = collator(corpus, tok, model.config)
        prompt_len = self.settings_.encode_len - s.max_new_tokens
        lengths = corpus.lengths(coll.multimodal)
        per = max(1, ROWS_PER_BATCH // s.n_paths)
        hit, path, stop = [], [], []
        for c, a in enumerate(range(0, len(corpus), per)):
            docs = np.arange(a, min(a + per, len(corpus)))
            batch = coll(docs, recent_starts(lengths, docs, prompt_len), prompt_len)
            p = sample_paths(model, batch, self.target_, s, chunk=c)
            hit.append(p.hit)
            path.append(p.path_prob)
            stop.append(p.stop)
        hit, path, stop = np.concatenate(hit), np.concatenate(path), np.concatenate(stop)
        out = {"freq": hit.mean(1), "path": path.mean(1), "sample_s": time.perf_counter() - t0,
               "stops": {k: round(float((stop == v).mean()), 4) for k, v in
                         (("truncated_at_K", 0), ("past_window_end", 1), ("eos", 2))}}
        while len(_PATHS) >= 4:  # a few splits' paths: the -path and -freq cells of a run read them in turn
            _PATHS.pop(next(iter(_PATHS)))
        _PATHS[key] = out
        return out

    def predict(self, data: TaskData, split: str) -> Prediction:
        """The chosen estimator's mean over N paths per sample (both estimators in info).

        Args:
            data: the task.
            split: "held_out" or "tuning".

        Returns:
            Prediction with P(outcome in the window) as score.
        """
        t0 = time.perf_counter()
        got = self._paths(data, split)
        score = np.asarray(got[self.estimator], dtype=np.float64)
        s = self.settings_
        final = self.meta_["stages"][s.stage]
        pred = Prediction(score=score)
        pred.info = {
            "estimator": self.estimator,
            "hyperparameters": {"estimator": self.estimator, **self.sampling.to_dict(), "stage": s.stage,
                                "size": s.size, "pretrain_steps_stage1": s.steps,
                                "prompt_tokens": s.encode_len - self.sampling.max_new_tokens},
            "sampling": {**self.sampling.to_dict(), "p_i": "untempered softmax (temperature and top-p only "
                         "shape the draws)", "device": str(next(self.model_.parameters()).device)},
            "distinct_scores": {e: int(np.unique(got[e]).size) for e in ESTIMATORS},
            "path_stops": got["stops"], **self.target_info_,
            "stage": {"1": "1 (EHRT)", "3": "3 (MEHRT)"}.get(s.stage, s.stage), "size": s.size,
            "n_parameters": final["n_parameters"], "explanations": None,
            "device": str(next(self.model_.parameters()).device),
            "timing_s": {"pretrain_or_load_s": round(self.load_s_, 2), "sample_s": round(got["sample_s"], 2),
                         "predict_s": round(time.perf_counter() - t0, 2)},
            "settings": {"estimator": self.estimator, **self.sampling.to_dict(), "size": s.size, "steps": s.steps},
        }
        return pred
