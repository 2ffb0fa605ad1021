"""An example out-of-tree MEHR-Bench model package (see README.md)."""
