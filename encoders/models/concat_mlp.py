"""concat_mlp(_fm, _curated): the CT + EHR fusion paper's "traditional concatenation" + MLP head."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("concat_mlp", "concat_mlp",
                    "Traditional concatenation: MLP head (hidden widths scaled with the input width) on "
                    "concat(h_ehr, h_img).")
