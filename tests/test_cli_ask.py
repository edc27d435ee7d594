"""`prag ask` end to end, as a user runs it (subprocess: real exit codes, real output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_one_line_error
from tests.conftest import run_cli as prag

QUESTIONS = REPO / "sample_corpus" / "questions.jsonl"


def test_ask_json_returns_six_answers():
    result = prag("ask", "Who wrote Hamlet?", "--methods", "all", "--json", "--max-new-tokens", "6",
                  "--score", "Jane Austen", "--score", "William Shakespeare")
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
    # --score: every answered method gives both candidates a log-probability under its own prompt
    scored = {a["method"]: {s["text"]: s for s in a["scores"]} for a in payload["answers"] if a["error"] is None}
    assert set(scored) >= {"vanilla", "rag"}
    for scores in scored.values():
        assert set(scores) == {"Jane Austen", "William Shakespeare"}
        assert all(s["logprob"] < 0 and s["tokens"] >= 2 for s in scores.values())
    # the sample corpus's counterfactual passage says Jane Austen wrote Hamlet: reading it makes her far more likely
    assert scored["rag"]["Jane Austen"]["logprob"] > scored["vanilla"]["Jane Austen"]["logprob"] + 1.0


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
        (["ask", "q", "--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["ask", "q", "--max-new-tokens", "-3"], "--max-new-tokens must be at least 1, got -3"),
        (["ask", "q", "--rerank", "dynamic", "--candidates", "0"], "--candidates must be at least 1"),
        (["ask", "q", "--reranker-model", "/tmp"], "--reranker-model needs --rerank dynamic"),
        (["ask", "q", "--rerank", "dynamic", "--reranker-model", "/does/not/exist"], "reranker-model /does/not/exist does not exist"),
        (["eval", "--data", str(QUESTIONS), "--reranker-model", "/tmp"], "--reranker-model needs --rerank dynamic"),
        (["eval", "--data", str(QUESTIONS), "--top-k", "0"], "--top-k must be at least 1"),
        (["eval"], "prag data convert"),
        (["tui", "--reranker-model", "/tmp"], "--reranker-model needs --rerank dynamic"),
        (["tui", "--candidates", "0"], "--candidates must be at least 1"),
        (["ask", "q", "--corpus", "/does/not/exist.jsonl"], "does not exist"),
        (["ask", "q", "--model", "/does/not/exist"], "does not exist"),
        (["ask", "q", "--recipe", "fast"], "unknown encode recipe 'fast'"),
        (["ask", "q", "--merge", "cat"], "unknown merge 'cat'"),
        (["ask", "q", "--order", "random"], "unknown passage order 'random'"),
        (["ask", "q", "--lora-span", "passages"], "unknown LoRA span 'passages'"),
        (["eval", "--data", str(QUESTIONS), "--lora-span", "half"], "unknown LoRA span 'half'"),
        (["tui", "--lora-span", "x"], "unknown LoRA span 'x'"),
        (["ask", "q", "--score", ""], "--score was given an empty answer"),
        (["ask", "q", "--score", "Paris", "--score", "  "], "--score was given an empty answer"),
        (["ask", "q", "--layers", "20-10"], "layer range '20-10' is empty"),
        (["ask", "q", "--layers", "0-99"], "ends past the model's last layer (29)"),
        (["ask", "q", "--layers", "x"], "layer range 'x' is not A-B"),
        (["eval", "--data", str(QUESTIONS), "--merge", "cat"], "unknown merge 'cat'"),
        (["eval", "--data", str(QUESTIONS), "--recipe", "fast"], "unknown encode recipe 'fast'"),
        (["encode", "--augment", str(QUESTIONS), "--recipe", "fast"], "unknown encode recipe 'fast'"),
        (["tui", "--layers", "3-1"], "layer range '3-1' is empty"),
        (["tui", "--recipe", "fast"], "unknown encode recipe 'fast'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    assert_one_line_error(prag(*args), needle)


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


# --- the command line as a whole (no model) ----------------------------------------------------------


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = prag("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"prag-explorer {version('prag-explorer')}"


@pytest.mark.parametrize("command", ["encode", "eval"])
def test_help_keeps_square_brackets(command):
    result = prag(command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "pip install 'prag-explorer[cluster]'" in result.stdout


def test_shared_options_read_the_same_everywhere():
    """One definition per shared option: the same help line in every command that takes it."""
    import re

    def help_line(command: list[str], flag: str) -> str:
        out = prag(*command, "--help", env={"COLUMNS": "400"}).stdout
        line = next(line for line in out.splitlines() if re.search(rf"\s{re.escape(flag)}\s", line))
        return " ".join(line.replace("│", " ").split()[1:])  # drop the flag itself and the box

    for flag, commands in {"--model": [["ask"], ["eval"], ["tui"], ["augment"], ["encode"], ["train"], ["rerank-data"]],
                           "--store": [["ask"], ["eval"], ["tui"], ["encode"], ["train"]],
                           "--reranker-model": [["ask"], ["eval"], ["tui"]],
                           "--candidates": [["ask"], ["eval"], ["tui"], ["rerank-data"]]}.items():
        lines = {tuple(command): help_line(command, flag) for command in commands}
        assert len(set(lines.values())) == 1, (flag, lines)


def test_settings_precedence_flag_env_config_command_default(monkeypatch, isolated_home):
    from engine.cli.common import settings_from

    eval_defaults = {"top_k": 3, "max_new_tokens": 20}
    assert (lambda s: (s.top_k, s.max_new_tokens))(settings_from(command_defaults=eval_defaults)) == (3, 20)
    assert settings_from().max_new_tokens == 32  # ask's default: the built-in one
    (isolated_home / "config.toml").write_text("top_k = 4\nmax_new_tokens = 12\n", encoding="utf-8")
    assert (lambda s: (s.top_k, s.max_new_tokens))(settings_from(command_defaults=eval_defaults)) == (4, 12)
    monkeypatch.setenv("PRAG_TOP_K", "5")
    assert (lambda s: (s.top_k, s.max_new_tokens))(settings_from(command_defaults=eval_defaults)) == (5, 12)
    assert (lambda s: (s.top_k, s.max_new_tokens))(settings_from(command_defaults=eval_defaults, top_k=2, max_new_tokens=7)) == (2, 7)


def test_eval_reads_top_k_from_the_environment_and_says_it_will_encode(tmp_path):
    qa = tmp_path / "one.jsonl"
    qa.write_text(QUESTIONS.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    result = prag("eval", "--data", qa, "--methods", "vanilla", "--markdown", "--out", tmp_path / "eval", env={"PRAG_TOP_K": "1"})
    assert result.returncode == 0, result.stderr
    assert "top-1, 20 new tokens" in result.stdout.splitlines()[0]  # env over eval's reference top-k; eval's own 20 tokens
    assert "encoded first" not in result.stderr  # no PRAG method, nothing to encode

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    failed = prag("eval", "--data", qa, "--methods", "prag", "--model", not_a_model, "--out", tmp_path / "eval")
    assert failed.returncode == 2
    note, error = [line for line in failed.stderr.splitlines() if line.strip()]
    assert note.startswith("note: PRAG LoRAs missing from the store") and "--no-encode" in note and "loras" in note
    assert "not-a-model" in error
    quiet = prag("eval", "--data", qa, "--methods", "prag", "--no-encode", "--model", not_a_model, "--out", tmp_path / "eval")
    assert_one_line_error(quiet, "not-a-model")
