"""Parts of MEDS-DEV 0.0.14 that the MEHR-Bench tests use as oracles (a MEDS-DEV install pins meds 0.3.3
and ACES 0.6.1, which clash with ours, so the code is copied here rather than imported).

Copied from MEDS-DEV 0.0.14 (https://github.com/Medical-Event-Data-Standard/MEDS-DEV), files
src/MEDS_DEV/utils.py (Contact, Metadata), src/MEDS_DEV/models/__init__.py (the model.yaml loader,
RunMode, DatasetType, fmt_command, model_commands) and src/MEDS_DEV/results/__init__.py (Result),
under the MIT License:

    MIT License
    Copyright (c) 2024 Matthew McDermott
    Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
    associated documentation files (the "Software"), to deal in the Software without restriction,
    including without limitation the rights to use, copy, modify, merge, publish, distribute,
    sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions: The above copyright notice and this
    permission notice shall be included in all copies or substantial portions of the Software.
    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.

Changes: docstrings and doctests dropped; `validators` (not installed here) replaced by a URL/e-mail
regular expression; Result checks names against MEDS-DEV's registries only for MEDS-DEV's own
version string (as the original does), so the registries are not needed; load_model reads one
model.yaml (the original globs MEDS_DEV/models/*/model.yaml into MODELS).
"""

import dataclasses
import datetime
import itertools
import json
import re
from enum import StrEnum, auto
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, ListConfig, OmegaConf

MEDS_DEV_VERSION = "0.0.14"
MAX_SIZE_KB = 1.5  # results/__main__.py
held_out_split = "held_out"


def is_valid_email(email: str) -> bool:
    return bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", email))


def is_valid_url(url: str) -> bool:
    if urlparse(url).scheme == "":
        url = f"https://{url}"
    p = urlparse(url)
    return p.scheme in {"http", "https"} and bool(re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}(:\d+)?", p.netloc))


@dataclasses.dataclass
class Contact:
    name: str
    email: str | None = None
    github_username: str | None = None

    def __post_init__(self):
        if type(self.name) is not str:
            raise ValueError(f"'name' must be a string. Got {self.name}")
        if self.email is not None:
            if type(self.email) is not str:
                raise ValueError(f"If specified, 'email' must be a string. Got {self.email}")
            if not is_valid_email(self.email):
                raise ValueError(f"If specified, 'email' must be a valid email address. Got {self.email}")
        if self.github_username is not None and type(self.github_username) is not str:
            raise ValueError(f"If specified, 'github_username' must be a string. Got {self.github_username}")


@dataclasses.dataclass
class Metadata:
    description: str
    contacts: list[Contact]
    links: list[str] | None = None

    def __post_init__(self):
        if type(self.description) is not str:
            raise ValueError(f"'description' must be a string. Got {self.description}")
        if not isinstance(self.contacts, (list, ListConfig)):
            raise ValueError(f"'contacts' must be a list. Got {self.contacts}")
        if len(self.contacts) == 0:
            raise ValueError("'contacts' must have at least one contact.")
        for i, contact in enumerate(self.contacts):
            if isinstance(contact, (dict, DictConfig)):
                try:
                    contact = Contact(**contact)
                except Exception as e:
                    raise ValueError(f"Contact at index {i} is invalid") from e
                self.contacts[i] = contact
            elif not isinstance(contact, Contact):
                raise ValueError(f"Contact at index {i} must be a Contact or dictionary. Got {type(contact)}")
        if self.links is not None:
            if not isinstance(self.links, (list, ListConfig)):
                raise ValueError(f"If specified, 'links' must be a list. Got {self.links}")
            for i, link in enumerate(self.links):
                if type(link) is not str:
                    raise ValueError(f"Link at index {i} must be a string. Got {type(link)}")
                if not is_valid_url(link):
                    raise ValueError(f"Link at index {i} must be a valid URL. Got {link}")


def load_model(path: Path) -> dict:
    """One MODELS entry, as models/__init__.py builds it from a model.yaml."""
    path = Path(path)
    entry = OmegaConf.to_object(OmegaConf.load(path))
    entry["metadata"] = Metadata(**entry["metadata"])
    requirements_path = path.parent / "requirements.txt"
    entry["requirements"] = requirements_path if requirements_path.exists() else None
    entry["model_dir"] = path.parent
    return entry


class RunMode(StrEnum):
    TRAIN = auto()
    PREDICT = auto()
    FULL = auto()


ALL_RUN_MODES = [RunMode.TRAIN, RunMode.PREDICT]


class DatasetType(StrEnum):
    UNSUPERVISED = auto()
    SUPERVISED = auto()
    FULL = auto()


ALL_DATASET_TYPES = [DatasetType.UNSUPERVISED, DatasetType.SUPERVISED]


def fmt_command(commands, dataset_type, run_mode, **format_kwargs) -> str:
    if dataset_type not in commands:
        raise RuntimeError(f"Model does not support dataset type {dataset_type}.")
    dataset_commands = commands[dataset_type]
    if run_mode not in dataset_commands:
        raise RuntimeError(f"Model does not support run mode {run_mode}.")
    return commands[dataset_type][run_mode].format(**format_kwargs)


def model_commands(cfg: DictConfig, commands: dict, model_dir: Path):
    run_modes = ALL_RUN_MODES if cfg.mode == RunMode.FULL else [cfg.mode]
    dataset_types = ALL_DATASET_TYPES if cfg.dataset_type == DatasetType.FULL else [cfg.dataset_type]
    do_set_split = cfg.mode == RunMode.FULL
    output_dir = Path(cfg.output_dir)
    format_kwargs = {"dataset_dir": str(cfg.dataset_dir), "model_dir": str(model_dir), "demo": cfg.get("demo", False)}
    if cfg.get("model_initialization_dir", None):
        format_kwargs["model_initialization_dir"] = cfg.model_initialization_dir
    if cfg.get("split", None):
        if do_set_split:
            raise ValueError(f"Cannot set split manually when mode is {cfg.mode}.")
        format_kwargs["split"] = cfg.split
    if len(run_modes) == 1 and len(dataset_types) == 1:
        run_mode = run_modes[0]
        dataset_type = dataset_types[0]
        format_kwargs["output_dir"] = str(output_dir)
        if dataset_type == DatasetType.SUPERVISED:
            format_kwargs["labels_dir"] = str(cfg.labels_dir)
        yield fmt_command(commands, dataset_type, run_mode, **format_kwargs), output_dir
        return
    for run_mode, dataset_type in itertools.product(run_modes, dataset_types):
        dataset_commands = commands.get(dataset_type, None)
        if dataset_commands is None:
            continue
        run_command = dataset_commands.get(run_mode, None)
        if not run_command:
            continue
        run_output_dir = output_dir / cfg.dataset_name
        if dataset_type == DatasetType.SUPERVISED:
            run_output_dir = run_output_dir / cfg.task_name
            format_kwargs["labels_dir"] = str(cfg.labels_dir)
        else:
            run_output_dir = run_output_dir / dataset_type
        run_output_dir = run_output_dir / run_mode
        format_kwargs["output_dir"] = str(run_output_dir)
        if do_set_split:
            if run_mode == RunMode.PREDICT:
                format_kwargs["split"] = held_out_split
            else:
                format_kwargs.pop("split", None)
        yield (fmt_command(commands, dataset_type, run_mode, **format_kwargs), run_output_dir)
        if run_mode != RunMode.PREDICT:
            format_kwargs["model_initialization_dir"] = str(run_output_dir)


@dataclasses.dataclass
class Result:
    dataset: str
    task: str
    model: str
    timestamp: datetime.datetime
    result: dict[str, Any]
    version: str = MEDS_DEV_VERSION

    def __post_init__(self):
        if not isinstance(self.timestamp, datetime.datetime):
            raise TypeError(f"timestamp must be a datetime object, not {type(self.timestamp)}")
        if not isinstance(self.result, dict):
            raise TypeError(f"result must be a dictionary, not {type(self.result)}")
        for k in ("dataset", "task", "model", "version"):
            if not isinstance(getattr(self, k), str):
                raise TypeError(f"{k} must be a string, not {type(getattr(self, k))}")
        is_aware = (self.timestamp.tzinfo is not None) and (self.timestamp.tzinfo.utcoffset(self.timestamp) is not None)
        now = datetime.datetime.now(self.timestamp.tzinfo) if is_aware else datetime.datetime.utcnow()
        if self.timestamp > now:
            raise ValueError(f"timestamp must be in the past, not {self.timestamp}")
        try:
            json.dumps(self.result)
        except Exception as e:
            raise ValueError(f"Result must be JSON serializable! Got {self.result}") from e
        if self.version == MEDS_DEV_VERSION:
            raise ValueError("a current-version result is checked against MEDS-DEV's registries (not vendored)")

    @classmethod
    def from_json(cls, fp: Path | str) -> "Result":
        fp = Path(fp)
        if not fp.exists():
            raise FileNotFoundError(f"{fp} does not exist.")
        if not fp.is_file():
            raise ValueError(f"{fp} is not a file.")
        try:
            as_dict = json.loads(fp.read_text())
        except Exception as e:
            raise ValueError(f"Could not read result from {fp}") from e
        as_dict["timestamp"] = datetime.datetime.fromisoformat(as_dict["timestamp"])
        return cls(**as_dict)
