"""timeline_gru: a GRU over 2-hour bins of vitals/labs before the prediction time (Harutyunyan et al. 2019)."""

from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: GRU on the 48-hour binned time series, trained on the task's training split."""
    return FusionModel(head="timeline_rnn", budget=budget, seed=seed, head_params={"cell": "gru"},
                       name="timeline_gru", inputs=InputConfig(structured=False, timeline=True, modalities=()))


SPEC = spec(
    "timeline_gru",
    "Clinical time series: numeric codes in 2-hour bins over the 48 h before the prediction time "
    "(carry-forward, normal-value fill, standardized, value + mask channels) through a GRU.",
    make, modalities=("structured",),
    reference="Harutyunyan et al. 2019, Multitask learning and benchmarking with clinical time series data")
