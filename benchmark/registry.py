"""The model registry: one door, the entry-point group `mehr_bench.models`.

Built-in and third-party models register the same way: an entry point whose name is the model name
and whose value names a module (`pkg.mod`, which defines SPEC or SPECS) or an attribute
(`pkg.mod:attr`, a spec, a tuple of specs, or a function returning them). A module may hold several
specs (a family declared in a loop); the registry picks the one named like the entry point. Names
are known without importing anything, and a model's module is imported only when asked for, so
importing `benchmark` never imports torch or a GBDT library. Helpers for model authors: benchmark.api.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import UserError
from benchmark.results import SAFE_NAME, SAFE_NAME_HELP
from benchmark.vocabulary import ModelModality

ENTRY_POINT_GROUP = "mehr_bench.models"

ModelKind = Literal["baseline", "encoder+head", "foundation"]
Modality = ModelModality

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


def _origin(name: str, target: str) -> str:
    """Where a model is registered, for error messages."""
    return f"entry point {name!r} = {target!r} (group {ENTRY_POINT_GROUP})"


def _import_target(name: str, target: str) -> object:
    """Import an entry point's target: a module, or `module:attr` (attr may be dotted).

    Raises:
        UserError: a spec built at import time is invalid (pydantic), naming the entry point.
    """
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module.strip())
    except ValidationError as e:  # SPEC = ModelSpec(...) failed at import
        err = e.errors()[0]
        raise UserError(f"{_origin(name, target)} defines an invalid SPEC: {err['msg'].removeprefix('Value error, ')}",
                        field=".".join(str(x) for x in err["loc"]) or "SPEC",
                        fix="fix the model's ModelSpec (see `python -m benchmark models`)") from None
    for part in filter(None, attr.strip().split(".")):
        if not hasattr(obj, part):
            raise UserError(f"{_origin(name, target)}: {module.strip()} has no attribute {part!r}",
                            field="entry point", fix="point the entry point at an existing spec or module")
        obj = getattr(obj, part)
    return obj


def _specs_of(obj: object) -> tuple:
    """The specs an entry point's target holds: a module's SPEC and SPECS, a spec, a sequence of
    specs, or whatever a function returns (called without arguments)."""
    if isinstance(obj, ModuleType):
        one = getattr(obj, "SPEC", None)
        many = getattr(obj, "SPECS", None)
        return ((one,) if one is not None else ()) + _specs_of(many if many is not None else ())
    if callable(obj) and not isinstance(obj, ModelSpec):
        obj = obj()
    if isinstance(obj, ModelSpec):
        return (obj,)
    return tuple(obj) if isinstance(obj, (tuple, list)) else (obj,)


def _load(name: str, target: str) -> ModelSpec:
    """Import an entry point's target and return its spec named `name`.

    Raises:
        UserError: the target holds no ModelSpec, an invalid one (an unsafe name included), or none
            named like the entry point; the message names the entry point.
    """
    where = _origin(name, target)
    specs = _specs_of(_import_target(name, target))
    if not specs or not all(isinstance(s, ModelSpec) for s in specs):
        raise UserError(f"{where} does not define SPEC = ModelSpec(...) (or SPECS, a tuple of specs)", field="SPEC",
                        fix="define a module-level SPEC = ModelSpec(...) or SPECS = (...) in that module")
    match = [s for s in specs if s.name == name]
    if match:
        return match[0]
    if len(specs) == 1:
        raise UserError(f"{where} registers a SPEC named {specs[0].name!r}", field="name",
                        fix=f"name the entry point after the spec ({specs[0].name!r}) or rename the spec")
    raise UserError(f"{where} holds no spec named {name!r} (it holds {', '.join(s.name for s in specs)})",
                    field="name", fix="name the entry point after one of those specs")


def _entry_point_modules() -> dict[str, str]:
    """Model name -> entry point target, for every installed distribution (built-ins included)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def model_targets() -> dict[str, str]:
    """Model name -> where it is registered (`module` or `module:attr`), sorted by name, no imports."""
    return dict(sorted(_entry_point_modules().items()))


def model_names() -> list[str]:
    """Every registered model name (built-in and entry points), without importing them."""
    return sorted(_entry_point_modules())


def get_model(name: str) -> ModelSpec:
    """The spec of one model (imports its module).

    Raises:
        UserError: unknown name, listing the known ones.
    """
    modules = _entry_point_modules()
    if name not in modules:
        raise UserError(f"unknown model {name!r}", field="--model", fix="choose from: " + ", ".join(sorted(modules)))
    if not SAFE_NAME.match(name):  # checked before importing anything the entry point names
        raise UserError(f"{_origin(name, modules[name])} is not a safe model name", field="name",
                        fix=f"rename the entry point using {SAFE_NAME_HELP}")
    return _load(name, modules[name])


def list_models() -> list[ModelSpec]:
    """Specs of all models whose module imports (others are reported on stderr, not hidden)."""
    out = []
    for n in model_names():
        try:
            out.append(get_model(n))
        except ImportError as e:
            print(f"warning: model {n} is registered but cannot be imported ({e})", file=sys.stderr)
        except UserError as e:
            print(f"warning: model {n} is not listed: {e.render()}", file=sys.stderr)
    return out
