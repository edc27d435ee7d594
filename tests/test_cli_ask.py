"""`prag ask` end to end, as a user runs it (subprocess: real exit codes, real output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def prag(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_ask_json_returns_six_answers():
    result = prag("ask", "Who wrote Hamlet?", "--methods", "all", "--json", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) >= {"question", "model", "passages", "answers"}
    assert [a["method"] for a in payload["answers"]] == ["vanilla", "rag", "prag", "prag_combine", "dyprag", "dyprag_combine"]
    assert payload["passages"] and {"id", "title", "text", "score"} <= set(payload["passages"][0])
    for answer in payload["answers"]:
        assert set(answer) >= {"method", "text", "tokens", "latency_s", "error", "norms"}
        assert answer["error"] is None or answer["text"] == ""
    assert payload["answers"][1]["error"] is None and payload["answers"][1]["tokens"] > 0
    assert "prag encode" in payload["answers"][2]["error"]


def test_ask_tables_for_humans():
    result = prag("ask", "What is the capital of Japan?", "--methods", "vanilla,rag", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    assert "Passages for" in result.stdout and "RAG" in result.stdout and "Vanilla" in result.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["ask", ""], "question is empty"),
        (["ask", "   "], "question is empty"),
        (["ask", "x" * 10_000], "limit is"),
        (["ask", "q", "--methods", "nope"], "unknown method"),
        (["ask", "q", "--top-k", "0"], "top-k"),
        (["ask", "q", "--corpus", "/does/not/exist.jsonl"], "does not exist"),
        (["ask", "q", "--model", "/does/not/exist"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = prag(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_unreadable_corpus_line_names_the_line(tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "fine"}\n{not json\n', encoding="utf-8")
    result = prag("ask", "q", "--corpus", str(corpus))
    assert result.returncode == 2 and f"{corpus}:2" in result.stderr and "Traceback" not in result.stderr


def test_model_dir_of_wrong_architecture_is_refused(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    result = prag("ask", "q", "--model", str(tmp_path))
    assert result.returncode == 2 and "not a causal LM" in result.stderr
