"""EHRT -> Hugging Face LlamaForCausalLM export (encoders/mehrt/hf_export.py) and back.

Oracle: transformers' own LlamaForCausalLM loaded from the exported folder (local files only) must
give our logits; load_llama must give back our exact state dict; the HF tokenizer built from the
exported vocabulary must give our tokenizer's ids.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import polars as pl
import pytest
import torch
from safetensors.torch import save_model

from benchmark.cli import main
from benchmark.errors import UserError
from encoders.mehrt.hf_export import (UnsupportedForLlama, export_llama, find_tokenizer, load_llama, load_tokenizer,
                                      read_checkpoint)
from encoders.mehrt.model import MEHRT, MEHRTConfig
from encoders.mehrt.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


def tiny_model(seed: int = 0, **kw) -> MEHRT:
    """A random tiny MEHRT with non-default RoPE theta, norm eps and random norm weights, so that a
    missed field or a skipped norm changes the logits."""
    torch.manual_seed(seed)
    cfg = MEHRTConfig(**{**dict(vocab_size=97, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128,
                                rope_theta=500.0, norm_eps=1e-6), **kw})
    model = MEHRT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.3)
    return model.eval()


def hf_from(folder):
    return transformers.LlamaForCausalLM.from_pretrained(folder, local_files_only=True).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_identical_logits_and_state(tmp_path, tied, torch_one_thread):
    model = tiny_model(tie_embeddings=tied)
    out = export_llama(model, tmp_path / "hf")
    hf = hf_from(out)
    x = torch.randint(0, 97, (3, 100))
    with torch.no_grad():
        ours, ref = model(x)["logits"], hf(input_ids=x).logits
    torch.testing.assert_close(ref, ours, atol=1e-5, rtol=0)
    # right padding: real positions see no padding in either model
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 60:] = False
    with torch.no_grad():
        ours_m, ref_m = model(x, attention_mask=mask)["logits"], hf(input_ids=x, attention_mask=mask.long()).logits
    torch.testing.assert_close(ref_m[mask], ours_m[mask], atol=1e-5, rtol=0)
    assert sum(p.numel() for p in hf.parameters()) == model.num_parameters()
    assert (hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()) == tied

    back = load_llama(out)
    assert back.config == model.config
    sd, sd_back = model.state_dict(), back.state_dict()
    assert sd.keys() == sd_back.keys()
    for k, v in sd.items():
        assert torch.equal(v, sd_back[k]), k


def test_config_json_reproduces_the_model(tmp_path):
    cfg = tiny_model().config
    conf = json.loads((export_llama(tiny_model(), tmp_path / "hf") / "config.json").read_text())
    # hand oracle: every field that changes Llama's forward pass
    assert {k: conf[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "intermediate_size", "head_dim", "rms_norm_eps",
                                 "max_position_embeddings", "tie_word_embeddings", "attention_bias", "mlp_bias",
                                 "hidden_act", "model_type")} == {
        "vocab_size": 97, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": cfg.d_ff, "head_dim": 16, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 128, "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu", "model_type": "llama"}
    assert conf["rope_parameters"] == {"rope_type": "default", "rope_theta": 500.0}
    assert conf["rope_theta"] == 500.0 and conf["rope_scaling"] is None  # transformers 4.x readers
    assert conf["architectures"] == ["LlamaForCausalLM"] and conf["mehr_bench"]["format"] == 1
    loaded = transformers.AutoConfig.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert loaded.rope_parameters["rope_theta"] == 500.0 and loaded.rms_norm_eps == 1e-6


def test_image_and_prs_configurations_are_refused_by_name(tmp_path):
    images = tiny_model(image_dims=(("ct", 8),))
    with pytest.raises(UnsupportedForLlama, match="MEHRT image tokens have no Llama equivalent"):
        export_llama(images, tmp_path / "a")
    for mode in ("cross_attention", "prefix"):
        with pytest.raises(UnsupportedForLlama, match=f"MEHRT PRS .*prs_mode='{mode}'.* no Llama equivalent"):
            export_llama(tiny_model(prs_dim=5, prs_mode=mode), tmp_path / mode)
    assert not (tmp_path / "a").exists()


def test_structured_only_export_equals_mehrt_without_image_and_prs_inputs(tmp_path, torch_one_thread):
    model = tiny_model(image_dims=(("ct", 8), ("cxr", 4)), prs_dim=5, prs_mode="cross_attention")
    out = export_llama(model, tmp_path / "hf", structured_only=True)
    x = torch.randint(0, 97, (2, 50))
    with torch.no_grad():
        torch.testing.assert_close(hf_from(out)(input_ids=x).logits, model(x)["logits"], atol=1e-5, rtol=0)
    back = load_llama(out)
    assert back.config.image_dims == () and back.config.prs_mode is None
    own = model.state_dict()
    for k, v in back.state_dict().items():
        if k != "modality_emb":
            assert torch.equal(v, own[k]), k
    conf = json.loads((out / "config.json").read_text())
    assert any("image tokens" in s for s in conf["mehr_bench"]["not_exported"])


def toy_events() -> pl.DataFrame:
    """Six subjects: demographics, an ICD code split into hierarchy chunks, a lab with values, gaps."""
    rows = []
    for s in range(6):
        t0 = datetime(2020, 1, 1 + s)
        rows += [(s, None, "GENDER/F" if s % 2 else "GENDER/M", None), (s, None, "RACE/WHITE", None),
                 (s, datetime(1960, 1, 1), "MEDS_BIRTH", None), (s, t0, "ICD10CM/R11.10", None),
                 (s, t0, "LOINC/2160-0", 0.5 + s), (s, datetime(2020, 2, 1 + s), "LOINC/2160-0", 1.0 + 2 * s)]
    return pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                      "numeric_value": pl.Float32}, orient="row")


def test_tokenizer_vocabulary_round_trip(tmp_path):
    ev = toy_events()
    tok = Tokenizer(min_subjects=2).fit(ev)
    model = tiny_model(vocab_size=tok.vocab_size)
    out = export_llama(model, tmp_path / "hf", tokenizer=tok)
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == {t: i for i, t in enumerate(tok.vocab)} and vocab["[PAD]"] == 0 and vocab["[BOS]"] == 1
    assert load_tokenizer(out).state() == tok.state()
    conf = json.loads((out / "tokenizer_config.json").read_text())
    assert conf["bos_token"] == "[BOS]" and conf["mehr_bench"]["time_tokens"]["[T_1w-2w]"] == 7 * 24 * 60
    # our ids of a real timeline == the HF tokenizer's ids of its token strings
    docs = pl.DataFrame({"subject_id": [1, 4], "prediction_time": [datetime(2021, 1, 1)] * 2})
    corpus = tok.tokenize(ev.with_columns(pl.lit(datetime(2021, 1, 1)).alias("prediction_time")), docs, eos=True)
    ids = corpus.doc(0)[0].tolist()
    tokens = tok.decode(ids)
    assert "ICD10CM/R11" in tokens and "ICD10CM/10" in tokens and "[T_1mt-3mt]" in tokens
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert hf_tok.convert_tokens_to_ids(tokens) == ids
    assert hf_tok(" ".join(tokens), add_special_tokens=False)["input_ids"] == ids
    assert hf_tok.convert_tokens_to_ids(["NOT/A/CODE"]) == [tok.token_id("[UNK]")]
    with pytest.raises(UserError, match="tokenizer has"):
        export_llama(tiny_model(), tmp_path / "bad", tokenizer=tok)


def test_transformers_missing_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(UserError, match="needs the transformers package"):
        export_llama(tiny_model(), tmp_path / "hf")
    monkeypatch.undo()
    export_llama(tiny_model(), tmp_path / "hf")
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert isinstance(load_llama(tmp_path / "hf"), MEHRT)  # loading needs no transformers


def stage_folder(root, model: MEHRT, stage: str = "1"):
    """A pretraining stage folder as run_curriculum writes it (model.safetensors + meta.json)."""
    root.mkdir(parents=True)
    save_model(model, str(root / "model.safetensors"))
    (root / "meta.json").write_text(json.dumps({"stage": stage, "config": model.config.to_dict()}))
    return root


def test_cli_export_hf_checkpoint(tmp_path, capsys, torch_one_thread):
    tok = Tokenizer(min_subjects=2).fit(toy_events())
    model = tiny_model(vocab_size=tok.vocab_size)
    ckpt = stage_folder(tmp_path / "ckpt" / "s1-2-abc", model)
    tok.save(tmp_path / "tokenizer.json")
    out = tmp_path / "hf"
    assert main(["export", "hf", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert "no tokenizer found" in capsys.readouterr().err and not out.exists()
    assert main(["export", "hf", "--checkpoint", str(ckpt / "model.safetensors"), "--out", str(out),
                 "--tokenizer", str(tmp_path / "tokenizer.json")]) == 0
    assert "LlamaForCausalLM" in capsys.readouterr().out
    assert read_checkpoint(ckpt)[0].config == load_llama(out).config
    x = torch.randint(0, tok.vocab_size, (1, 30))
    with torch.no_grad():
        torch.testing.assert_close(hf_from(out)(input_ids=x).logits, model(x)["logits"], atol=1e-5, rtol=0)
    # a second export onto the same folder, an image model, or both flags: refused, exit 2
    assert main(["export", "hf", "--checkpoint", str(ckpt), "--out", str(out),
                 "--tokenizer", str(tmp_path / "tokenizer.json")]) == 2
    assert "not empty" in capsys.readouterr().err
    img = stage_folder(tmp_path / "ckpt" / "s3-img",
                       tiny_model(vocab_size=tok.vocab_size, image_dims=(("ct", 8),)), "3")
    assert main(["export", "hf", "--checkpoint", str(img), "--out", str(tmp_path / "x"),
                 "--tokenizer", str(tmp_path / "tokenizer.json")]) == 2
    err = capsys.readouterr().err
    assert "MEHRT image tokens have no Llama equivalent" in err and "--structured-only" in err
    assert main(["export", "hf", "--checkpoint", str(img), "--model", "ehrt", "--out", str(tmp_path / "y")]) == 2
    assert main(["export", "hf", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "z")]) == 2
    assert "meta.json is missing" in capsys.readouterr().err


def test_cached_ehrt_checkpoint_exports_with_its_tokenizer(small_cohort, tmp_path, monkeypatch, torch_one_thread):
    """Real pretraining on a synthetic cohort: `--model ehrt` and `--checkpoint` of the cached stage
    (tokenizer found by its cache key) give the same folder; HF logits on a real timeline = ours."""
    from encoders.mehrt import pipeline
    from encoders.mehrt.corpora import mehrt_cache, prepare_corpora

    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(pipeline.LEVELS, "smoke", ("tiny", 3))  # 3 Stage-1 steps
    pipeline._MODELS.clear()
    a = tmp_path / "a"
    assert main(["export", "hf", "--model", "ehrt", "--data", str(small_cohort.root), "--budget", "smoke",
                 "--out", str(a)]) == 0
    (ckpt,) = [p for p in (mehrt_cache() / "ckpt").glob("s1-*") if p.is_dir()]  # not the .lock file
    meta = json.loads((ckpt / "meta.json").read_text())
    assert find_tokenizer(ckpt, meta) is not None
    b = tmp_path / "b"
    assert main(["export", "hf", "--checkpoint", str(ckpt), "--out", str(b)]) == 0
    assert (a / "vocab.json").read_text() == (b / "vocab.json").read_text()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    corpora = prepare_corpora(small_cohort)
    ids = torch.as_tensor(corpora.held_out.doc(0)[0][:120].astype("int64"))[None]
    ours = load_llama(b)
    with torch.no_grad():
        torch.testing.assert_close(hf_from(b)(input_ids=ids).logits, ours(ids)["logits"], atol=1e-5, rtol=0)
    hf_tok = transformers.AutoTokenizer.from_pretrained(b, local_files_only=True)
    assert hf_tok.convert_tokens_to_ids(corpora.tokenizer.decode(ids[0])) == ids[0].tolist()
    assert main(["export", "hf", "--model", "mehrt", "--data", str(small_cohort.root), "--budget", "smoke",
                 "--out", str(tmp_path / "c")]) == 2
