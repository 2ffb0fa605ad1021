"""Export EHRT as a Hugging Face `LlamaForCausalLM` folder (weights, config, vocabulary), and back.

    export_llama(model_or_checkpoint, out_dir, tokenizer=...)   # -> out_dir (an HF model folder)
    transformers.LlamaForCausalLM.from_pretrained(out_dir)      # identical logits to ours
    load_llama(out_dir)                                         # -> our MEHRT, equal state dict

Why this is exact. Without image placeholders and PRS, `model.MEHRT` *is* a Llama (pre-norm blocks,
RMSNorm with float32 statistics and the weight applied after the cast back, rotate-half RoPE with
``theta^(-2i/hd)`` frequencies, softmax scale 1/sqrt(head_dim), GQA where query head h reads kv
head h // group, SwiGLU gate/up/down, final RMSNorm, tied embeddings, no biases anywhere).
tests/test_mehrt_model.py compares the two forward passes; the differences that remain are names
and layout, undone here:

* our fused ``attn.qkv`` [q | k | v] rows -> ``q_proj``, ``k_proj``, ``v_proj`` (our RoPE already
  rotates the two halves of a head as HF's ``rotate_half`` does, so no q/k row permutation);
* ``tok_emb`` -> ``embed_tokens``; with tied embeddings only ``embed_tokens`` is stored (the HF
  convention, ``tie_word_embeddings: true``); untied, ``lm_head.weight`` too;
* ``max_position_embeddings`` = our ``max_seq_len`` (RoPE needs no table in HF; positions past it
  work there but were never trained).

What Llama cannot express, and is refused by name (`UnsupportedForLlama`): MEHRT's image tokens
(a placeholder's input is a projection of a study embedding plus a modality embedding, not a token
embedding) and the PRS pathway (soft-token prefix or cross-attention sublayers). With
``structured_only=True`` a MEHRT exports its structured backbone only: then the Llama's logits equal
MEHRT's called with ``input_ids`` alone (no ``image_index`` / ``prs``), which is exactly how EHRT runs.

Inputs that give identical logits: ``input_ids`` (and a right-padding ``attention_mask``: padded
positions never influence real ones in either model). Packed documents (our ``segment_ids``) have
no Llama equivalent inside one row; pass them as separate rows.

Transformers is optional: only `export_llama` imports it (for `LlamaConfig`, so the written
config.json is exactly what transformers reads) and the `tokenizers` library that comes with it;
`load_llama` needs torch and safetensors only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file

from benchmark.artifacts import atomic_dir
from benchmark.errors import UserError
from benchmark.vocabulary import IMAGE_MODALITIES
from encoders.mehrt.model import MEHRT, MEHRTConfig
from encoders.mehrt.tokenizer import (AGE_TOKENS, BOS, EOS, PAD, PREFIX_LEN, TIME_BUCKETS, UNK, VALUE_TOKENS,
                                      Tokenizer, placeholder)

EXPORT_FORMAT = 1  # config.json "mehr_bench.format": bump when the folder layout changes
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
MEHR_TOKENIZER_FILE = "mehr_tokenizer.json"  # our Tokenizer.save state: vocabulary, value bins, hierarchy
EXTRA_INPUTS_FIX = ("export the structured backbone with structured_only=True (CLI --structured-only): "
                    "its logits equal this model's without image and PRS inputs, as EHRT runs")


class UnsupportedForLlama(UserError):
    """A MEHRT part that has no Llama equivalent (image tokens, PRS pathway)."""


# ------------------------------------------------------------------------------------ config
def refusals(cfg: MEHRTConfig) -> list[str]:
    """Names of the parts of a config that a Llama cannot express (empty: exportable as is).

    Args:
        cfg: a MEHRT config.

    Returns:
        One sentence per part.
    """
    out = []
    if cfg.image_dims:
        out.append("MEHRT image tokens have no Llama equivalent (a placeholder's input is a projection of "
                   f"a study embedding: {', '.join(n for n, _ in cfg.image_dims)})")
    if cfg.prs_mode is not None:
        kind = "soft-token prefix" if cfg.prs_mode == "prefix" else "cross-attention sublayers"
        out.append(f"MEHRT PRS {kind} (prs_mode={cfg.prs_mode!r}) have no Llama equivalent")
    return out


def structured_config(cfg: MEHRTConfig) -> MEHRTConfig:
    """The EHR-only config of a MEHRT (no images, no PRS): what the Llama export holds."""
    d = cfg.to_dict()
    d.update(image_dims=[], prs_dim=None, prs_mode=None)
    return MEHRTConfig.from_dict(d)


def llama_fields(cfg: MEHRTConfig) -> dict[str, Any]:
    """LlamaConfig keyword arguments that reproduce an EHR-only MEHRT exactly.

    Args:
        cfg: an exportable config (`refusals(cfg)` empty).

    Returns:
        The fields (transformers 5 names; `export_llama` also writes the 4.x ``rope_theta``).
    """
    return dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False, hidden_act="silu",
        # Our dropout also hits the residual branches, which Llama has no place for; inference is
        # unaffected, and the exact value is kept under "mehr_bench" for load_llama.
        attention_dropout=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2, initializer_range=0.02)


def config_from_llama(conf: dict[str, Any], file: Path) -> MEHRTConfig:
    """Our config from an HF Llama config.json dict; UserError for a Llama we cannot represent.

    Args:
        conf: the parsed config.json.
        file: its path (for error messages).

    Returns:
        The MEHRT config (EHR-only).
    """
    def need(key: str, ok, what: str) -> None:
        if not ok(conf.get(key)):
            raise UserError(f"{key}={conf.get(key)!r}: MEHRT needs {what}", file=file, field=key,
                            fix="load a Llama with no biases, SiLU, default RoPE and head_dim = hidden_size / heads")

    need("model_type", lambda v: v == "llama", "a Llama model")
    need("attention_bias", lambda v: not v, "attention_bias false")
    need("mlp_bias", lambda v: not v, "mlp_bias false")
    need("hidden_act", lambda v: v in (None, "silu"), "hidden_act silu")
    rope = conf.get("rope_parameters") or {"rope_type": "default", "rope_theta": conf.get("rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default" or conf.get("rope_scaling"):
        raise UserError(f"RoPE scaling {rope!r} is not MEHRT's plain RoPE", file=file, field="rope_parameters",
                        fix="load a Llama with rope_type 'default' and no rope_scaling")
    hidden, heads = int(conf["hidden_size"]), int(conf["num_attention_heads"])
    need("head_dim", lambda v: v in (None, hidden // heads), f"head_dim = {hidden // heads}")
    extra = conf.get("mehr_bench", {}).get("mehrt_config", {})
    return MEHRTConfig(
        vocab_size=int(conf["vocab_size"]), d_model=hidden, n_layers=int(conf["num_hidden_layers"]), n_heads=heads,
        n_kv_heads=int(conf.get("num_key_value_heads") or heads), d_ff=int(conf["intermediate_size"]),
        max_seq_len=int(conf["max_position_embeddings"]), rope_theta=float(rope["rope_theta"]),
        norm_eps=float(conf["rms_norm_eps"]), tie_embeddings=bool(conf.get("tie_word_embeddings", False)),
        dropout=float(extra.get("dropout", 0.0)))


# ------------------------------------------------------------------------------------ weights
def to_llama_state(model: MEHRT, cfg: MEHRTConfig) -> dict[str, torch.Tensor]:
    """Our backbone weights under HF Llama names (fresh contiguous tensors; safetensors needs that).

    Args:
        model: the MEHRT.
        cfg: the config exported (its EHR-only part; image/PRS weights are not read).

    Returns:
        HF name -> tensor.
    """
    kv = cfg.n_kv_heads * cfg.head_dim
    state = {"model.embed_tokens.weight": model.tok_emb.weight, "model.norm.weight": model.norm.weight}
    if not cfg.tie_embeddings:
        state["lm_head.weight"] = model.lm_head.weight
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.split([cfg.d_model, kv, kv])
        p = f"model.layers.{i}."
        state.update({
            p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
            p + "self_attn.o_proj.weight": block.attn.out.weight,
            p + "mlp.gate_proj.weight": block.mlp.gate.weight, p + "mlp.up_proj.weight": block.mlp.up.weight,
            p + "mlp.down_proj.weight": block.mlp.down.weight,
            p + "input_layernorm.weight": block.attn_norm.weight,
            p + "post_attention_layernorm.weight": block.mlp_norm.weight})
    return {k: t.detach().to("cpu").contiguous().clone() for k, t in state.items()}


def from_llama_state(state: dict[str, torch.Tensor], cfg: MEHRTConfig, file: Path) -> dict[str, torch.Tensor]:
    """Inverse of `to_llama_state`: HF Llama names -> our state dict (fused qkv again).

    Args:
        state: HF name -> tensor (``lm_head.weight`` optional when tied).
        cfg: our config.
        file: the weights file (for error messages).

    Returns:
        Our name -> tensor (``lm_head.weight`` is the embedding when tied).
    """
    state = dict(state)

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise UserError(f"weight {name} is missing", file=file, field=name,
                            fix="export the model again with `python -m benchmark export hf`")
        return state.pop(name)

    out = {"tok_emb.weight": take("model.embed_tokens.weight"), "norm.weight": take("model.norm.weight")}
    head = state.pop("lm_head.weight", None)
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["tok_emb.weight"]
    else:
        out["lm_head.weight"] = head if head is not None else take("lm_head.weight")
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        out.update({
            f"blocks.{i}.attn.qkv.weight": torch.cat([take(p + f"self_attn.{n}_proj.weight") for n in "qkv"]),
            f"blocks.{i}.attn.out.weight": take(p + "self_attn.o_proj.weight"),
            f"blocks.{i}.mlp.gate.weight": take(p + "mlp.gate_proj.weight"),
            f"blocks.{i}.mlp.up.weight": take(p + "mlp.up_proj.weight"),
            f"blocks.{i}.mlp.down.weight": take(p + "mlp.down_proj.weight"),
            f"blocks.{i}.attn_norm.weight": take(p + "input_layernorm.weight"),
            f"blocks.{i}.mlp_norm.weight": take(p + "post_attention_layernorm.weight")})
    if state:
        raise UserError(f"unexpected weights {sorted(state)[:5]}", file=file, field=sorted(state)[0],
                        fix="MEHRT loads plain Llama weights only (no biases, no extra modules)")
    out["modality_emb"] = torch.zeros(0, cfg.d_model)  # EHR-only: an empty table (as EHRT has)
    return out


# ------------------------------------------------------------------------------------ tokenizer
def tokenizer_description(tok: Tokenizer) -> dict[str, Any]:
    """How MEDS events become ids, as data (written into tokenizer_config.json "mehr_bench").

    Args:
        tok: the fitted tokenizer.

    Returns:
        A JSON-able dict.
    """
    hierarchy = tok.hierarchy if tok.hierarchy is not None else {"ICD*/ (every ICD vocabulary)": 3}
    return {
        "specials": {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK},
        "prefix": f"{PREFIX_LEN} tokens open every timeline: [BOS], the first GENDER/, RACE/ and ETHNICITY/ static "
                  "code (or [UNK]), and the 5-year age bucket at the first timed event (AGE//a-b, AGE//90+)",
        "codes": "one token per MEDS event, the code itself; a code of a hierarchical family splits into its "
                 "category (family prefix + first n characters, dot removed) then the rest in chunks of 2 "
                 "characters (ICD10CM/R11.10 -> ICD10CM/R11, ICD10CM/10); MEDS_BIRTH is no token; a token "
                 f"seen in fewer than {tok.min_subjects} training subjects is [UNK]",
        "hierarchy": hierarchy,
        "values": f"a numeric value adds {VALUE_TOKENS[0]}..{VALUE_TOKENS[-1]} after its code: the number of "
                  "the code's 9 training-split decile cut points <= value (cut points in mehr_tokenizer.json "
                  "'bins'; codes without bins get no value token)",
        "time": "an event >= 5 minutes after the previous one is preceded by one interval token; events at "
                "the same time share it; lower bounds in minutes:",
        "time_tokens": {tokname: lo for lo, tokname in TIME_BUCKETS},
        "age_tokens": list(AGE_TOKENS),
        "image_placeholders": [placeholder(m) for m in IMAGE_MODALITIES],
        "image_placeholders_note": "in the vocabulary for MEHRT; the Llama export never sees them (EHRT drops "
                                   "image studies, leaving exactly the structured sequence)",
        "order": "events by time, then code, then value; pretraining documents end with [EOS]",
        "source": "encoders/mehrt/tokenizer.py (MEHR-Bench); Tokenizer.load('mehr_tokenizer.json') reproduces it",
    }


def _write_tokenizer(tok: Tokenizer, folder: Path, max_len: int) -> None:
    """vocab.json, mehr_tokenizer.json, tokenizer.json (tokenizers WordLevel) and tokenizer_config.json."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tok.vocab)}
    (folder / VOCAB_FILE).write_text(json.dumps(vocab, indent=0, ensure_ascii=False))
    tok.save(folder / MEHR_TOKENIZER_FILE)
    hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Tokens are whitespace-separated when a string is encoded; MEDS codes with spaces (some
    # MIMIC-IV medication names) need convert_tokens_to_ids on a token list instead.
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf.save(str(folder / "tokenizer.json"))
    spaced = sum(any(c.isspace() for c in t) for t in tok.vocab)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
        "pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK,
        "mehr_bench": {**tokenizer_description(tok), "tokens_with_whitespace": spaced,
                       "tokenizer_hash": tok.hash()}}, indent=1, ensure_ascii=False))


def _readme(cfg: MEHRTConfig, tok: Tokenizer | None, source: str, dropped: list[str]) -> str:
    vocab = "No tokenizer was exported with these weights: token ids have no names here."
    if tok is not None:
        vocab = (f"`{VOCAB_FILE}` maps each token to its id ({tok.vocab_size} tokens; {PAD}=0, {BOS}=1, {EOS}=2, "
                 f"{UNK}=3). `{MEHR_TOKENIZER_FILE}` is the full MEHR-Bench tokenizer state (value-bin cut points, "
                 "code hierarchy); `tokenizer_config.json` \"mehr_bench\" says how MEDS events map to tokens.")
    lines = [
        "# EHRT as a Hugging Face Llama (exported by MEHR-Bench)", "",
        f"Source: {source}. A decoder-only transformer over tokenized MEDS timelines, exported with "
        "`encoders.mehrt.hf_export.export_llama`; loads with `transformers.LlamaForCausalLM.from_pretrained` "
        "and gives the logits of MEHR-Bench's model (tested to 1e-5 in float32).", "",
        f"Size: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads ({cfg.n_kv_heads} kv heads), "
        f"SwiGLU {cfg.d_ff}, vocabulary {cfg.vocab_size}, trained context {cfg.max_seq_len} tokens.", "",
        "## Tokens", "", vocab, "",
        "A timeline reads `[BOS] GENDER/F RACE/x ETHNICITY/x AGE//60-64 [T_1w-2w] ICD10CM/R11 ICD10CM/10 "
        "LOINC/2160-0 [Q4] ... [EOS]`: demographics first, one token per event (ICD codes in hierarchy "
        "chunks), a decile token [Q0]..[Q9] after a numeric value, a time-interval token before an event >= 5 "
        "minutes after the previous one.", "",
        "```python",
        "from transformers import AutoTokenizer, LlamaForCausalLM",
        "model = LlamaForCausalLM.from_pretrained(folder)",
        "tok = AutoTokenizer.from_pretrained(folder)",
        "ids = tok.convert_tokens_to_ids(['[BOS]', 'GENDER/F', ...])  # codes may contain spaces: use tokens",
        "```",
    ]
    if dropped:
        lines += ["", "## Not exported", "", *(f"* {d}" for d in dropped),
                  "", "The logits equal MEHRT's without image and PRS inputs."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ export / load
def _require_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("the Hugging Face export needs the transformers package", field="transformers",
                        fix="pip install 'transformers>=4.45' (or mehr-bench's dev extra)") from None
    return transformers


def read_checkpoint(path: Path) -> tuple[MEHRT, dict]:
    """A MEHRT from a pretraining stage folder (model.safetensors + meta.json) or its weights file.

    Args:
        path: cache_dir()/mehrt/ckpt/<key>/ or the model.safetensors inside it.

    Returns:
        (model in eval mode, meta.json contents).
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    meta_file, weights = folder / "meta.json", folder / WEIGHTS_FILE
    for f in (meta_file, weights):
        if not f.is_file():
            raise UserError(f"{f.name} is missing: not a MEHRT pretraining stage folder", file=folder,
                            fix="pass a folder ~/.cache/mehr-bench/mehrt/ckpt/s1-... (model.safetensors + meta.json), "
                                "or --model ehrt to pretrain / reuse one")
    meta = json.loads(meta_file.read_text())
    cfg = MEHRTConfig.from_dict(meta["config"])
    model = MEHRT(cfg)
    load_model(model, str(weights), strict=True)
    return model.eval(), meta


def find_tokenizer(stage_folder: Path, meta: dict) -> Path | None:
    """The tokenizer a cached Stage-1 checkpoint was trained with, found by recomputing its cache key.

    The stage key hashes (data fingerprint, tokenizer hash, config, stage, training settings); the
    tokenizers cached next to the checkpoints (cache_dir()/mehrt/<fingerprint>/tok-*/) are tried in
    turn, and the one whose key equals the folder's name is the one. Later stages hash their parent
    stage too and are not searched.

    Args:
        stage_folder: cache_dir()/mehrt/ckpt/<key>.
        meta: its meta.json.

    Returns:
        The tokenizer.json path, or None.
    """
    from encoders.mehrt.pretrain import stage_key
    from encoders.mehrt.trainer import TrainConfig

    if meta.get("stage") != "1" or "train_config" not in meta:
        return None
    cfg, train = MEHRTConfig.from_dict(meta["config"]), TrainConfig(**meta["train_config"])
    for cand in sorted(stage_folder.resolve().parent.parent.glob("*/tok-*/tokenizer.json")):
        fingerprint = cand.parent.parent.name
        try:
            tok_hash = Tokenizer.load(cand).hash()
        except (ValueError, KeyError, OSError):
            continue  # another tokenizer version: not this checkpoint's
        if stage_key(fingerprint, tok_hash, cfg, "1", train, None) == stage_folder.name:
            return cand
    return None


def export_llama(model_or_checkpoint: MEHRT | str | Path, out_dir: str | Path, *,
                 tokenizer: Tokenizer | str | Path | None = None, structured_only: bool = False,
                 source: str | None = None, require_tokenizer: bool = False) -> Path:
    """Write an HF `LlamaForCausalLM` folder reproducing an EHR-only MEHRT (EHRT) exactly.

    Files: config.json (LlamaConfig fields + a "mehr_bench" block), model.safetensors, README.md and,
    with a tokenizer, vocab.json, mehr_tokenizer.json, tokenizer.json and tokenizer_config.json.

    Args:
        model_or_checkpoint: a MEHRT, or a pretraining stage folder / its model.safetensors.
        out_dir: the folder to create (must not exist, or be empty); written atomically.
        tokenizer: the model's tokenizer (object or tokenizer.json); None = found next to a cached
            Stage-1 checkpoint (`find_tokenizer`), else no vocabulary is written.
        structured_only: export a MEHRT's EHR-only backbone (drop image projections and PRS).
        source: what the weights are (README text); default from the checkpoint.
        require_tokenizer: refuse to export without a tokenizer (the CLI does).

    Returns:
        out_dir.

    Raises:
        UnsupportedForLlama: the model has image tokens or a PRS pathway and structured_only is False.
        UserError: transformers missing, an unreadable checkpoint, a tokenizer that does not fit, or
            out_dir not empty.
    """
    transformers = _require_transformers()
    out_dir = Path(out_dir)
    if isinstance(model_or_checkpoint, MEHRT):
        model, meta = model_or_checkpoint, {}
        source = source or "a MEHRT model object"
    else:
        ckpt = Path(model_or_checkpoint)
        model, meta = read_checkpoint(ckpt)
        source = source or f"MEHR-Bench pretraining stage {meta.get('stage', '?')} checkpoint {ckpt.name}"
        if tokenizer is None:
            tokenizer = find_tokenizer(ckpt.parent if ckpt.is_file() else ckpt, meta)
    cfg = model.config
    dropped = refusals(cfg)
    if dropped and not structured_only:
        raise UnsupportedForLlama("; ".join(dropped), field="image_dims" if cfg.image_dims else "prs_mode",
                                  fix=EXTRA_INPUTS_FIX)
    cfg = structured_config(cfg)
    if tokenizer is None and require_tokenizer:
        raise UserError("no tokenizer found for this checkpoint (only cached Stage-1 checkpoints are matched)",
                        file=model_or_checkpoint, field="--tokenizer",
                        fix="pass --tokenizer ~/.cache/mehr-bench/mehrt/<fingerprint>/tok-v*/tokenizer.json of the "
                            "cohort the model was pretrained on")
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        try:
            tokenizer = Tokenizer.load(Path(tokenizer))
        except (ValueError, KeyError, OSError) as e:
            raise UserError(f"cannot read the tokenizer: {e}", file=tokenizer,
                            fix="pass the tokenizer.json of the cohort the model was pretrained on") from None
    if tokenizer is not None and tokenizer.vocab_size != cfg.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.vocab_size} tokens, the model {cfg.vocab_size}",
                        field="tokenizer", fix="pass the tokenizer the model was pretrained with")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError("the output folder exists and is not empty", file=out_dir, field="--out",
                        fix="choose a new folder or delete this one")

    llama = transformers.LlamaConfig(**llama_fields(cfg)).to_dict()
    # transformers < 5 reads rope_theta / rope_scaling at the top level (5.x reads rope_parameters).
    llama.update(rope_theta=float(cfg.rope_theta), rope_scaling=None, architectures=["LlamaForCausalLM"],
                 dtype=str(model.tok_emb.weight.dtype).removeprefix("torch."))
    llama["mehr_bench"] = {"format": EXPORT_FORMAT, "mehrt_config": cfg.to_dict(), "source": source,
                           "not_exported": dropped,
                           "tokenizer_hash": tokenizer.hash() if tokenizer is not None else None,
                           **({"stage": meta["stage"]} if "stage" in meta else {})}
    state = to_llama_state(model, cfg)
    with atomic_dir(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(llama, indent=1, sort_keys=True))
        (tmp / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, indent=1))
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            _write_tokenizer(tokenizer, tmp, cfg.max_seq_len)
        (tmp / "README.md").write_text(_readme(cfg, tokenizer, source, dropped))
    return out_dir


def load_llama(folder: str | Path) -> MEHRT:
    """Our MEHRT (EHR-only) from an HF Llama folder: the inverse of `export_llama`.

    Needs no transformers. Any Llama that MEHRT can represent loads (no biases, SiLU, default RoPE).

    Args:
        folder: a folder with config.json and model.safetensors.

    Returns:
        The model in eval mode (float32 unless the weights are another dtype).
    """
    folder = Path(folder)
    conf_file, weights = folder / "config.json", folder / WEIGHTS_FILE
    for f in (conf_file, weights):
        if not f.is_file():
            raise UserError(f"{f.name} is missing", file=folder,
                            fix="pass a folder written by `python -m benchmark export hf` (or save_pretrained)")
    cfg = config_from_llama(json.loads(conf_file.read_text()), conf_file)
    state = from_llama_state(load_file(str(weights)), cfg, weights)
    dtype = state["tok_emb.weight"].dtype
    model = MEHRT(cfg).to(dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The MEHR-Bench tokenizer stored with an export (mehr_tokenizer.json).

    Args:
        folder: an export folder.

    Returns:
        The tokenizer.
    """
    f = Path(folder) / MEHR_TOKENIZER_FILE
    if not f.is_file():
        raise UserError(f"{MEHR_TOKENIZER_FILE} is missing (exported without a tokenizer)", file=folder,
                        fix="export again with the tokenizer (--tokenizer PATH)")
    return Tokenizer.load(f)


# ------------------------------------------------------------------------------------ registry models
def export_registered(name: str, cohort, budget: str, out_dir: Path, *, structured_only: bool = False,
                      log=None) -> Path:
    """Export a registered EHRT/MEHRT model's pretrained weights (pretrained now if not cached).

    Args:
        name: registry name (`ehrt`, `ehrt-<size>`, or a MEHRT with structured_only).
        cohort: the Cohort it is pretrained on (its training split).
        budget: budget level (sets size and steps as `run` does).
        out_dir: the folder to create.
        structured_only: as in `export_llama`.
        log: progress callback.

    Returns:
        out_dir.
    """
    from benchmark.model_api import BUDGETS
    from benchmark.registry import get_model
    from encoders.mehrt.pipeline import MEHRTPipeline, load_pretrained

    pipe = get_model(name).factory(BUDGETS[budget], seed=0)
    if not isinstance(pipe, MEHRTPipeline):
        raise UserError(f"model {name!r} is not an EHRT/MEHRT transformer", field="--model",
                        fix="use --model ehrt (or ehrt-<size>), or --checkpoint PATH")
    settings = pipe.settings()
    if settings.multimodal and not structured_only:
        raise UnsupportedForLlama(f"{name}: MEHRT image tokens and its PRS pathway have no Llama equivalent",
                                  field="--model", fix=EXTRA_INPUTS_FIX)
    _require_transformers()  # before minutes of pretraining, not after
    model, meta = load_pretrained(cohort, settings, log=log)
    stage = meta["stages"][settings.stage]
    source = (f"MEHR-Bench `{name}` (stage {settings.stage}, size {settings.size}, {settings.steps} Stage-1 steps, "
              f"budget {budget}; held-out perplexity {stage['held_out_perplexity']:.2f}) pretrained on the "
              f"training split of {cohort.root.name}")
    return export_llama(model.float().cpu(), out_dir, tokenizer=meta["tokenizer"],
                        structured_only=structured_only, source=source)


def summary(folder: Path) -> dict[str, Any]:
    """A short description of an export folder (for the CLI): files, sizes and the model's size."""
    conf = json.loads((Path(folder) / "config.json").read_text())
    n = sum(math.prod(t.shape) for t in load_file(str(Path(folder) / WEIGHTS_FILE)).values())
    return {"folder": str(folder), "parameters": n, "vocab_size": conf["vocab_size"],
            "hidden_size": conf["hidden_size"], "layers": conf["num_hidden_layers"],
            "files": sorted(p.name for p in Path(folder).iterdir())}


__all__ = ["export_llama", "load_llama", "load_tokenizer", "export_registered", "refusals", "llama_fields",
           "UnsupportedForLlama"]
