"""xgboost_late_fusion: see baselines/late_fusion.py."""

from baselines.late_fusion import LATE_FUSION_MODALITIES, factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="xgboost_late_fusion",
    kind="baseline",
    description=("Late fusion (MEHRT paper (OpenReview ywFxZhMnuB) appendix B.2): one xgboost model per modality (B.1 bag-of-events, "
                 "mean CT and mean WSI embeddings; ours: also CXR and PRS where the task offers them), each "
                 "searched over Table B2; predictions averaged over the modalities a sample has"),
    modalities=LATE_FUSION_MODALITIES,
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search and the modalities used; each result records its own
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference="the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.2 (late fusion) and Table B2; Chen & Guestrin 2016 (XGBoost)",
    authors="MEHR-Bench",
    factory=factory_for("xgboost"),
)
