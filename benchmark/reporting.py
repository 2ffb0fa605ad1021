"""Where a grid run's messages go, and the results table `run` prints.

The runner reports through a Reporter: the base class is quiet (the Python API, `benchmark.evaluate`),
ConsoleReporter prints to a rich console with a progress bar (the CLI). Messages are pieces (plain
strings, or (text, style) pairs), so user text (names, paths, error messages) is never read as
console markup.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rich.table import Table
from rich.text import Text

from benchmark.records import ResultRecord

Key = tuple[str, str, int]  # (model, task, seed)


class Reporter:
    """Quiet reporting for the Python API, and what the run has done so far (for a summary).

    Notes go to the `benchmark` logger at INFO, problems at WARNING (shown on stderr unless logging
    is configured otherwise).

    Attributes:
        cells: the planned cells, once the grid is planned (None before).
        records: (model, task, seed) -> the record of each cell run so far.
    """

    def __init__(self) -> None:
        self.cells: list[Any] | None = None
        self.records: dict[Key, ResultRecord] = {}

    def say(self, *pieces: str | tuple[str, str], problem: bool = False) -> None:
        """One message.

        Args:
            pieces: plain strings and (text, style) pairs, joined.
            problem: a failure or a refused task (WARNING) rather than a note (INFO).
        """
        text = "".join(p if isinstance(p, str) else p[0] for p in pieces)
        logging.getLogger("benchmark").log(logging.WARNING if problem else logging.INFO, "%s", text)

    def progress(self, total: int) -> contextlib.AbstractContextManager:
        """A context whose value has start(description) and advance(); the base class shows nothing."""
        return contextlib.nullcontext(_NoProgress())


class _NoProgress:
    def start(self, description: str) -> None:
        pass

    def advance(self) -> None:
        pass


class ConsoleReporter(Reporter):
    """The CLI's reporter: messages and a progress bar on a rich console."""

    def __init__(self, console) -> None:
        super().__init__()
        self.console = console

    def say(self, *pieces: str | tuple[str, str], problem: bool = False) -> None:
        self.console.print(Text.assemble(*pieces))

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator["_Bar"]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.console, transient=False) as prog:
            yield _Bar(prog, prog.add_task("running", total=total))


@dataclass
class _Bar:
    prog: Any
    bar: Any

    def start(self, description: str) -> None:
        self.prog.update(self.bar, description=description)

    def advance(self) -> None:
        self.prog.advance(self.bar)


def summary_table(keys: list[tuple[str, str, int]], results_dir: Path, seeds: int,
                  records: dict[tuple[str, str, int], ResultRecord]) -> Table:
    """The results table `run` prints: one row per cell that has a record.

    Args:
        keys: (task, model, seed) of the planned cells, in row order.
        results_dir: the results folder (the title names it).
        seeds: number of seeds (with several, the model column shows the seed).
        records: (task, model, seed) -> the cell's record.

    Returns:
        The rich Table (every cell is plain Text: names are never read as markup).
    """
    table = Table(title=Text(f"results in {results_dir} (main metric, 95% bootstrap CI)"))
    for col in ("task", "model", "metric", "value", "95% CI", "n test", "wall s"):
        table.add_column(col)
    for task, model, seed in keys:
        r = records.get((task, model, seed))
        if r is None:
            continue
        m = r.main()
        v = m.value if m else None
        status = "not written" if r.write_error else r.status
        ci = (f"[{m.ci_low:.3f}, {m.ci_high:.3f}]" if m and m.ci_low is not None and m.ci_high is not None
              else "not reported" if m and m.ci_note else "-")  # the sample cannot support one
        row = (task, model + (f" s{seed}" if seeds > 1 else ""), r.main_metric,
               f"{v:.3f}" if v is not None and status != "not written" else status, ci,
               "-" if r.n_test is None else str(r.n_test), f"{r.compute.wall_s:.1f}")
        table.add_row(*(Text(str(x)) for x in row))
    return table
