"""MEDS data access: lazy cohort reader, validation, and the leakage guard."""

from benchmark.data.cohort import Cohort
from benchmark.data.leakage import visible_events, visible_modality

__all__ = ["Cohort", "visible_events", "visible_modality"]
