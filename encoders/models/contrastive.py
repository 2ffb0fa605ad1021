"""contrastive(_fm, _curated): the CT + EHR fusion paper's 2-step contrastive fusion."""

from encoders.models._paper import paper_specs

SPECS = paper_specs("contrastive", "contrastive",
                    "2-step contrastive: linear image and EHR projections aligned with the symmetric InfoNCE on "
                    "the training rows (image and EHR only), then an MLP head on both, fine-tuned.")
