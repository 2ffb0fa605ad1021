"""image_only_mlp: the CT + EHR fusion paper's unimodal reference, an MLP head on the image embedding."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("image_only_mlp", "image_only_mlp",
                    "MLP head (hidden widths scaled with the input width) on the frozen image embedding alone.",
                    ehr=False, suffixes=("",))
