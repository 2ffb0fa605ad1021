"""The scaling study of the MEHRT paper (OpenReview ywFxZhMnuB, Sec. 3 / Fig. 2b, Fig. 3b): EHRT and
MEHRT pretrained at several sizes, every oncology task probed, macro-average AUROC against parameters
and test perplexity by stage against size.

    python -m benchmark scale --sizes tiny,small,9M [--families ehrt,mehrt] \\
        [--tokens-rule fixed:N | chinchilla:R] [--max-epochs E] [--data DIR] [--budget B] \\
        [--results DIR] [--seeds N] [--tasks oncology] [--compile] [--force]

The token rule decides each size's Stage-1 pretraining steps (`steps_for`, closed form):

    fixed:N        every size trains N Stage-1 tokens (the paper's choice: the same data and epochs
                   for every size). Default: the budget level's own Stage-1 tokens, the size and
                   steps `run --model ehrt` uses (default budget: 600 steps x 4 x 256 = 614,400).
    chinchilla:R   tokens = R x the backbone's non-embedding parameters (Hoffmann et al. 2022: R ~ 20).

Either way the tokens are capped at `max_epochs` x the training corpus's structured tokens (default
10, the paper's Stage-1 epochs); the summary states each size's epochs and whether it was capped.
Tokens are counted as window slots, steps x batch x seq_len (`tokens_per_step`: 16 x 256 for `tiny`,
4 x 256 for the other sizes, pretrain.default_plan); the tokens a stage really saw (windows of short
records hold fewer) are recorded by the trainer and reported next to them. Stages 2 / 3 / 3-Joint
train the paper's 10:5:5:10 ratio of the Stage-1 steps (pretrain.stage_steps). EHRT and MEHRT of
one size get the same steps, so MEHRT starts from that very EHRT checkpoint (one Stage-1 run).

The steps reach the models through `sized_spec(size, steps=...)` of register_ehrt_sizes.py and
register_mehrt.py: the specs are `ehrt-<size>` / `mehrt-<size>` as registered, except for their
Stage-1 steps (`run --model ehrt-9m` itself is unchanged). Sizes without a registered entry
(28M ... 982M) are made the same way. The grid runs through the normal runner (records and
predictions in the results folder; finished cells and cached stages are reused: rerunning resumes),
the leaderboard's scaling view gives the macro AUROC points and CIs (leaderboard/scaling.py, handed in
by the CLI: encoders never import the leaderboard), and `write_summary` writes scale_summary.json /
.md and scale_plot.svg next to the records.

Device: CUDA when available (bf16 autocast, flash SDPA, DDP under torchrun: trainer.py), else CPU;
`--compile` adds torch.compile on CUDA.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from benchmark.artifacts import atomic_write
from benchmark.errors import UserError
from benchmark.kinds import BINARY, kind_of
from benchmark.model_api import BUDGETS
from benchmark.registry import ModelSpec

FAMILIES = ("ehrt", "mehrt")
DEFAULT_MAX_EPOCHS = 10.0  # the paper's Stage-1 epochs (10 over all patients)
STAGES_OF = {"ehrt": ("1",), "mehrt": ("1", "2", "3")}  # the stages each family's encoder went through
SUMMARY_JSON, SUMMARY_MD, PLOT_SVG = "scale_summary.json", "scale_summary.md", "scale_plot.svg"
_COUNT = re.compile(r"^(\d+(?:\.\d+)?)([kmb]?)$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}


# ------------------------------------------------------------------------------ the token rule
@dataclass(frozen=True)
class TokenRule:
    """How many Stage-1 tokens a size trains.

    Args:
        scheme: "fixed" (value = tokens, every size) or "chinchilla" (value = tokens per non-embedding
            parameter of the backbone).
        value: N or R.
        max_epochs: cap, in passes over the training corpus's structured tokens.
    """

    scheme: Literal["fixed", "chinchilla"]
    value: float
    max_epochs: float = DEFAULT_MAX_EPOCHS

    def text(self) -> str:
        """The rule as the command line writes it (fixed:614400, chinchilla:20)."""
        return f"{self.scheme}:{self.value:g}" if self.scheme == "chinchilla" else f"fixed:{int(self.value)}"

    def wanted(self, non_embedding: int) -> float:
        """Tokens before the epoch cap for a backbone with `non_embedding` parameters."""
        return self.value if self.scheme == "fixed" else self.value * non_embedding


def parse_rule(text: str, max_epochs: float = DEFAULT_MAX_EPOCHS) -> TokenRule:
    """`fixed:N` (N tokens; k / M / B suffixes allowed) or `chinchilla:R` (R tokens per parameter).

    Raises:
        UserError: anything else, or a non-positive N, R or max_epochs.
    """
    fix = "pass --tokens-rule fixed:N (tokens per size, e.g. fixed:300k) or chinchilla:R (e.g. chinchilla:20)"
    scheme, _, value = text.strip().partition(":")
    m = _COUNT.match(value.strip())
    if scheme not in ("fixed", "chinchilla") or not m:
        raise UserError(f"--tokens-rule {text!r} is not a token rule", field="--tokens-rule", fix=fix)
    v = float(m.group(1)) * _UNIT[m.group(2).lower()]
    if v <= 0 or (scheme == "fixed" and v < 1):
        raise UserError(f"--tokens-rule {text!r} must be positive", field="--tokens-rule", fix=fix)
    if not max_epochs > 0:
        raise UserError(f"--max-epochs {max_epochs} must be positive", field="--max-epochs",
                        fix="pass a positive number of passes over the training corpus (default 10)")
    return TokenRule(scheme, v, max_epochs)  # type: ignore[arg-type]


def tokens_per_step(size: str) -> int:
    """Stage-1 token slots per optimizer step of a size (batch x seq_len of pretrain.default_plan)."""
    from encoders.mehrt.pretrain import default_plan

    cfg = default_plan(size, 1).stages["1"]
    return cfg.batch_size * cfg.seq_len


def default_rule(budget: str) -> TokenRule:
    """fixed at the budget level's Stage-1 tokens (settings.LEVELS: its size's steps x tokens per step)."""
    from encoders.mehrt.pipeline import LEVELS

    size, steps = LEVELS[budget]
    return TokenRule("fixed", float(steps * tokens_per_step(size)))


def steps_for(rule: TokenRule, non_embedding: int, corpus_tokens: int, per_step: int) -> tuple[int, bool]:
    """Stage-1 steps of one size under a rule (closed form).

    steps = max(1, min(round(wanted / per_step), floor(max_epochs x corpus_tokens / per_step))),
    wanted = N (fixed) or R x non_embedding (chinchilla).

    Args:
        rule: the token rule.
        non_embedding: the backbone's non-embedding parameters.
        corpus_tokens: structured tokens of the training corpus (one epoch).
        per_step: token slots per step (`tokens_per_step`).

    Returns:
        (steps, capped): capped is True when the epoch cap, not the rule, set the steps.
    """
    want = round(rule.wanted(non_embedding) / per_step)
    cap = math.floor(rule.max_epochs * corpus_tokens / per_step)
    return max(1, min(want, cap)), want > cap


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class ScaleEntry:
    """One (family, size) of the study and the pretraining its rule gives it."""

    family: str
    size: str
    model: str
    non_embedding: int
    steps: int
    tokens_per_step: int
    planned_tokens: int
    epochs: float
    capped: bool


def resolve_sizes(text: str) -> list[str]:
    """Size names from `--sizes` (case-insensitive keys of sizes.SIZES), in the order given.

    Raises:
        UserError: an unknown size, naming the known ones.
    """
    from encoders.mehrt.sizes import SIZES

    by_lower = {k.lower(): k for k in SIZES}
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() not in by_lower:
            raise UserError(f"unknown MEHRT size {part!r}", field="--sizes",
                            fix=f"choose from {', '.join(SIZES)} (encoders/mehrt/sizes.py)")
        if by_lower[part.lower()] not in out:
            out.append(by_lower[part.lower()])
    if not out:
        raise UserError("--sizes names no size", field="--sizes", fix="pass e.g. --sizes tiny,small,9M")
    return out


def resolve_families(text: str) -> list[str]:
    """Model families from `--families` (ehrt, mehrt).

    Raises:
        UserError: an unknown family.
    """
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FAMILIES]
    if bad or not out:
        raise UserError(f"--families {text!r}: unknown {', '.join(bad) or 'empty'}", field="--families",
                        fix=f"choose from {', '.join(FAMILIES)}")
    return list(dict.fromkeys(out))


def non_embedding_parameters(size: str, vocab_size: int) -> int:
    """Non-embedding parameters of the size's EHRT backbone (built on the meta device)."""
    import torch

    from encoders.mehrt.model import MEHRT
    from encoders.mehrt.sizes import config_for

    with torch.device("meta"):
        return MEHRT(config_for(size, vocab_size)).num_parameters(exclude_embeddings=True)


def plan_scale(cohort, sizes: list[str], families: list[str], rule: TokenRule) -> tuple[list[ScaleEntry], int]:
    """Each (family, size)'s steps under the rule, on this cohort's training corpus.

    Args:
        cohort: the Cohort (its training corpus is tokenized, cached, to count one epoch).
        sizes: size names.
        families: "ehrt" and/or "mehrt".
        rule: the token rule.

    Returns:
        (entries in size then family order, the corpus's structured tokens).
    """
    from encoders.mehrt.corpora import prepare_corpora

    corpora = prepare_corpora(cohort)
    corpus_tokens = int(corpora.train.lengths(False).sum())
    out = []
    for size in sizes:
        per = tokens_per_step(size)
        ne = non_embedding_parameters(size, corpora.tokenizer.vocab_size)
        steps, capped = steps_for(rule, ne, corpus_tokens, per)
        for fam in families:
            out.append(ScaleEntry(fam, size, f"{fam}-{size.lower()}", ne, steps, per, steps * per,
                                  steps * per / max(corpus_tokens, 1), capped))
    return out, corpus_tokens


def spec_of(entry: ScaleEntry, compile: bool = False) -> ModelSpec:
    """The registered `<family>-<size>` spec with the entry's Stage-1 steps."""
    if entry.family == "ehrt":
        from encoders.mehrt.register_ehrt_sizes import sized_spec
    else:
        from encoders.mehrt.register_mehrt import sized_spec
    return sized_spec(entry.size, steps=entry.steps, compile=compile)


def oncology_task_names(selection: str) -> list[str]:
    """The binary tasks of a selection (default the oncology family): the macro average's tasks.

    Raises:
        UserError: no binary task in the selection.
    """
    from benchmark.task_registry import select_tasks

    names = [t.name for t in select_tasks(selection) if kind_of(t.kind) is BINARY]
    if not names:
        raise UserError(f"--tasks {selection!r} selects no binary task", field="--tasks",
                        fix="pass oncology (every oncology task) or some of its binary tasks")
    return names


def stale_cells(records, entries: list[ScaleEntry]) -> list[str]:
    """Finished cells of the study's models pretrained for other Stage-1 steps than planned (a
    results folder of another token rule or budget): their model name is the same, so the runner
    would keep them."""
    steps = {e.model: e.steps for e in entries}
    out = []
    for r in records:
        if r.model not in steps or r.status != "ok":
            continue
        had = ((r.model_info.model_extra or {}).get("hyperparameters") or {}).get("pretrain_steps_stage1")
        if had != steps[r.model]:
            out.append(f"{r.model} on {r.task} (seed {r.seed}): {had} Stage-1 steps, planned {steps[r.model]}")
    return out


# ------------------------------------------------------------------------------ running
View = Callable[[Path, str], dict]


def run_scale(cohort, sizes: list[str], families: list[str], rule: TokenRule, results_dir: Path, *,
              view: View, budget: str = "default", seeds: int = 1, tasks: str = "oncology",
              force: bool = False, compile: bool = False, log: Callable[[str], None] = print) -> int:
    """Pretrain and probe every (family, size) on every task through the runner, then summarise.

    Args:
        cohort: the Cohort.
        sizes, families: the grid (`resolve_sizes`, `resolve_families`).
        rule: the token rule (`parse_rule`, `default_rule`).
        results_dir: results folder (records, predictions, scale_summary.*, scale_plot.svg).
        view: (results_dir, data fingerprint) -> {"points": {model: {value, ci_low, ci_high, method,
            note}}, "notes": [str], "figure": SVG text or None}: the leaderboard's scaling view.
        budget: budget level (probe search; the steps come from the rule).
        seeds: probe seeds per cell.
        tasks: task selection; its binary tasks are run.
        force: recompute finished cells (also allows a folder of another rule).
        compile: torch.compile pretraining on CUDA.
        log: where progress lines go.

    Returns:
        The runner's exit status (0 all cells finished or kept).

    Raises:
        UserError: bad flags, or finished cells of another rule in results_dir (without force).
    """
    from benchmark.results import read_records
    from benchmark.runner import run_grid

    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}", field="--budget", fix=f"choose from {', '.join(BUDGETS)}")
    task_names = oncology_task_names(tasks)
    entries, corpus_tokens = plan_scale(cohort, sizes, families, rule)
    results_dir = Path(results_dir)
    if not force and results_dir.exists():
        stale = stale_cells(read_records(results_dir), entries)
        if stale:
            raise UserError(f"{results_dir} holds cells of another token rule or budget: {'; '.join(stale[:3])}"
                            + (f" (and {len(stale) - 3} more)" if len(stale) > 3 else ""), field="--results",
                            fix="pass a new --results folder per rule, or --force to recompute every cell")
    for e in entries:
        log(f"{e.model}: {e.steps} Stage-1 steps x {e.tokens_per_step} tokens = {e.planned_tokens:,} tokens "
            f"({e.epochs:.2f} epochs of {corpus_tokens:,}{', capped' if e.capped else ''})")
    status = run_grid([spec_of(e, compile) for e in entries], ",".join(task_names), cohort, results_dir,
                      seeds=seeds, budget=budget, force=force)
    records = [r for r in read_records(results_dir) if r.task in task_names]
    shown = view(results_dir, cohort.fingerprint())
    summary = summarize(entries, records, shown, rule=rule, corpus_tokens=corpus_tokens, budget=budget,
                        tasks=task_names, seeds=seeds)
    write_summary(results_dir, summary, shown.get("figure"))
    log(f"wrote {results_dir / SUMMARY_JSON}, {SUMMARY_MD}" + (f", {PLOT_SVG}" if shown.get("figure") else ""))
    return status


# ------------------------------------------------------------------------------ summary
def summarize(entries: list[ScaleEntry], records, shown: dict, *, rule: TokenRule, corpus_tokens: int,
              budget: str, tasks: list[str], seeds: int) -> dict:
    """scale_summary.json's content: per (family, size) the plan, what pretraining recorded and the view's point.

    Args:
        entries: the plan.
        records: result records of the study's tasks.
        shown: the view (run_scale's `view`).
        rule, corpus_tokens, budget, tasks, seeds: the study's settings.

    Returns:
        A JSON-able dict.
    """
    rows = []
    points = shown.get("points", {})
    for e in entries:
        mine = [r for r in records if r.model == e.model and r.status == "ok"]
        extra = (mine[0].model_info.model_extra or {}) if mine else {}
        stages = extra.get("pretraining") or {}
        chain = [s for s in STAGES_OF[e.family] if s in stages]
        final = stages.get(chain[-1], {}) if chain else {}
        p = points.get(e.model)
        rows.append({
            **asdict(e),
            "n_parameters": final.get("n_parameters"),
            "stage_steps": {s: stages[s].get("steps") for s in chain},
            "tokens_seen": {s: stages[s].get("tokens") for s in chain},
            "tokens_per_s": {s: stages[s].get("tokens_per_s") for s in chain},
            "pretrain_seconds": {s: stages[s].get("train_seconds") for s in chain},
            "perplexity": {s: stages[s].get("held_out_perplexity") for s in chain},
            "perplexity_tokens": stages.get("1", {}).get("perplexity_tokens"),
            "cells": len(mine), "cells_wall_s": round(sum(r.compute.wall_s for r in mine), 1),
            "device": mine[0].compute.device if mine else None,
            "per_task_auroc": {r.task: (r.metrics or {}).get("auroc").value
                               for r in mine if (r.metrics or {}).get("auroc") is not None and r.seed == 0},
            "macro_auroc": None if p is None else {k: p.get(k) for k in ("value", "ci_low", "ci_high", "method", "note")},
        })
    return {"rule": rule.text(), "rule_kind": rule.scheme, "max_epochs": rule.max_epochs,
            "corpus_tokens": corpus_tokens, "budget": budget, "seeds": seeds, "tasks": tasks,
            "token_unit": "window slots: steps x batch x seq_len (Stage 1); tokens_seen: real tokens",
            "rows": rows, "notes": list(shown.get("notes", []))}


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def summary_markdown(summary: dict) -> str:
    """The summary as a Markdown table (one row per family and size)."""
    lines = [f"# Scaling study: rule {summary['rule']} (cap {summary['max_epochs']:g} epochs of "
             f"{summary['corpus_tokens']:,} training tokens), budget {summary['budget']}, {summary['seeds']} seed(s)",
             "", f"Tasks ({len(summary['tasks'])}): {', '.join(summary['tasks'])}", "",
             "| model | parameters | non-embedding | Stage-1 steps | tokens (epochs) | pretrain s | cells wall s "
             "| ppl S1 | ppl S2 | ppl S3 | macro AUROC [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        m = r["macro_auroc"] or {}
        ci = f" [{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]" if m.get("ci_low") is not None else ""
        ppl = r["perplexity"]
        npar = r["n_parameters"]
        lines.append(
            f"| {r['model']} | {_fmt(npar / 1e6 if npar else None, '.2f')}M | {r['non_embedding'] / 1e6:.2f}M "
            f"| {r['steps']} | {r['planned_tokens']:,} ({r['epochs']:.2f}{', capped' if r['capped'] else ''}) "
            f"| {_fmt(sum(v for v in r['pretrain_seconds'].values() if v) or None, '.0f')} | {r['cells_wall_s']:.0f} "
            f"| {_fmt(ppl.get('1'))} | {_fmt(ppl.get('2'))} | {_fmt(ppl.get('3'))} | {_fmt(m.get('value'))}{ci} |")
    if summary["notes"]:
        lines += ["", *[f"- {n}" for n in summary["notes"]]]
    return "\n".join(lines) + "\n"


def write_summary(results_dir: Path, summary: dict, figure: str | None) -> None:
    """Write scale_summary.json, scale_summary.md and (when the view drew one) scale_plot.svg, atomically."""
    atomic_write(Path(results_dir) / SUMMARY_JSON, json.dumps(summary, indent=1))
    atomic_write(Path(results_dir) / SUMMARY_MD, summary_markdown(summary))
    if figure:
        atomic_write(Path(results_dir) / PLOT_SVG, str(figure))
