"""probe_wsi: the concat_lr head on one source (wsi) alone, the single-modality reference for fusion."""

from encoders.models._common import single_source

SPEC = single_source("wsi")
