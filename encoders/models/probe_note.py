"""probe_note: the concat_lr head on one source (note) alone, the single-modality reference for fusion."""

from encoders.models._common import single_source

SPEC = single_source("note")
