"""Registered encoder + head models, one file per model (a family such as the single-source probes
may declare several specs in a loop: probes.py), each with a module-level SPEC or SPECS.

Registered through the `mehr_bench.models` entry points in pyproject.toml, like any plug-in;
`benchmark.api.spec` builds the shared metadata.
"""
