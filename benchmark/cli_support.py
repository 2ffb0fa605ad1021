"""What every command handler of the CLI shares: the console, stderr lines, plain table cells and
the cohort a command's --data / --predicates / --dataset name (benchmark.cli, benchmark.cli_meds)."""

from __future__ import annotations

import argparse
import sys


def console():
    from rich.console import Console
    import shutil
    return Console(stderr=False, highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 120))


def err(text: str) -> None:
    print(text, file=sys.stderr)


def plain(*cells: str) -> list:
    """Table cells shown as typed: task descriptions and model references are user text, and rich
    would read "[...]" in them as markup (or fail on it)."""
    from rich.text import Text
    return [Text(str(c)) for c in cells]


def resolve_cohort(args: argparse.Namespace):
    from benchmark.data.cohort import Cohort

    predicates, dataset = getattr(args, "predicates", None), getattr(args, "dataset", None)
    if getattr(args, "data", None):
        return Cohort(args.data, predicates, dataset)
    from benchmark.default_cohort import ensure_default_cohort
    return Cohort(ensure_default_cohort(), predicates, dataset)


def add_map_args(p: argparse.ArgumentParser) -> None:
    """The --predicates / --dataset pair of every command that reads a cohort's predicate map
    (`resolve_cohort` reads them)."""
    p.add_argument("--predicates", help="predicates.yaml (default: <data>/predicates.yaml, else the profile's map)")
    p.add_argument("--dataset", help="dataset profile name or folder (default: recognised from "
                                     "metadata/dataset.json; see `datasets`)")
