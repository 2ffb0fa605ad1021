"""The CT + EHR fusion paper's heads ("Fusion is not one-size-fits-all", section 2.2) against hand
computations from their weights: the cross-attention's 4-part fused vector, the two directed
co-attentions, the contrastive step 1 (image and EHR only, the paper's L), hidden widths scaled
with the input, the lambda ||theta||^2 term, TorchSurv's survival losses, the image-modality choice
and the 19 registered names."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.fusion.inputs import FusionInputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

DE, DK = 3, 4
MODS = {"ct": (5, 3), "cxr": (2, 2), "note": (6, 2), "prs": (4, 1)}


def tiny(n: int = 5, seed: int = 0, mods: dict = MODS) -> FusionInputs:
    rng = np.random.default_rng(seed)
    a = {"ehr": rng.normal(size=(n, DE)).astype(np.float32)}
    for m, (d, k) in mods.items():
        a[f"{m}.seq"] = rng.normal(size=(n, k, d)).astype(np.float32)
        a[f"{m}.seq_mask"] = np.ones((n, k), bool)
        a[f"{m}.present"] = np.ones(n, bool)
        a[f"{m}.mean"] = a[f"{m}.seq"].mean(1).astype(np.float32)
    if "ct" in mods:
        a["ct.seq_mask"][0, 2] = False            # sample 0: two studies
        a["ct.present"][1] = False                # sample 1: no CT at all
        a["ct.seq_mask"][1] = False
        a["ct.mean"][1] = 0
    return FusionInputs(a, tuple(mods))


def lin(layer, x):
    w = layer.weight.detach().numpy().astype(np.float64)
    b = layer.bias.detach().numpy().astype(np.float64) if layer.bias is not None else 0.0
    return x @ w.T + b


def softmax(z):
    z = z - z.max()
    return np.exp(z) / np.exp(z).sum()


def image_side(h, b: dict, r: int):
    """(pooled image vector, study tokens [valid only]) of row r, the missing vector where absent."""
    miss = h.img_missing.detach().numpy().astype(np.float64)
    if not bool(b["ct.present"][r]):
        return miss, miss[None]
    valid = b["ct.seq_mask"][r].numpy()
    return b["ct.mean"][r].numpy().astype(np.float64), b["ct.seq"][r].numpy().astype(np.float64)[valid]


def test_cross_attention_fused_vector_is_the_papers_four_part_concat():
    from encoders.fusion.heads import build_head
    torch.manual_seed(0)
    X = tiny()
    h = build_head("cross_attention", X.spec(), 1, d_k=DK, dropout=0.0).eval()
    b = X.to_torch()
    with torch.no_grad():
        fused, w = h.fused(b, weights=True)
    assert fused.shape == (5, 4 * DK)
    for r in range(5):
        e = lin(h.proj_e, b["ehr"][r].numpy().astype(np.float64))
        himg, toks = image_side(h, b, r)
        i, t = lin(h.proj_i, himg), lin(h.proj_i, toks)
        we, wi = h.w_e, h.w_i
        att = softmax(lin(we["q"], e) @ lin(we["k"], t).T / math.sqrt(DK))
        a_ei = att @ lin(we["v"], t)
        a_ie = lin(wi["v"], e)                     # one EHR key: softmax = 1
        np.testing.assert_allclose(fused[r].numpy(), np.concatenate([e, a_ei, i, a_ie]), rtol=1e-5, atol=1e-6)
        assert len(att) == int(b["ct.seq_mask"][r].sum()) or not bool(b["ct.present"][r])
        np.testing.assert_allclose(w[r].numpy()[:len(att)], att, rtol=1e-5, atol=1e-6)
    # notes, PRS and the CXR are never read (the image is the CT)
    b2 = {k: (v * 0 + 7 if k.startswith(("note", "prs", "cxr")) and v.dtype != torch.bool else v) for k, v in b.items()}
    with torch.no_grad():
        torch.testing.assert_close(h(b2), h(b))


@pytest.mark.parametrize("guide", ["image", "ehr"])
def test_coattention_directed_forms_by_hand(guide):
    from encoders.fusion.heads import build_head
    torch.manual_seed(1)
    X = tiny(seed=1)
    h = build_head("coattention", X.spec(), 1, guide=guide, d_k=DK, dropout=0.0).eval()
    b = X.to_torch()
    with torch.no_grad():
        fused = h.fused(b)
    assert fused.shape == (5, 2 * DK)
    for r in range(5):
        e = lin(h.proj_e, b["ehr"][r].numpy().astype(np.float64))
        himg, toks = image_side(h, b, r)
        i, t = lin(h.proj_i, himg), lin(h.proj_i, toks)
        if guide == "image":     # image query, the EHR vector is the only key / value
            want = np.concatenate([i, lin(h.w["v"], e)])
        else:                    # EHR query over the image study tokens
            att = softmax(lin(h.w["q"], e) @ lin(h.w["k"], t).T / math.sqrt(DK))
            want = np.concatenate([e, att @ lin(h.w["v"], t)])
        np.testing.assert_allclose(fused[r].numpy(), want, rtol=1e-5, atol=1e-6)


def test_coattention_ehr_guided_ignores_padded_studies():
    from encoders.fusion.heads import build_head
    X = tiny(seed=2)
    h = build_head("coattention", X.spec(), 1, guide="ehr", d_k=DK).eval()
    b = X.to_torch()
    b2 = {k: v.clone() for k, v in b.items()}
    b2["ct.seq"][~b2["ct.seq_mask"]] = 50.0
    with torch.no_grad():
        torch.testing.assert_close(h(b2), h(b))


def test_contrastive_step1_is_the_papers_loss_on_image_and_ehr_only():
    from encoders.fusion.heads import build_head
    torch.manual_seed(2)
    X = tiny(n=6, seed=3)
    h = build_head("contrastive", X.spec(), 1, d_k=DK, temperature=0.5)
    b = X.to_torch()
    loss = h.pretrain_loss(b).item()
    rows = b["ct.present"].numpy()
    zi = lin(h.proj_i, b["ct.mean"].numpy().astype(np.float64)[rows])
    ze = lin(h.proj_e, b["ehr"].numpy().astype(np.float64)[rows])
    zi /= np.linalg.norm(zi, axis=1, keepdims=True)
    ze /= np.linalg.norm(ze, axis=1, keepdims=True)
    s = zi @ ze.T / 0.5
    n = len(s)
    lse_r = np.log(np.exp(s).sum(1))
    lse_c = np.log(np.exp(s).sum(0))
    paper = -1 / n * sum((s[k, k] - lse_r[k]) + (s[k, k] - lse_c[k]) for k in range(n))
    assert loss == pytest.approx(paper, rel=1e-5)
    # a change of the notes, the PRS or the CXR does not alter the step-1 loss
    b2 = dict(b)
    for m in ("note", "prs", "cxr"):
        b2[f"{m}.mean"] = b[f"{m}.mean"] * 3 + 1
        b2[f"{m}.seq"] = b[f"{m}.seq"] * 3 + 1
    assert h.pretrain_loss(b2).item() == loss
    # ... while a change of the CT does
    b3 = dict(b)
    b3["ct.mean"] = b["ct.mean"] * 3 + 1
    assert h.pretrain_loss(b3).item() != pytest.approx(loss)


def test_image_modality_is_ct_then_cxr_then_wsi():
    from encoders.fusion.paper_heads import image_modality
    assert image_modality(tiny().spec()) == "ct"
    assert image_modality(tiny(mods={"wsi": (3, 1), "cxr": (2, 2), "note": (6, 2)}).spec()) == "cxr"
    assert image_modality(tiny(mods={"wsi": (3, 1)}).spec()) == "wsi"
    from encoders.fusion.heads import build_head
    with pytest.raises(ValueError, match="needs an image modality"):
        build_head("concat_mlp", tiny(mods={"note": (6, 2)}).spec(), 1)


@pytest.mark.parametrize("head", ["image_only_mlp", "ehr_only_mlp", "concat_mlp", "contrastive", "cross_attention"])
def test_hidden_widths_scale_with_the_input_width(head):
    from encoders.fusion.heads import build_head
    from encoders.fusion.layers import scaled_widths

    def hidden(spec, **kw):
        mlp = build_head(head, spec, 1, **kw).head
        return [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)][:-1], mlp[0].in_features

    small = {"ehr_dim": 40, "ts_shape": None, "ts_sum_dim": 0, "modalities": {"ct": (64, 4)}}
    big = {"ehr_dim": 400, "ts_shape": None, "ts_sum_dim": 0, "modalities": {"ct": (512, 4)}}
    kw = {"d_k": 32} if head in ("contrastive", "cross_attention") else {}
    (w_s, d_s), (w_b, d_b) = hidden(small, **kw), hidden(big, **kw if not kw else {"d_k": 128})
    assert w_s == list(scaled_widths(d_s)) and w_b == list(scaled_widths(d_b))
    assert d_b > d_s and all(b > s for b, s in zip(w_b, w_s))
    assert scaled_widths(256) == (128, 64) and scaled_widths(20) == (16, 16)


def test_l2_term_is_lambda_theta_squared_while_training_only():
    from encoders.fusion.heads import build_head
    from encoders.fusion.objectives import make_objective
    X = tiny(seed=4)
    y = np.column_stack([np.arange(1, 6) * 10.0, [1, 0, 1, 1, 0]])
    obj = make_objective("survival", survival="weibull").fit_targets(y)
    h = build_head("concat_mlp", X.spec(), obj.n_outputs, l2=0.01, dropout=0.0)
    b = {**X.to_torch(), "y": obj.target_tensor(y)}
    theta2 = sum(float((p.detach() ** 2).sum()) for p in h.parameters())
    h.train()
    with torch.no_grad():
        nll = obj.loss(h(b), b["y"]).item()
        assert h.task_loss(b, obj).item() == pytest.approx(nll + 0.01 * theta2, rel=1e-5)
    h.eval()
    assert h.task_loss(b, obj).item() == pytest.approx(nll, rel=1e-6)


# --------------------------------------------------------------------------- survival losses
def test_cox_loss_equals_torchsurv_breslow_with_ties_and_censoring():
    from torchsurv.loss.cox import neg_partial_log_likelihood
    from encoders.fusion.losses import cox_ph_loss
    rng = np.random.default_rng(5)
    risk = torch.tensor(rng.normal(size=40))
    time = torch.tensor(rng.integers(1, 6, size=40).astype(float))     # many ties
    event = torch.tensor(rng.random(40) < 0.5)
    ours = cox_ph_loss(risk, time, event.double())
    # TorchSurv sums one term per distinct event time (its "mean" averages those); ours averages per event
    with pytest.warns(UserWarning, match="Ties"):
        ref = neg_partial_log_likelihood(risk[:, None], event, time, ties_method="breslow", reduction="sum")
    assert ours.item() * int(event.sum()) == pytest.approx(ref.item(), rel=1e-6)
    # without ties the two means agree
    t2 = torch.arange(40, dtype=torch.float64)
    ref2 = neg_partial_log_likelihood(risk[:, None], event, t2, reduction="mean")
    assert cox_ph_loss(risk, t2, event.double()).item() == pytest.approx(ref2.item(), rel=1e-6)


def test_weibull_objective_loss_is_torchsurvs_and_the_closed_form():
    from torchsurv.loss.weibull import neg_log_likelihood_weibull
    from encoders.fusion.survival import WeibullObjective
    rng = np.random.default_rng(6)
    y = np.column_stack([rng.exponential(300, 50) + 1, rng.random(50) < 0.6])
    obj = WeibullObjective().fit_targets(y)
    out = torch.tensor(rng.normal(size=(50, 2)) * 0.5)
    yt = obj.target_tensor(y).double()
    got = obj.loss(out, yt).item()
    lp = obj.log_params(out)
    ref = neg_log_likelihood_weibull(lp, yt[:, 1].bool(), yt[:, 0]).item()
    # closed form: -[d (log rho - log lam + (rho - 1)(log t - log lam)) - (t / lam)^rho]
    ll, lr = lp[:, 0].numpy(), lp[:, 1].numpy()
    t, d = yt[:, 0].numpy(), yt[:, 1].numpy()
    rho = np.exp(lr)
    closed = -np.mean(d * (lr - ll + (rho - 1) * (np.log(t) - ll)) - (t / np.exp(ll)) ** rho)
    assert got == pytest.approx(ref, rel=1e-6) and got == pytest.approx(closed, rel=1e-6)
    # a minibatch without events (TorchSurv refuses it) gives the closed form's censored terms
    cens = yt.clone()
    cens[:, 1] = 0
    closed0 = np.mean((t / np.exp(ll)) ** rho)
    assert obj.loss(out, cens).item() == pytest.approx(closed0, rel=1e-6)


def test_weibull_curves_match_scipy_and_risk_orders_by_median():
    from scipy.stats import weibull_min
    from encoders.fusion.survival import WeibullObjective
    y = np.column_stack([np.linspace(10, 1000, 40), np.ones(40)])
    obj = WeibullObjective().fit_targets(y)
    out = np.array([[0.0, 0.0], [-1.0, 0.3], [0.5, -0.4]])
    risk, times, surv = obj.predict(out)
    lp = obj.log_params(torch.tensor(out)).numpy()
    lam, rho = np.exp(lp[:, 0]) * obj.unit_, np.exp(lp[:, 1])
    for r in range(3):
        np.testing.assert_allclose(surv[r], weibull_min.sf(times, rho[r], scale=lam[r]), rtol=1e-9)
    np.testing.assert_allclose(risk, -np.log(weibull_min.median(rho, scale=lam)), rtol=1e-9)
    assert np.all(np.diff(surv, axis=1) <= 0)


def test_weibull_head_recovers_a_planted_weibull():
    """Fitting (log lambda, log rho) as free parameters by the objective's loss recovers a planted
    Weibull under independent censoring."""
    from encoders.fusion.survival import WeibullObjective
    rng = np.random.default_rng(7)
    n, lam, rho = 4000, 200.0, 1.7
    t = lam * rng.weibull(rho, n)
    c = rng.uniform(0, 500, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    obj = WeibullObjective().fit_targets(y)
    yt = obj.target_tensor(y).double()
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = obj.loss(theta.expand(n, 2), yt)
        loss.backward()
        return loss

    opt.step(closure)
    lp = obj.log_params(theta[None].detach()).numpy()[0]
    assert math.exp(lp[0]) * obj.unit_ == pytest.approx(lam, rel=0.05)
    assert math.exp(lp[1]) == pytest.approx(rho, rel=0.05)


# --------------------------------------------------------------------------- the models
NAMES = ["image_only_mlp"] + [b + s for b in ("ehr_only_mlp", "concat_mlp", "contrastive", "cross_attention",
                                              "coattention_img", "coattention_ehr") for s in ("", "_fm", "_curated")]


def test_every_paper_model_name_is_registered_with_its_ehr_source():
    import importlib
    root = Path(__file__).resolve().parents[1]
    eps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["mehr_bench.models"]
    sources = {"": "bag", "_fm": "fm", "_curated": "curated"}
    for name in NAMES:
        mod = importlib.import_module(eps[name])
        spec = {s.name: s for s in mod.SPECS}[name]
        m = spec.factory(budget=None, seed=0)
        suffix = next(s for s in ("_fm", "_curated", "") if name.endswith(s))
        assert m.inputs.ehr_source == sources[suffix] and m.survival == "weibull" and not m.inputs.timeline
        assert m.inputs.structured == (not name.startswith("image_only"))
        assert (m.image_priority is None) == name.startswith("ehr_only")
        if name.startswith("coattention"):
            assert m.head_params == {"guide": "image" if name.startswith("coattention_img") else "ehr"}
        assert "Fusion is not one-size-fits-all" in spec.reference


def test_paper_model_reads_one_image_modality_and_refuses_a_task_without_one(tmp_path):
    from types import SimpleNamespace
    from benchmark.errors import UserError
    from encoders.fusion.estimator import FusionModel
    from encoders.fusion.paper_heads import IMAGE_PRIORITY
    m = FusionModel(head="concat_mlp", image_priority=IMAGE_PRIORITY, name="concat_mlp")
    data = SimpleNamespace(task=SimpleNamespace(name="t", modalities=("note", "cxr", "ct", "prs")),
                           cohort=SimpleNamespace(modality_names=lambda: ["cxr", "ct", "note", "prs"]))
    assert m._input_config(data).modalities == ("ct",)
    data.cohort = SimpleNamespace(modality_names=lambda: ["cxr", "note"])        # the cohort lacks the CT
    assert m._input_config(data).modalities == ("cxr",)
    data.task = SimpleNamespace(name="icu/x", modalities=("note", "prs"))
    with pytest.raises(UserError, match="reads an image modality"):
        m._input_config(data)


def test_shap_of_a_weibull_head_explains_its_risk_score():
    """SHAP's coalition values of a Weibull head are the mean risk score (minus the log median time),
    not the mean of its two raw outputs (log scale, log shape), and the block names that scale."""
    from types import SimpleNamespace

    from encoders.fusion.explain import coalition_values
    from encoders.fusion.inputs import FusionInputs
    from encoders.fusion.survival import WeibullObjective
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.exponential(300.0, 50) + 1, rng.random(50) < 0.5])
    obj = WeibullObjective().fit_targets(y)
    X = FusionInputs({"ehr": rng.standard_normal((1, 3)).astype(np.float32)}, ())
    bg = FusionInputs({"ehr": rng.standard_normal((4, 3)).astype(np.float32)}, ())
    w = rng.standard_normal((3, 2))
    head = SimpleNamespace(objective_=obj, _outputs=lambda F: F.arrays["ehr"].astype(np.float64) @ w)
    Z = np.array([[False], [True]])
    v = coalition_values(head, X, bg, {"ehr": ["ehr"]}, Z, 0)
    assert v.shape == (2, 1)
    want_absent = obj.predict(bg.arrays["ehr"] @ w)[0].mean()
    want_present = obj.predict(X.arrays["ehr"] @ w)[0][0]
    np.testing.assert_allclose(v[:, 0], [want_absent, want_present], rtol=1e-9)
    assert "median" in obj.explain_label
