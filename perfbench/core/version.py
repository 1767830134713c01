"""perfbench's version: one place, read by the package, the CLI, summaries and Ray's version check."""

__version__ = "0.1.0"
