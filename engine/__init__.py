"""prag-explorer engine: everything but the UI.

A library for comparing vanilla, RAG, PRAG and DyPRAG on one causal LM. It never
imports textual or the `tui` package, so scripts, the CLI and tests use it headless.
"""

__version__ = "0.1.0"
