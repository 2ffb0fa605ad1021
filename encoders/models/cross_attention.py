"""cross_attention(_fm, _curated): the CT + EHR fusion paper's symmetric cross-attention."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("cross_attention", "cross_attention",
                    "Symmetric cross-attention: h = concat(e, A_ehr<-img, i, A_img<-ehr) (4 d_k; EHR queries over "
                    "the recent image studies, the image query over the EHR vector), then an MLP head.")
