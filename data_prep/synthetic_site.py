"""Sites of the synthetic health system: one latent structure, two hospitals.

Site "a" is the embedded default cohort.  Site "b" is a second hospital for external validation, in
the spirit of the external cohorts of "Fusion is not one-size-fits-all: Cross-Modal Representation
Alignment for Time-to-Event Modeling" (an ED population with a different case mix, other coding
habits and other scanners).  Every hazard coefficient, every latent and every embedding map is shared;
a site changes only

* case mix: birth years, loss to follow-up, who gets a cardiac CT / a PE work-up (selection, not
  effect sizes);
* coding habits: other ICD-10-CM sub-codes inside the same predicate families, and codes the site
  never records;
* image distribution: an affine shift plus extra noise of the CT and CXR embeddings, and a
  brightness / contrast / noise change of the rendered CXR PNGs.

A test oracle, not a claim about any real hospital (see data_prep/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import UserError


@dataclass(frozen=True)
class Site:
    """Per-site parameters (case mix, coding, image shift); the latent model is shared."""

    name: str
    dataset_name: str
    birth_years: tuple[int, int]          # birth uniformly in [first, second) (calendar years)
    ltfu_per_year: float                  # loss-to-follow-up hazard
    pe_intercept: float                   # log-odds of a PE episode (selection)
    card_intercept: float                 # log-odds of a cardiac CT (selection)
    card_age_slope: float                 # age-driven referral (0: ED-like, anyone gets one)
    card_min_age: float
    mace_codes: tuple[str, ...]           # MI / MI / subsequent MI / ischemic stroke
    hf_codes: tuple[str, ...]             # acute heart failure (hospitalization) codes
    pe_codes: tuple[str, ...]             # PE without / with acute cor pulmonale
    death_cause: dict                     # cause -> DEATH_CAUSE/ code
    never_codes: tuple[str, ...] = ()     # codes the site never records
    ct_shift: tuple[float, float, float] = (1.0, 0.0, 0.0)    # (scale, offset norm, extra noise sd)
    cxr_shift: tuple[float, float, float] = (1.0, 0.0, 0.0)
    png_shift: tuple[float, float, float] = (1.0, 0.0, 0.0)   # (contrast, brightness, noise sd) in grey levels

    @property
    def shifted(self) -> bool:
        """True when the site changes the image distribution."""
        return (self.ct_shift, self.cxr_shift, self.png_shift) != ((1.0, 0.0, 0.0),) * 3


_CAUSE_A = {"mi": "DEATH_CAUSE/I21.9", "stroke": "DEATH_CAUSE/I63.9", "sudden": "DEATH_CAUSE/I46.9",
            "pe": "DEATH_CAUSE/I26.99", "oncology": "DEATH_CAUSE/C80.1", "icu": "DEATH_CAUSE/A41.9",
            "other": "DEATH_CAUSE/R99"}
_CAUSE_B = {**_CAUSE_A, "mi": "DEATH_CAUSE/I21.4", "sudden": "DEATH_CAUSE/I46.1", "icu": "DEATH_CAUSE/J96.00"}

SITE_A = Site(
    name="a", dataset_name="MEHR-Bench synthetic cohort", birth_years=(1935, 2001), ltfu_per_year=0.025,
    pe_intercept=-0.9, card_intercept=-0.2, card_age_slope=0.5, card_min_age=40.0,
    mace_codes=("ICD10CM/I21.4", "ICD10CM/I21.9", "ICD10CM/I22.9", "ICD10CM/I63.9"),
    hf_codes=("ICD10CM/I50.21", "ICD10CM/I50.31"), pe_codes=("ICD10CM/I26.99", "ICD10CM/I26.09"),
    death_cause=_CAUSE_A)

SITE_B = Site(
    name="b", dataset_name="MEHR-Bench synthetic cohort (site b)", birth_years=(1930, 1990), ltfu_per_year=0.08,
    pe_intercept=-0.4, card_intercept=-0.6, card_age_slope=0.0, card_min_age=25.0,
    mace_codes=("ICD10CM/I21.A1", "ICD10CM/I21.01", "ICD10CM/I22.0", "ICD10CM/I63.50"),
    hf_codes=("ICD10CM/I50.23", "ICD10CM/I50.33"), pe_codes=("ICD10CM/I26.92", "ICD10CM/I26.02"),
    death_cause=_CAUSE_B, never_codes=("ICD10CM/K21.9", "ICD10CM/F32.9", "ICD10CM/E03.9"),
    ct_shift=(1.2, 4.0, 0.7), cxr_shift=(1.15, 3.0, 0.6), png_shift=(0.75, 30.0, 10.0))

SITES = {"a": SITE_A, "b": SITE_B}


def site(name: str) -> Site:
    """The site called `name`.

    Args:
        name: "a" (the default cohort) or "b" (the external-validation site).

    Returns:
        Its parameters.

    Raises:
        UserError: unknown site.
    """
    if name not in SITES:
        raise UserError(f"unknown synthetic site {name!r}", field="--site", fix=f"use one of {sorted(SITES)}")
    return SITES[name]


_SHIFT_SEED = 20250607            # fixed: the site's scanner does not change with the cohort seed


def shift_embedding(rng: np.random.Generator, emb: np.ndarray, shift: tuple[float, float, float],
                    which: int) -> np.ndarray:
    """Scanner shift of an embedding: scale * emb + a fixed offset direction * norm + N(0, sd) noise.

    Args:
        rng: the site's noise stream.
        emb: (m, d) float32 embeddings.
        shift: (scale, offset norm, noise sd).
        which: index of the fixed offset direction (one per modality).

    Returns:
        float32 (m, d).
    """
    scale, norm, sd = shift
    d = emb.shape[1]
    direction = np.random.default_rng([_SHIFT_SEED, which, d]).standard_normal(d)
    offset = norm * direction / np.linalg.norm(direction)
    return (scale * emb + offset + sd * rng.standard_normal(emb.shape)).astype(np.float32)


def shift_pixels(rng: np.random.Generator, px: np.ndarray, shift: tuple[float, float, float]) -> np.ndarray:
    """Other scanner / post-processing of the rendered CXR: contrast around mid-grey, brightness, noise.

    Args:
        rng: the site's image stream.
        px: uint8 (m, H, W).
        shift: (contrast, brightness in grey levels, noise sd in grey levels).

    Returns:
        uint8 (m, H, W).
    """
    contrast, bright, sd = shift
    out = contrast * (px.astype(np.float64) - 128.0) + 128.0 + bright + sd * rng.standard_normal(px.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
