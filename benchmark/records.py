"""The typed result record of one (model, task, seed) cell: `<results>/<model>/<task>/seed<k>.json`.

`ResultRecord` is the one schema the runner writes and every reader reads (pydantic v2, frozen,
unknown top-level fields rejected). The JSON layout is flat and unchanged since schema version 1:

    schema_version, model, task, task_version, task_kind, seed, budget, main_metric
    dataset        DatasetRef (name, fingerprint): which data the cell ran on (since version 2)
    n_train, n_tuning, n_test, n_events          the counts (n_events: positives / observed events
                                                 on the held-out split; null for regression)
    status                                       "ok" | "refused" (main metric refused) | "failed"
    refused / error / traceback                  present only when they apply
    metrics        name -> Metric (value, ci_low, ci_high, method, refused, ci_note); "_threshold"
                   is the binary decision threshold chosen on the tuning split (no CI)
    provenance     Provenance (package version, git sha, task hash, data fingerprint, lockfile hash,
                   hardware, cohort folder; labels_hash only when the labels came from `run --labels`)
    compute        Compute (wall s, peak RSS MB, device, n_parameters, tokens/s)
    model_info     ModelInfo: the spec's kind, modalities, reference, plus whatever the model put in
                   `Prediction.info` (family-specific: hyperparameters, CV scores, ... kept verbatim)
    fairness       loosely typed dict: benchmark.fairness.fairness_report's output (subgroup metrics
                   per attribute, gaps, suppression notes); its own format, documented there
    explanations   loosely typed dict: SHAP top features (baselines) or modality attribution
                   (benchmark.ablation); null when a model gives neither
    ablations      loosely typed dict (only with --ablate-modalities): benchmark.ablation's output

A field that a cell never reached (a failed cell has no metrics) is absent from the file, not null:
records are dumped with `exclude_unset`, so a file read and written again is byte-identical.

Versions: SCHEMA_VERSION changes only when a field's meaning changes; files of every earlier
version stay readable (`from_json_dict`), a file of a newer version is refused with a clear error.

    1   the layout above without `dataset`
    2   adds `dataset` (name + fingerprint). A version-1 file gets it derived on reading (name from
        the cohort's metadata/dataset.json, else the cohort folder's name; fingerprint from
        provenance.data_fingerprint) and is written back as version 1, byte-identical.
    3   adds `external`: a list of ExternalResult, one per external dataset the SAME fitted model was
        scored on (`run --external-data DIR`, benchmark.external). Absent when there is none, so a
        version-1 or version-2 file reads as before (no external results) and round-trips unchanged.
    4   predictions files follow meds-evaluation: a binary cell's seed<k>.predictions.parquet is exactly
        its PredictionSchema (adds predicted_boolean_value, float64 probability), the other kinds'
        files are seed<k>.predictions.<kind>.parquet (benchmark.results.predictions_name); and adds
        `external_predictions` (ExternalPredictions): set only on a record that `evaluate` scored
        from predictions made outside MEHR-Bench. Earlier files read as before (no such block); their
        non-binary predictions stay in seed<k>.predictions.parquet, where
        benchmark.results.predictions_path still finds them.
    5   adds `few_shot` (FewShot): set only on a cell of a few-shot / label-fraction run (`run --k-shots`
        or `--train-fraction`, benchmark.few_shot), whose model was fitted on a drawn subset of the
        training and tuning subjects; such a cell's files are seed<k>.<point>.json (and predictions)
        beside the full-data seed<k>.json. Absent on every other record, so earlier files read as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Mapping, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 5


class _Strict(BaseModel):
    """Frozen, unknown fields rejected (a typo in a field name is an error, not a silent null)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Metric(_Strict):
    """One metric on the held-out split.

    value is None when the metric was refused (then `refused` says why); ci_low/ci_high are None
    when the sample cannot support a CI (then `ci_note` says why).
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str | None = None
    refused: str | None = None
    ci_note: str | None = None


class Hardware(_Strict):
    """The machine a cell ran on (benchmark.results.hardware)."""

    machine: str | None = None
    processor: str | None = None
    cpus: int | None = None
    python: str | None = None
    system: str | None = None


class Provenance(_Strict):
    """What produced a cell: code, task definition, data and machine."""

    package_version: str
    git_sha: str | None
    task_hash: str
    data_fingerprint: str
    lockfile_hash: str | None
    hardware: Hardware
    cohort: str
    # content hash of labels made elsewhere (`run --labels DIR`, benchmark.label_files.labels_hash);
    # absent when the benchmark extracted the task's labels itself, so those files are unchanged
    labels_hash: str | None = None


class Compute(_Strict):
    """What a cell cost."""

    wall_s: float
    peak_rss_mb: float
    device: str | None = "cpu"
    n_parameters: int | None = None
    tokens_per_s: float | None = None


class DatasetRef(_Strict):
    """The data a cell ran on: a readable name and the cohort's content fingerprint (the identity:
    two cohorts with one name but different fingerprints are different datasets)."""

    name: str
    fingerprint: str


def dataset_name(cohort: str | Path) -> str:
    """The dataset name of a cohort folder: metadata/dataset.json's `dataset_name` (the MEDS
    DatasetMetadataSchema field), else the folder's name (never the full path: paths are private).

    Args:
        cohort: the cohort folder (it need not exist any more: the folder name is the fallback).

    Returns:
        The name ("" for an empty path).
    """
    if not str(cohort):
        return ""
    try:
        meta = json.loads((Path(cohort) / "metadata" / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and isinstance(meta.get("dataset_name"), str) and meta["dataset_name"].strip():
        return meta["dataset_name"].strip()
    return Path(cohort).name


class ExternalResult(_Strict):
    """The cell's fitted model scored on another dataset (external validation; benchmark.external).

    dataset names the external set (its own name and fingerprint). metrics are the task's metrics on
    ALL of its samples, with the same CIs and refusal rules as the internal ones. When the model
    cannot be scored there (an image folder and a model without `predict_images`, a task the external
    dataset cannot define) `not_applicable` says why and there are no metrics, never a number; when
    the external scoring crashed, `error` says how (the internal result is unaffected, and a rerun
    tries again).
    """

    dataset: DatasetRef
    n_test: int | None = None
    n_events: int | None = None
    metrics: dict[str, Metric] | None = None
    not_applicable: str | None = None
    error: str | None = None

    def main(self, metric: str) -> Metric | None:
        """The named metric's entry, or None when there is none."""
        return (self.metrics or {}).get(metric)


class ExternalPredictions(_Strict):
    """Where the predictions of an `evaluate` record came from (benchmark.external_predictions): a
    model run outside MEHR-Bench. The metrics, CIs and fairness block are computed by the runner's own
    code on the task's held-out samples; what MEHR-Bench cannot know about the model (its training
    data and size, n_train, its compute) is left unknown, never guessed.

    files: the predictions file names as given (relative to the --predictions folder; no absolute path).
    sha256: hash of those files' bytes (in the order of `files`): which predictions were scored.
    n_rows: rows read (= the task's held-out samples on the data).
    note: what the record does not say, in words (shown on the leaderboard).
    """

    files: list[str]
    sha256: str
    n_rows: int
    note: str = ("scored from predictions made outside MEHR-Bench: the model's training data, size and "
                 "compute are unknown (n_train, n_tuning and compute are not the model's)")


class FewShot(_Strict):
    """The few-shot point of a cell (benchmark.few_shot): which subset of the training and tuning
    subjects its model was fitted on. The held-out set is never subsampled.

    scheme: "k_shots" (k subjects per class drawn for training and, separately, k for tuning, as
        EHRSHOT does) or "fraction" (that fraction of each class's subjects, per split).
    k: subjects per class (scheme k_shots); None = all of them.
    fraction: the fraction of subjects per class (scheme fraction; 1.0 = all).
    draw: the replicate (draw d of every point comes from one seeded order, so draws are nested in k).
    n_train_subjects / n_tuning_subjects: subjects drawn in each split.
    """

    scheme: Literal["k_shots", "fraction"]
    k: int | None = None
    fraction: float | None = None
    draw: int = Field(ge=0)
    n_train_subjects: int
    n_tuning_subjects: int


class ModelInfo(BaseModel):
    """The spec's description of the model plus what the model reported in `Prediction.info`.

    Only the spec's fields are typed; the model's own keys (hyperparameters, cv_score, size, ...)
    are family-specific and kept verbatim as extra fields (`record.model_info.model_extra`).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str
    modalities: list[str]
    reference: str
    maskable_modalities: list[str] | None = None


class ResultRecord(_Strict):
    """One cell's result file (see the module docstring for the layout)."""

    schema_version: int
    model: str
    task: str
    task_version: int
    task_kind: str
    seed: int
    budget: str
    main_metric: str
    dataset: DatasetRef
    n_train: int | None
    n_tuning: int | None
    n_test: int | None
    n_events: int | None
    status: Literal["ok", "refused", "failed"]
    provenance: Provenance
    model_info: ModelInfo
    compute: Compute
    metrics: dict[str, Metric] | None = None
    refused: str | None = None
    error: str | None = None
    traceback: str | None = None
    fairness: dict[str, Any] | None = None
    explanations: dict[str, Any] | None = None
    ablations: dict[str, Any] | None = None
    external: list[ExternalResult] | None = None
    external_predictions: ExternalPredictions | None = None
    few_shot: FewShot | None = None
    # Set only on the record run_cell returns when its file could not be written (disk full...);
    # never part of the file.
    write_error: str | None = Field(default=None, exclude=True)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if not 1 <= v <= SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not one this mehr-bench reads (1 to {SCHEMA_VERSION}); "
                             "a newer mehr-bench wrote it: upgrade to read it")
        return v

    def main(self) -> Metric | None:
        """The main metric's entry, or None when the cell has none (failed, or not computed)."""
        return (self.metrics or {}).get(self.main_metric)

    def external_for(self, fingerprint: str) -> ExternalResult | None:
        """The external result on the dataset with this fingerprint, or None."""
        return next((e for e in self.external or [] if e.dataset.fingerprint == fingerprint), None)

    def to_json_dict(self) -> dict[str, Any]:
        """The file's content: every field the record was given (unset ones left out), JSON types.

        A version-1 record is written in the version-1 layout (its `dataset` was derived on reading,
        never stored), so reading and writing an old file changes nothing.
        """
        exclude = {"dataset"} if self.schema_version == 1 else None
        return self.model_dump(mode="json", exclude_unset=True, exclude=exclude)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "ResultRecord":
        """A record from a result file's parsed JSON, of this or an earlier schema version.

        Args:
            data: the parsed JSON object.

        Returns:
            The record (raises pydantic.ValidationError on a malformed or newer file).
        """
        return cls.model_validate(_upgrade(data))


def _upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """An older layout converted to the current one, before validation (a newer or malformed file
    is left as it is: validation says what is wrong).

    Version 1 had no `dataset`: it is derived from provenance (fingerprint) and the cohort folder it
    names (dataset.json's name, else the folder name), as the leaderboard always grouped v1 files.
    """
    out = dict(data)
    prov = out.get("provenance")
    if out.get("schema_version") == 1 and "dataset" not in out and isinstance(prov, Mapping):
        fp, cohort = prov.get("data_fingerprint"), prov.get("cohort")
        if isinstance(fp, str) and isinstance(cohort, str):
            out["dataset"] = {"name": dataset_name(cohort) or "unnamed dataset", "fingerprint": fp}
    return out


# ------------------------------------------------------------------ Prediction.info: the keys the runner reads
class PredictionInfo(TypedDict, total=False):
    """The keys of `Prediction.info` that the runner reads; a model may set any of them, and any
    other key (hyperparameters, CV scores...) is copied verbatim into the record's model_info.

    explanations: SHAP or attribution summary -> record.explanations (never copied to model_info)
    device:       where the model ran ("cpu", "cuda") -> compute.device (default "cpu")
    n_parameters: fitted size -> compute.n_parameters (default: the spec's n_parameters)
    tokens_per_s: throughput of a sequence model -> compute.tokens_per_s
    """

    explanations: dict[str, Any] | None
    device: str
    n_parameters: int | None
    tokens_per_s: float | None


INFO_EXPLANATIONS = "explanations"
INFO_DEVICE = "device"
INFO_N_PARAMETERS = "n_parameters"
INFO_TOKENS_PER_S = "tokens_per_s"


def compute_block(info: Mapping[str, Any], *, wall_s: float, peak_rss_mb: float,
                  spec_n_parameters: int | None) -> Compute:
    """The compute part of a record from the model's info (PredictionInfo keys) and the measurements.

    Args:
        info: the record's model_info so far (spec fields plus the model's Prediction.info).
        wall_s: the cell's wall time.
        peak_rss_mb: the process's peak resident memory.
        spec_n_parameters: the spec's n_parameters, used when the model did not report one.

    Returns:
        The Compute block.
    """
    return Compute(wall_s=wall_s, peak_rss_mb=peak_rss_mb, device=info.get(INFO_DEVICE, "cpu"),
                   n_parameters=info.get(INFO_N_PARAMETERS, spec_n_parameters),
                   tokens_per_s=info.get(INFO_TOKENS_PER_S))
