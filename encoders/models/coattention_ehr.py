"""coattention_ehr(_fm, _curated): the CT + EHR fusion paper's EHR-guided co-attention."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("coattention_ehr", "coattention",
                    "EHR-guided co-attention: the EHR is the query, the recent image studies the keys and values; "
                    "h = concat(h_ehr, A), then an MLP head.", head_params={"guide": "ehr"})
