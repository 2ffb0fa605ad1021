"""Registered encoder + head models, one file per model, each with a module-level SPEC.

Listed in `benchmark.registry.BUILTIN_MODELS`; `_common.spec` builds the shared metadata.
"""
