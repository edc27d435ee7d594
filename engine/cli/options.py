"""The options several `prag` commands share, each defined once: type, flag names and help.

A command takes one as `corpus: options.Corpus = None`; the flag name comes from the
parameter name unless the option names its own (`--top-k/-k`, `--json`). Defaults stay
with each command (its function default). Help text is rich markup: write a literal
square bracket as `\\[`.

Settings-backed options (`--top-k`, `--max-new-tokens`, `--model`, `--corpus`, `--store`,
`--translator`, ...) default to None, meaning: `PRAG_*` environment variable, else
`$PRAG_HOME/config.toml`, else the command's own default. A flag always wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

INTERACTIVE_TOP_K = 1
"""`prag ask` and `prag tui`: on the sample corpus's fictional questions RAG's F1 is 0.78 with the top
passage, 0.57 with three best-last and 0.16 with three best-first (`prag eval --group fictional`), and
PRAG with one passage's LoRA beats the merge of three; one passage is also one LoRA to encode."""

# --- what to answer with ------------------------------------------------------------------------------

Model = Annotated[str | None, typer.Option(
    help="Local Hugging Face model directory (default: $PRAG_MODEL, the config file, else the embedded SmolLM2).")]
Translator = Annotated[Path | None, typer.Option(
    help="DyPRAG translator, .safetensors or the reference .pt (default: $PRAG_TRANSLATOR, the config file, "
         "else the one shipped for the embedded model).")]
Store = Annotated[Path | None, typer.Option(
    help="PRAG LoRA store directory (default: $PRAG_STORE, the config file, else $PRAG_HOME/loras).")]
Methods = Annotated[str, typer.Option(
    "--methods", "-m", help="Comma list of methods (vanilla, rag, prag, prag_combine, dyprag, dyprag_combine), or 'all'.")]
TopK = Annotated[int | None, typer.Option(
    "--top-k", "-k",
    help="Passages per question (default: $PRAG_TOP_K, the config file, else the command's: 1 for ask and tui, "
         "where the 135M model reads one passage best, the reference's 3 for eval and rerank-data).")]
MaxNewTokens = Annotated[int | None, typer.Option(
    help="New tokens per answer (default: $PRAG_MAX_NEW_TOKENS, the config file, else the command's: "
         "32 for ask and tui, the reference's 20 for eval and rerank-data).")]

Device = Annotated[str | None, typer.Option(
    help="Where the model runs: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps "
         "(default: $PRAG_DEVICE, the config file, else auto).")]
Dtype = Annotated[str | None, typer.Option(
    help="Model precision: auto (float32 on CPU, bfloat16 where the GPU runs it natively, else float16), "
         "float32, bfloat16 or float16 (default: $PRAG_DTYPE, the config file, else auto). LoRA deltas stay float32.")]

# --- where passages come from -------------------------------------------------------------------------

Corpus = Annotated[Path | None, typer.Option(
    help="Corpus JSONL or folder of .txt files. Default for ask and tui: $PRAG_CORPUS, the config file, else the sample corpus; "
         "for eval and rerank-data: each QA row's own passages.")]
Index = Annotated[Path | None, typer.Option(
    help="Index folder from `prag corpus index` to retrieve from (instead of --corpus).")]
EsIndex = Annotated[str | None, typer.Option(
    help="Elasticsearch index (alias) to retrieve from; `prag corpus index`: the one to build.")]
EsUrl = Annotated[str | None, typer.Option(
    help="Elasticsearch URL (default: $PRAG_ES_URL or the config file).")]
Data = Annotated[Path | None, typer.Option(
    "--data", "-d",
    help="QA JSONL file, one question a line (id, question, answers, passages?, conflict?); "
         "`prag data convert` makes one from a public release.")]

# --- passage selection --------------------------------------------------------------------------------

Rerank = Annotated[str, typer.Option(
    help="Passage selection: none (BM25 top-k) or dynamic (the LLM picks which passages, in which order; "
         "ctrl+g switches in the TUI).")]
Candidates = Annotated[int, typer.Option(
    help="BM25 candidate passages per question (what the dynamic reranker chooses from).")]
RerankerModel = Annotated[Path | None, typer.Option(
    help="Local instruct model that reranks, with --rerank dynamic (default: the answering model).")]

# --- how PRAG and DyPRAG inject knowledge ---------------------------------------------------------------

Recipe = Annotated[str | None, typer.Option(
    help="PRAG encode recipe: facts (stores a passage's facts in a small model) or reference (the papers'); "
         "default: $PRAG_RECIPE, the config file, else facts.")]
Layers = Annotated[str | None, typer.Option(
    help="Inject PRAG/DyPRAG LoRAs only into decoder layers A-B (inclusive, from 0), e.g. 12-29: where the knowledge acts.")]
Merge = Annotated[str, typer.Option(
    help="How the top-k passages' PRAG LoRAs combine: sum (the papers'), mean, or weighted by retrieval score.")]
Order = Annotated[str, typer.Option(
    help="Passage order in RAG and combine prompts: best-last (nearest the question, where a small model looks) "
         "or best-first (the papers').")]
LoraSpan = Annotated[str, typer.Option(
    help="Which prompt tokens the combine methods' LoRA acts on: question (from the question on; the model reads the "
         "passages as it is) or all (the papers').")]

# --- PRAG LoRAs, offline stages, Ray --------------------------------------------------------------------

Encode = Annotated[bool, typer.Option(
    "--encode/--no-encode",
    help="Encode missing PRAG LoRAs on demand (the recipe's QA pairs from the passage itself, 10-25 s a passage "
         "on 2 CPU cores, kept in the store); --no-encode reports them as errors.")]
AugmentInput = Annotated[Path, typer.Option(
    "--augment", "-a", help="Augmentation JSON from `prag augment` (or the reference PRAG file).")]
AugModel = Annotated[str | None, typer.Option(
    help="Which <name>_qa to read when the augmentation file holds several.")]
Ray = Annotated[bool, typer.Option(
    "--ray", help="Spread the work over a Ray cluster (pip install 'prag-explorer\\[cluster]').")]
RayAddress = Annotated[str | None, typer.Option(
    help="Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local one).")]
Workers = Annotated[int, typer.Option(
    help="With --ray: workers, each with its own copy of the model.")]

# --- output ------------------------------------------------------------------------------------------

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")]
