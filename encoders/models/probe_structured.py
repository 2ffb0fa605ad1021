"""probe_structured: the concat_lr head on one source (structured) alone, the single-modality reference for fusion."""

from encoders.models._common import single_source

SPEC = single_source("structured")
