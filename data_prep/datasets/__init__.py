"""Built-in dataset profiles (one folder each: dataset.yaml + predicate maps).

Registered in pyproject.toml under the entry-point group ``mehr_bench.datasets`` as this folder;
benchmark.data.profiles finds every profile folder inside it. An outside package registers its own
folder the same way.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
