"""timeline_lstm: a LSTM over 2-hour bins of vitals/labs before the prediction time (Harutyunyan et al. 2019)."""

from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: LSTM on the 48-hour binned time series, trained on the task's training split."""
    return FusionModel(head="timeline_rnn", budget=budget, seed=seed, head_params={"cell": "lstm"},
                       name="timeline_lstm", inputs=InputConfig(structured=False, timeline=True, modalities=()))


SPEC = spec(
    "timeline_lstm",
    "Clinical time series: numeric codes in 2-hour bins over the 48 h before the prediction time "
    "(carry-forward, normal-value fill, standardized, value + mask channels) through a LSTM.",
    make, modalities=("structured",),
    reference="Harutyunyan et al. 2019, Multitask learning and benchmarking with clinical time series data")
