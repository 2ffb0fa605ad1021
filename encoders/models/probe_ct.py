"""probe_ct: the concat_lr head on one source (ct) alone, the single-modality reference for fusion."""

from encoders.models._common import single_source

SPEC = single_source("ct")
