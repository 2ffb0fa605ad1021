"""`run --jobs K` and `run --executor ray`: the grid's cells as jobs (benchmark.executors).

One prepare job per (model, seed) among the cells to compute (benchmark.model_api: the model's
optional label-free step, run once, in a worker with the model's resources), then that model's
cells, which wait only for their own prepare job: other models' cells start at once. Each task's
labels are extracted by the driver before (benchmark.planning.task_labels) and shared once per task
(a parquet file for local workers, the object store on Ray). The cell functions are the runner's,
passed in (this module does not import benchmark.runner: imports point one way).
"""

from __future__ import annotations

from typing import Callable

from pathlib import Path

from benchmark.data.cohort import Cohort
from benchmark.executors import Job, LocalPool, Outcome, RayCluster, execute
from benchmark.external import ExternalSet, open_external
from benchmark.parallel import Placement

_OPENED: dict = {}  # per worker process: the cohort and external set, opened once for all its jobs


def opened(where: tuple, external: str | Path | None) -> tuple[Cohort, ExternalSet | None]:
    """In a worker: the run's cohort (its folder, --predicates, --dataset) and external set, opened once.

    Args:
        where: (cohort folder, predicates file or None, dataset or None).
        external: the --external-data folder, or None.
    """
    if (where, external) not in _OPENED:
        cohort = Cohort(where[0], predicates_file=where[1], dataset=where[2])
        _OPENED[where, external] = cohort, open_external(external, cohort, None) if external is not None else None
    return _OPENED[where, external]


def prepare_jobs(models: dict, prepare_job: Callable, budget, reopen: tuple) -> list[Job]:
    """One prepare job per (model, seed), in grid order. Those of one prepare chain (ModelSpec.prepare_chain:
    the MEHRT family, whose steps pretrain Stage 1 under one lock) start one after another: the second
    would otherwise hold a worker idle on the first's lock while other models' cells wait to run."""
    jobs, last = [], {}
    for (m, s), spec in models.items():
        key = ("prepare", m, s, "")
        chain = spec.prepare_chain
        jobs.append(Job(key, prepare_job, (spec, budget, s, reopen), f"the prepare step of {m}",
                        cpus=spec.resources.cpus, gpus=spec.resources.gpus,
                        not_before=last.get(chain) if chain is not None else None))
        if chain is not None:
            last[chain] = key
    return jobs


def run_parallel(todo: list, cohort, labels: dict, where: Placement, rep, bar, finish: Callable, prepared: Callable,
                 fail: Callable, *, cell_job: Callable, prepare_job: Callable, args: tuple) -> None:
    """Run the cells on local workers or Ray; finish(cell, record) as each ends.

    Args:
        todo: the cells to compute (benchmark.runner.Cell), in grid order.
        cohort: the cohort (workers reopen it from its folder and flags).
        labels: task name -> its labels.
        where: the placement (jobs, executor, address).
        rep, bar: the reporter and its progress bar.
        finish: finish(cell, record or None when kept), called in the driver.
        prepared: prepared(spec, seed, ok, (has_prepare, line) or None, error) for each prepare job.
        fail: fail(cell, error) -> the failed record of a cell whose job or prepare step failed.
        cell_job: module-level cell_job(cell, opened, labels handle, *args) -> record or None.
        prepare_job: module-level prepare_job(spec, budget, seed, opened) -> (has_prepare, line).
        args: (results_dir, budget, force, ablate, external) for cell_job.
    """
    reopen = (str(cohort.root), cohort._explicit_predicates, cohort.dataset)
    budget = args[1]
    backend = RayCluster(where.address or "auto", say=rep.say) if where.executor == "ray" else LocalPool(where.jobs)
    with backend:
        if isinstance(backend, LocalPool):
            rep.say(f"{len(todo)} cell(s) on {where.jobs} worker processes, {backend.threads} thread(s) each")
        bar.start(f"{len(todo)} cell(s) in parallel")
        shared = {t: backend.share(labels[t]) for t in dict.fromkeys(c.task.name for c in todo)}
        models = {(c.spec.name, c.seed): c.spec for c in todo}
        jobs = prepare_jobs(models, prepare_job, budget, reopen)
        jobs += [Job(c.key, cell_job, (c, reopen, shared[c.task.name], *args),
                     f"{c.spec.name} on {c.key[1]} seed {c.seed}", cpus=c.spec.resources.cpus,
                     gpus=c.spec.resources.gpus, after=("prepare", c.spec.name, c.seed, "")) for c in todo]
        cells = {c.key: c for c in todo}

        def on_done(job: Job, out: Outcome) -> None:
            if len(job.key) == 4:  # a prepare job (cell keys have three parts)
                prepared(models[job.key[1:3]], job.key[2], out.ok, out.value, out.error)
                return
            c = cells[job.key]
            finish(c, out.value if out.ok else fail(c, out.error))

        execute(jobs, backend, on_done)
