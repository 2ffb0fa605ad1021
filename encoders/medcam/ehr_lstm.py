"""The EHR side of MedCAM: an LSTM over the 2-hour-binned ICU time series (encoders.timeline).

The paper encodes the MIMIC-IV time series (76 features resampled every 2 h, carried forward,
normal-value filled, standardized) with an LSTM (the MedFuse encoder of Hayat et al. 2022).
`encoders.timeline.timeline_features` builds exactly that input here; this module holds the
network: per-step outputs (the local loss' time steps) and the last step (the global embedding,
"the fully encoded EHR sequence"), both projected into the image encoder's latent space (the CXR
is the anchor modality the EHR is adapted to).
"""

from __future__ import annotations


def make_ehr_lstm(n_features: int, out_dim: int, hidden: int = 64):
    """LSTM mapping x [B, t, F] -> (z_global [B, out_dim], z_steps [B, t, out_dim]).

    Args:
        n_features: F, features per 2-hour bin.
        out_dim: the image encoder's feature size (the shared space).
        hidden: LSTM hidden size.
    """
    from torch import nn

    class EHRLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
            self.proj = nn.Linear(hidden, out_dim)

        def forward(self, x):          # x [B, t, F], oldest bin first
            h, _ = self.lstm(x)        # [B, t, hidden]
            steps = self.proj(h)       # [B, t, out_dim]
            return steps[:, -1], steps

    return EHRLSTM()
