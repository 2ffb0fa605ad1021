"""coattention_img(_fm, _curated): the CT + EHR fusion paper's image-guided co-attention."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("coattention_img", "coattention",
                    "Image-guided co-attention: the image is the query, the EHR the keys and values; "
                    "h = concat(h_img, A), then an MLP head.", head_params={"guide": "image"})
