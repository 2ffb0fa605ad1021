"""Registry entries `ehrt-zeroshot-path` and `ehrt-zeroshot-freq`: the structured-only EHRT (the `ehrt`
checkpoint) answering binary tasks without a probe, from N = 10 generated trajectories per sample.
`-path` scores with the mean path-computed probability, `-freq` with the fraction of paths that
reach the outcome in the window; both read the same paths (one sampling per run when both run).
Tasks whose outcome the tokenizer cannot emit are refused by name (encoders/mehrt/zeroshot.py).
torch is imported only when the factory runs.
"""

from __future__ import annotations

import functools

from benchmark.registry import ModelSpec
from encoders.mehrt.register_ehrt import SPEC as EHRT_SPEC


REFERENCE = ("Integrating Genomics into Multimodal EHR Foundation Models (Amar et al. 2025), 2.4: Monte Carlo "
             "trajectories and path-computed probabilities; zero-shot health trajectory prediction (ETHOS, "
             "Renc et al. 2024)")
DESCRIPTIONS = {"path": "mean over 10 trajectories of the path-computed probability sum_i prod_{j<i}(1-p_j) p_i",
                "freq": "fraction of 10 trajectories that emit the outcome inside the label window"}


def _factory(budget, seed: int = 0, estimator: str = "path", multimodal: bool = False):
    """Build the zero-shot pipeline (see encoders/mehrt/zeroshot.py)."""
    from encoders.mehrt.zeroshot import ZeroShotPipeline
    return ZeroShotPipeline(budget=budget, seed=seed, multimodal=multimodal, estimator=estimator)


def zeroshot_spec(base: ModelSpec, estimator: str, multimodal: bool) -> ModelSpec:
    """`<base>-zeroshot-<estimator>`: the base model's checkpoint, sampled instead of probed."""
    return base.model_copy(update={
        "name": f"{base.name}-zeroshot-{estimator}",
        "description": (f"{base.name} checkpoint, zero-shot (no probe, no labels): {DESCRIPTIONS[estimator]}; "
                        "binary tasks whose outcome codes have tokens"),
        "task_kinds": ("binary",),
        "training_data": "the evaluated cohort's training split (self-supervised next-token pretraining only; "
                         "no task labels)",
        "reference": REFERENCE,
        "factory": functools.partial(_factory, estimator=estimator, multimodal=multimodal)})


SPECS = tuple(zeroshot_spec(EHRT_SPEC, e, multimodal=False) for e in ("path", "freq"))
