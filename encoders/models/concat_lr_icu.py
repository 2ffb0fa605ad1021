"""`concat_lr_icu` / `concat_lr_icu_ts`: the fusion recipe of Benchmarking Foundation Models with
Multimodal Public Electronic Health Records (arXiv 2507.14824) on the ICU tasks.

The paper encodes each modality separately with a frozen encoder (demographics; the vital-sign time
series of the first 24 h of the ICU stay; the chest X-ray; the notes), concatenates the embeddings
and fits a logistic regression. Here:

* demographics: sex, age at the prediction time, race and ethnicity (`InputConfig(ehr_columns=
  "demographics")`: no code counts or history, unlike `concat_lr`'s whole bag-of-events vector);
* time series: the 24 h before the prediction time (the ICU tasks predict 24 h after ICU admission,
  so this is the first 24 h of the stay), 2-hour bins, summarised per code (last, mean, min, max,
  fraction observed);
* CXR and notes: the sidecars' precomputed study embeddings, pooled over the studies visible at the
  prediction time;
* one linear layer (logistic regression) with a ridge penalty chosen by cross-validation on the
  shared folds; no elastic net.

Deviations, kept on purpose (also in encoders/README.md): the paper's time-series encoder is a
trained GRU (or the MOMENT foundation model) whose frozen embedding enters the regression; here the
frozen "embedding" is the fixed per-code summary (no pretrained time-series model is available
offline, and a GRU trained on the same labels would not be frozen). The paper does not say how a
missing CXR or note enters the regression; here a learned missing vector plus a presence flag per
modality (the same as a per-modality intercept shift for a linear model). Penalty chosen by CV
(the paper does not report its regularisation).

`concat_lr_icu_ts` is the paper's "structured data alone" reference (demographics + time series);
`probe_cxr` and `probe_note` are the CXR-only and notes-only references (the same head on the same
pooled embeddings).
"""

from __future__ import annotations

from benchmark.api import ModelSpec, spec

WINDOW_HOURS = 24
REFERENCE = ("Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824): "
             "frozen per-modality embeddings (demographics, first-24 h time series, CXR, notes) concatenated, "
             "logistic regression")


def _spec(name: str, modalities: tuple[str, ...], what: str) -> ModelSpec:
    from encoders.fusion.inputs import InputConfig

    inputs = InputConfig(structured=True, ehr_columns="demographics", timeline=True, window_hours=WINDOW_HOURS,
                         modalities=modalities)

    def make(budget=None, seed: int = 0):
        from encoders.fusion.estimator import FusionModel
        return FusionModel(head="concat_lr", budget=budget, seed=seed, name=name, inputs=inputs, l1_ratio=0.0)

    return spec(name, f"{what} concatenated into one logistic regression (ridge, penalty by CV), the multimodal "
                      f"public EHR benchmark's fusion recipe", make, modalities=("structured", *modalities),
                requires=modalities, reference=REFERENCE)


SPECS = (
    _spec("concat_lr_icu", ("cxr", "note"), "Demographics, the 24 h time-series summary, and the pooled CXR and note "
                                            "embeddings"),
    _spec("concat_lr_icu_ts", (), "Demographics and the 24 h time-series summary (structured data alone)"),
)
