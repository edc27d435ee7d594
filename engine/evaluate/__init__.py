"""Dataset evaluation: every selected method on every question, resumable, scored like the papers.

Why it is built this way:

- One `Explorer.compare` call per question runs all selected methods in one
  batched generation, so a six-method table costs about one pass per question.
- Predictions go to one JSONL file per (data file, settings, method), one line
  per question, appended, flushed and fsynced as soon as the question is done.
  A killed run (Ctrl-C or SIGKILL) loses at most the question in flight; the next
  run reads the files, drops a torn last line, and skips what is finished.
- The file name carries every setting that changes an answer (model, top-k,
  max-new-tokens, given passages or a corpus, translator, PRAG LoRA recipe), so
  runs with different settings never mix. `<prefix>.settings.json` spells the
  fingerprint out; `<prefix>.results.json` keeps the last table.
- A stored answer that failed (e.g. no PRAG LoRA yet) is not final: the next run
  asks again, so `prag encode` then `prag eval` fills the PRAG rows in.
- Scores are recomputed from the stored predictions against the data file's
  answers at the end, so the table never depends on how a run was split.
"""

from engine.evaluate.options import REFERENCE_MAX_NEW_TOKENS, REFERENCE_TOP_K, EvalOptions
from engine.evaluate.predictions import (
    PredictionFile,
    _exclusive,
    file_prefix,
    fingerprint,
    methods_fingerprint,
    open_predictions,
    prediction_path,
)
from engine.evaluate.results import EvalResult, MethodScores, score_record, summarize
from engine.evaluate.run import answer_batch, answer_one, evaluate, hits_for, load_items, open_explorer, prepare_run

__all__ = [
    "REFERENCE_MAX_NEW_TOKENS", "REFERENCE_TOP_K", "EvalOptions", "EvalResult", "MethodScores", "PredictionFile",
    "_exclusive", "answer_batch", "answer_one", "evaluate", "file_prefix", "fingerprint", "hits_for", "load_items",
    "methods_fingerprint",
    "open_explorer", "open_predictions", "prediction_path", "prepare_run", "score_record", "summarize",
]
