"""SHAP for the fusion heads grouped by modality (encoders/fusion/explain.py): the linear closed
form, a second (model-agnostic) implementation, and planted cohorts where one modality carries the
whole signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.fusion.inputs import FusionInputs

MODS = {"cxr": (8, 3), "note": (12, 2)}


def planted(n: int, signal: str, seed: int = 0) -> tuple[FusionInputs, np.ndarray]:
    """Standardized inputs where the binary label depends on one group only: "ehr" (column 0),
    "time_series" (ts_sum column 0 and every bin of series feature 0) or a side modality (dim 0)."""
    rng = np.random.default_rng(seed)
    a = {"ehr": rng.normal(size=(n, 6)).astype(np.float32), "ts": rng.normal(size=(n, 4, 3)).astype(np.float32),
         "ts_obs": np.ones((n, 4), bool), "ts_sum": rng.normal(size=(n, 5)).astype(np.float32)}
    for m, (d, k) in MODS.items():
        a[f"{m}.present"] = rng.random(n) > 0.2
        a[f"{m}.seq"] = rng.normal(size=(n, k, d)).astype(np.float32) * a[f"{m}.present"][:, None, None]
        a[f"{m}.seq_mask"] = np.repeat(a[f"{m}.present"][:, None], k, 1)
        a[f"{m}.mean"] = a[f"{m}.seq"].mean(1).astype(np.float32)
    u = rng.normal(size=n)
    if signal == "ehr":
        a["ehr"][:, 0] = u
    elif signal == "time_series":
        a["ts_sum"][:, 0] = u
        a["ts"][:, :, 0] = u[:, None]
    else:
        pres = a[f"{signal}.present"]
        a[f"{signal}.seq"][:, :, 0] = np.where(pres, u, 0)[:, None]
        a[f"{signal}.mean"][:, 0] = np.where(pres, u, 0)
        u = np.where(pres, u, 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-4 * u))).astype(np.int8)
    return FusionInputs(a, tuple(MODS)), y


def _fit(head: str, X: FusionInputs, y: np.ndarray, **kw):
    from encoders.fusion.estimator import FusionHead
    n = len(y)
    tr, tu = np.arange(int(0.8 * n)), np.arange(int(0.8 * n), n)
    return FusionHead(head=head, kind="binary", seed=0, **kw).fit(X.take(tr), y[tr], X.take(tu), y[tu])


def test_linear_shap_is_the_closed_form():
    """SHAP of a linear model = w * (x - E_background[x]) on the head's input features; the rows'
    SHAP values plus the background's mean output add up to the model output (local accuracy)."""
    from encoders.fusion.explain import linear_shap
    X, y = planted(600, "cxr", seed=1)
    est = _fit("concat_lr", X, y, l1_ratio=0.0)
    Xe, B = X.take(np.arange(500, 600)), X.take(np.arange(0, 400))
    values, group, _ = linear_shap(est.module_, Xe, B)
    with torch.no_grad():
        F = est.module_.features(Xe.to_torch()).numpy().astype(float)
        Fb = est.module_.features(B.to_torch()).numpy().astype(float)
    w = est.module_.linear.weight.detach().numpy()[0].astype(float)
    np.testing.assert_allclose(values[0], w * (F - Fb.mean(0)), atol=1e-5)
    out = est._outputs(Xe)[:, 0]
    base = est._outputs(B)[:, 0].mean()
    np.testing.assert_allclose(values[0].sum(1) + base, out, atol=1e-4)
    assert group.count("cxr") == MODS["cxr"][0] + 1 and group[0] == "ehr"


def test_exact_group_shap_agrees_with_linear_block_sums():
    """Two implementations: the model-agnostic exact group explainer on the linear head equals the
    LinearExplainer's values summed per modality block (additivity of a linear model)."""
    from encoders.fusion.explain import group_shap_exact, linear_shap
    X, y = planted(500, "note", seed=2)
    est = _fit("concat_lr", X, y, l1_ratio=0.0)
    Xe, B = X.take(np.arange(450, 470)), X.take(np.arange(0, 16))
    lin, group, _ = linear_shap(est.module_, Xe, B)
    exact, names = group_shap_exact(est, Xe, B)
    g = np.asarray(group)
    blocks = np.stack([lin[:, :, g == name].sum(2) for name in names], 2)
    np.testing.assert_allclose(exact, blocks, atol=2e-4)


@pytest.mark.parametrize("signal", ["cxr", "note", "ehr", "time_series"])
def test_planted_modality_dominates_linear(signal):
    from encoders.fusion.explain import modality_shap
    X, y = planted(1200, signal, seed=3)
    est = _fit("concat_lr", X, y)
    block = modality_shap(est, X.take(np.arange(1000, 1200)), X.take(np.arange(1000)), "binary")
    top = block["top_features"]
    assert top[0]["feature"] == signal, top
    assert top[0]["share"] > 0.6 and top[0]["mean_abs_shap"] > 3 * top[1]["mean_abs_shap"]
    assert "LinearExplainer" in block["method"] and block["n_rows"] == 200
    assert {r["feature"] for r in top} == {"ehr", "time_series", "cxr", "note"}


def test_planted_modality_dominates_nonlinear_head():
    """A non-linear head (late fusion MLPs) explained by the exact group explainer."""
    from encoders.fusion.explain import modality_shap
    X, y = planted(800, "cxr", seed=4)
    est = _fit("late_fusion", X, y, max_epochs=15)
    block = modality_shap(est, X.take(np.arange(700, 800)), X.take(np.arange(640)), "binary", max_evals=128 * 60)
    top = block["top_features"]
    assert "exact SHAP over modality groups" in block["method"]
    assert block["n_rows"] == 60 and block["n_background"] == 8  # 2^4 x 8 = 128 rows each
    assert top[0]["feature"] == "cxr" and top[0]["share"] > 0.5, top


@pytest.mark.slow
def test_enumerated_group_shap_equals_shap_exact_explainer():
    """The enumeration equals the shap library's ExactExplainer on the same coalition game (slow:
    the library JIT-compiles on its first call)."""
    import shap
    from encoders.fusion.explain import coalition_values, group_shap_exact, groups_of
    X, y = planted(400, "cxr", seed=5)
    est = _fit("late_fusion", X, y, max_epochs=5)
    Xe, B = X.take(np.arange(380, 384)), X.take(np.arange(0, 16))
    ours, names = group_shap_exact(est, Xe, B)
    groups = groups_of(Xe)
    for i in range(len(Xe)):
        explainer = shap.ExactExplainer(lambda Z, i=i: coalition_values(est, Xe, B, groups, Z, i)[:, 0],
                                        shap.maskers.Independent(np.zeros((1, len(names))), max_samples=1))
        lib = np.asarray(explainer(np.ones((1, len(names)))).values)[0]
        np.testing.assert_allclose(ours[0, i], lib, atol=1e-6)
