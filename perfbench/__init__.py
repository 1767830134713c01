"""perfbench: a load tester for LLM inference servers with exact streaming metrics."""

__version__ = "0.1.0"
__all__ = ["__version__"]
