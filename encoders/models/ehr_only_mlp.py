"""ehr_only_mlp(_fm, _curated): the CT + EHR fusion paper's EHR-only model, an MLP head on the EHR vector."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("ehr_only_mlp", "ehr_only_mlp",
                    "MLP head (hidden widths scaled with the input width) on the EHR vector alone.", image=False)
