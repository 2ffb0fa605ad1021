"""The model registry: one Python file per model with a module-level `SPEC` (a frozen ModelSpec).

Built-in models are listed by module path below and imported only when asked for, so importing
`benchmark` never imports torch or a GBDT library. Outside packages register through the
entry-point group `mehr_bench.models` (each entry point names a module that defines SPEC).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import UserError
from benchmark.results import SAFE_NAME, SAFE_NAME_HELP

ENTRY_POINT_GROUP = "mehr_bench.models"

ModelKind = Literal["baseline", "encoder+head", "foundation"]
Modality = Literal["structured", "ct", "wsi", "cxr", "note", "prs"]

# name -> module path holding SPEC. One file per model; keep alphabetical within each group.
BUILTIN_MODELS: dict[str, str] = {
    "catboost": "baselines.models.catboost",
    "lightgbm": "baselines.models.lightgbm",
    "logistic_regression": "baselines.models.logistic_regression",
    "random_forest": "baselines.models.random_forest",
    "xgboost": "baselines.models.xgboost",
    "catboost_late_fusion": "baselines.models.catboost_late_fusion",
    "xgboost_late_fusion": "baselines.models.xgboost_late_fusion",
    "coattention_ehr": "encoders.models.coattention_ehr",
    "coattention_img": "encoders.models.coattention_img",
    "concat_lr": "encoders.models.concat_lr",
    "contrastive": "encoders.models.contrastive",
    "cross_attention": "encoders.models.cross_attention",
    "image_clip_vit_b32": "encoders.models.image_clip_vit_b32",
    "image_densenet121": "encoders.models.image_densenet121",
    "image_resnet50": "encoders.models.image_resnet50",
    "late_fusion": "encoders.models.late_fusion",
    "medcam": "encoders.models.medcam",
    "precomputed": "encoders.models.precomputed",
    "probe_ct": "encoders.models.probe_ct",
    "probe_cxr": "encoders.models.probe_cxr",
    "probe_note": "encoders.models.probe_note",
    "probe_prs": "encoders.models.probe_prs",
    "probe_structured": "encoders.models.probe_structured",
    "probe_wsi": "encoders.models.probe_wsi",
    "text_minilm": "encoders.models.text_minilm",
    "timeline_gru": "encoders.models.timeline_gru",
    "timeline_lstm": "encoders.models.timeline_lstm",
    "ehrt": "encoders.mehrt.register_ehrt",
    "mehrt": "encoders.mehrt.register_mehrt",
    "mehrt-9m": "encoders.mehrt.register_mehrt_9m",
    "mehrt-small": "encoders.mehrt.register_mehrt_small",
    "mehrt-tiny": "encoders.mehrt.register_mehrt_tiny",
}


class ModelSpec(BaseModel):
    """Metadata of a registered model. Frozen; unknown fields are rejected; key fields have no default."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    kind: ModelKind
    description: str
    modalities: tuple[Modality, ...] = Field(description="modalities the model consumes")
    requires: tuple[Modality, ...] = Field(default=(), description="modalities a task must offer")
    task_kinds: tuple[Literal["binary", "multilabel", "survival", "regression"], ...]
    n_parameters: int | None
    training_data: str
    license: str
    reference: str
    authors: str
    factory: Callable[..., Any] = Field(exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        # The name becomes a folder under --results: "../../x" or "a/b" would write elsewhere.
        if not SAFE_NAME.match(v):
            raise ValueError(f"model name {v!r} is not a safe identifier: use {SAFE_NAME_HELP}")
        return v

    def public_dict(self) -> dict:
        """JSON-able metadata (without the factory)."""
        return self.model_dump(mode="json", exclude={"factory"})

    def fits(self, task) -> str | None:
        """None if the model can run the task, else the reason it cannot."""
        if task.kind not in self.task_kinds:
            return f"{self.name} does not support {task.kind} tasks"
        missing = [m for m in self.requires if m not in task.modalities]
        if missing:
            return f"{task.name} offers no {', '.join(missing)} (needed by {self.name})"
        return None


def _origin(name: str, module: str) -> str:
    """Where a model is registered, for error messages."""
    if name in BUILTIN_MODELS and BUILTIN_MODELS[name] == module:
        return f"built-in model {name!r} (module {module})"
    return f"entry point {name!r} = {module!r} (group {ENTRY_POINT_GROUP})"


def _load(name: str, module: str) -> ModelSpec:
    """Import `module` and return its SPEC, checked against the registered name.

    Raises:
        UserError: the module's SPEC is missing or invalid (an unsafe name included), or its name
            differs from the registered one; the message names the entry point.
    """
    where = _origin(name, module)
    try:
        mod = importlib.import_module(module)
    except ValidationError as e:  # SPEC = ModelSpec(...) failed at import
        err = e.errors()[0]
        raise UserError(f"{where} defines an invalid SPEC: {err['msg'].removeprefix('Value error, ')}",
                        field=".".join(str(x) for x in err["loc"]) or "SPEC",
                        fix="fix the model's ModelSpec (see `python -m benchmark models`)") from None
    spec = getattr(mod, "SPEC", None)
    if not isinstance(spec, ModelSpec):
        raise UserError(f"{where} does not define SPEC = ModelSpec(...)", field="SPEC",
                        fix="define a module-level SPEC = ModelSpec(...) in that module")
    if spec.name != name:
        raise UserError(f"{where} registers a SPEC named {spec.name!r}", field="name",
                        fix=f"name the entry point after the spec ({spec.name!r}) or rename the spec")
    return spec


def _entry_point_modules() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def model_names() -> list[str]:
    """Every registered model name (built-in and entry points), without importing them."""
    return sorted({**BUILTIN_MODELS, **_entry_point_modules()})


def get_model(name: str) -> ModelSpec:
    """The spec of one model (imports its module).

    Raises:
        UserError: unknown name, listing the known ones.
    """
    modules = {**BUILTIN_MODELS, **_entry_point_modules()}
    if name not in modules:
        raise UserError(f"unknown model {name!r}", field="--model", fix="choose from: " + ", ".join(sorted(modules)))
    if not SAFE_NAME.match(name):  # checked before importing anything the entry point names
        raise UserError(f"{_origin(name, modules[name])} is not a safe model name", field="name",
                        fix=f"rename the entry point using {SAFE_NAME_HELP}")
    return _load(name, modules[name])


def list_models() -> list[ModelSpec]:
    """Specs of all models whose module imports (others are reported on stderr, not hidden)."""
    import sys
    out = []
    for n in model_names():
        try:
            out.append(get_model(n))
        except ImportError as e:
            print(f"warning: model {n} is registered but cannot be imported ({e})", file=sys.stderr)
        except UserError as e:
            print(f"warning: model {n} is not listed: {e.render()}", file=sys.stderr)
    return out
