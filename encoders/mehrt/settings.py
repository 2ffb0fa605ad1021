"""MEHRT / EHRT pipeline settings: what a runner budget means for the pipeline (size, steps, encoding,
probe search), frozen and hashed into cache keys. encoders/mehrt/pipeline.py uses them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from benchmark.model_api import Budget
from encoders.mehrt.model import PRS_MODES

PIPELINE_VERSION = "2"  # 2: inputs without non-static null-time rows (issue 12)
REPRESENTATIONS = ("echo", "last", "mean")  # the default candidates of MEHRT and EHRT alike
# MEHRT only, opt-in (MEHRTPipeline(representations=...)): mean pooling + the hidden state at the
# most recent placeholder of each image modality. Not a default candidate: EHRT cannot have it.
STUDY_REPRESENTATION = "mean+studies"


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline does for one budget (frozen; hashed into cache keys).

    Args:
        size: MEHRT size name.
        steps: Stage-1 pretraining steps (LEVELS).
        stage: the stage whose weights encode: "1" (EHRT), "3" (MEHRT) or "3joint".
        multimodal: use image studies and PRS (False: structured timelines only).
        encode_len: tokens per sample window (prefix included).
        representations: which of REPRESENTATIONS the probe may choose from.
        encode_tokens: tokens per encoding forward pass (batch size x padded length).
        probe_trials: candidate regularisation strengths.
        probe_folds: CV folds.
        prs_mode: the PRS pathway ("cross_attention" or "prefix"; None for EHRT). It reaches the
            model config, whose hash is part of every checkpoint and representation cache key.
        compile: torch.compile the pretraining stages on CUDA (not part of any cache key).
    """

    size: str
    steps: int
    stage: str
    multimodal: bool
    encode_len: int
    representations: tuple[str, ...]
    encode_tokens: int = 16384
    probe_trials: int = 8
    probe_folds: int = 5
    prs_mode: str | None = None
    compile: bool = False

    def encode_hash(self) -> str:
        """Hash of what changes a cached representation."""
        blob = json.dumps([PIPELINE_VERSION, self.encode_len, sorted(self.representations), self.multimodal])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# MEHRT's own reading of a budget level: (size config in model.py SIZES, Stage-1 pretraining steps).
# The runner's Budget is generic; these are the values `make run` has always used.
LEVELS: dict[str, tuple[str, int]] = {"smoke": ("tiny", 60), "default": ("small", 600), "full": ("small", 5000)}
# `mehrt`'s PRS pathway: cross-attention, the Genomics paper's evaluated model (GPT-PRS-CROSS).
DEFAULT_PRS_MODE = "cross_attention"


def settings_for(budget: Budget, multimodal: bool, stage: str | None = None, size: str | None = None,
                 steps: int | None = None, prs_mode: str | None = None,
                 representations: tuple[str, ...] | None = None, compile: bool = False) -> Settings:
    """Pipeline settings for a runner budget.

    Args:
        budget: the runner's Budget (level name -> LEVELS size and steps; n_trials, n_folds).
        multimodal: MEHRT (True) or EHRT (False).
        stage: override the encoding stage (default "3" for MEHRT, "1" for EHRT).
        size: override the level's size (registry entries `mehrt-<size>`).
        steps: override the level's Stage-1 steps (tests).
        prs_mode: MEHRT's PRS pathway, "cross_attention" (default, DEFAULT_PRS_MODE) or "prefix"
            (registry entries `mehrt-prs-cross` / `mehrt-prs-prefix`); EHRT has none.
        representations: override the probe's candidates (default REPRESENTATIONS, the same for
            MEHRT and EHRT at every budget; STUDY_REPRESENTATION only for a multimodal model).
        compile: torch.compile pretraining on CUDA (`scale --compile`).

    Returns:
        The settings.

    Raises:
        ValueError: a budget level MEHRT has no size and steps for (and no override of both), or an
            unknown prs_mode or an unknown / unavailable representation.
    """
    if prs_mode not in (None, *PRS_MODES):
        raise ValueError(f"unknown MEHRT prs_mode {prs_mode!r}; choose one of {PRS_MODES}")
    if (size is None or steps is None) and budget.name not in LEVELS:
        raise ValueError(f"MEHRT has no size and steps for budget level {budget.name!r}; known levels: "
                         f"{', '.join(LEVELS)} (encoders/mehrt/settings.py LEVELS)")
    level_size, level_steps = LEVELS.get(budget.name, (size, steps))
    size, steps = size or level_size, steps if steps is not None else level_steps
    tiny = size == "tiny"
    # Echo (the paper's token averaging) encodes every window twice (2 x 256 tokens, within every
    # size's max_seq_len): about twice the encoding time, paid at every budget so that the paper's
    # two probes (echo, last token) are always candidates, for MEHRT and EHRT alike.
    reps = tuple(representations) if representations is not None else REPRESENTATIONS
    allowed = REPRESENTATIONS + ((STUDY_REPRESENTATION,) if multimodal else ())
    if not reps or set(reps) - set(allowed):
        raise ValueError(f"representations {list(reps)} are not among {list(allowed)} for "
                         f"{'MEHRT' if multimodal else 'EHRT'} (encoders/mehrt/settings.py REPRESENTATIONS)")
    return Settings(
        size=size, steps=steps,
        stage=stage or ("3" if multimodal else "1"), multimodal=multimodal,
        encode_len=256, representations=reps,
        encode_tokens=32768 if tiny else 16384,
        # Probes are cheap next to encoding: a few more candidates than the budget's
        # random-search trials (with at least 8), since C spans 20 decades.
        probe_trials=min(40, max(8, 2 * budget.n_trials)), probe_folds=max(budget.n_folds, 3),
        prs_mode=(prs_mode or DEFAULT_PRS_MODE) if multimodal else None, compile=compile)
