"""`prag eval`: scores, resumable prediction files, conflict rates, bad input, and a SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.corpus import make_passage, sample_questions_path
from engine.errors import Cancelled, InputError
from engine.evaluate import EvalOptions, PredictionFile, _exclusive, evaluate, file_prefix, hits_for, prediction_path, summarize
from engine.methods import METHODS
from engine.metrics import contains_any
from engine.qa import Conflict, QAItem

REPO = Path(__file__).resolve().parent.parent
QUESTION_IDS = ("sq-001", "sq-002", "sq-049", "sq-050")
"""Two questions the passages answer, then two counterfactual (conflict) ones."""
TWO = (METHODS["vanilla"], METHODS["rag"])


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    rows = {json.loads(line)["id"]: line for line in sample_questions_path().read_text(encoding="utf-8").splitlines() if line.strip()}
    path = tmp_path_factory.mktemp("qa") / "sample-qa.jsonl"
    path.write_text("".join(rows[i] + "\n" for i in QUESTION_IDS), encoding="utf-8")
    return path


@pytest.fixture
def explorer(loaded, tmp_path):
    from engine.explorer import Explorer
    from engine.retrieval import BM25Retriever
    from engine.store import LoraStore

    passages = [make_passage("Placeholder index; eval answers from each row's own passages.", "unused")]
    return Explorer(loaded, BM25Retriever(passages), LoraStore(tmp_path / "loras", loaded.model_id), None, "no translator")


def count_compares(explorer, monkeypatch) -> list[tuple[str, list[str]]]:
    """Record (question, method names) of every compare call."""
    calls: list[tuple[str, list[str]]] = []
    original = explorer.compare

    def counted(question, hits, methods, *args, **kwargs):
        calls.append((question, [m.name for m in methods]))
        return original(question, hits, methods, *args, **kwargs)

    monkeypatch.setattr(explorer, "compare", counted)
    return calls


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def baseline(loaded, qa_file, tmp_path_factory):
    """One finished 3-question run (vanilla + RAG, 6 new tokens), copied by the tests that alter it."""
    from engine.explorer import Explorer
    from engine.retrieval import BM25Retriever
    from engine.store import LoraStore

    root = tmp_path_factory.mktemp("baseline")
    passages = [make_passage("Placeholder index.", "unused")]
    explorer = Explorer(loaded, BM25Retriever(passages), LoraStore(root / "loras", loaded.model_id), None, "no translator")
    options = EvalOptions(data=qa_file, methods=TWO, limit=3, max_new_tokens=6, out_dir=root / "out")
    result = evaluate(options, explorer=explorer)
    return options, result


def copy_run(baseline, tmp_path) -> tuple[EvalOptions, dict[str, Path]]:
    options, result = baseline
    out = tmp_path / "out"
    shutil.copytree(options.out_dir, out)
    files = {name: out / path.name for name, path in result.predictions.items()}
    return EvalOptions(data=options.data, methods=options.methods, limit=3, max_new_tokens=6, out_dir=out), files


# --- a full run --------------------------------------------------------------------------


def test_run_writes_one_line_per_question_and_method(baseline) -> None:
    options, result = baseline
    assert result.n == 3 and result.computed == 3 and result.resumed == 0
    for name, path in result.predictions.items():
        lines = read_lines(path)
        assert [r["id"] for r in lines] == list(QUESTION_IDS[:3])
        assert {tuple(sorted(r)) for r in lines} == {
            ("answers", "em", "error", "f1", "id", "latency_s", "method", "passages", "prediction", "probes", "tokens")
        }
        assert all(r["method"] == name and r["error"] is None and 1 <= r["tokens"] <= 6 for r in lines)
        # The gold answer's log-probability under this method's own prompt: a real probability, not a placeholder.
        assert all("gold" in r["probes"] and all(-200.0 < v < 0.0 for v in r["probes"].values()) for r in lines)
        conflict = [r for r in lines if r["id"] == "sq-049"]
        assert all(set(r["probes"]) == {"gold", "original", "substituted"} for r in conflict)
    scores = result.methods["rag"]
    assert scores.n == 3 and scores.errors == 0 and 0.0 <= scores.em <= scores.f1 <= 1.0
    assert scores.latency_s is not None and scores.latency_s > 0
    # RAG reads the passage: "Tenzing Norgay" and "Khartoum" are in the first two answers.
    rag = read_lines(result.predictions["rag"])
    assert rag[0]["f1"] > 0 and rag[1]["f1"] > 0


def test_file_names_encode_the_settings(baseline) -> None:
    _, result = baseline
    name = result.predictions["vanilla"].name
    assert name.startswith("sample-qa__SmolLM2-135M-Instruct__k3__n6__given__tr-none__")
    assert name.endswith("__vanilla.jsonl")
    fp = {"model": "m", "top_k": 3, "max_new_tokens": 20, "corpus": None, "translator": None, "prag_lora": "r2"}
    assert file_prefix(Path("a/popqa-dev.jsonl"), fp) != file_prefix(Path("a/popqa-dev.jsonl"), {**fp, "max_new_tokens": 6})
    assert file_prefix(Path("a/popqa-dev.jsonl"), fp) != file_prefix(Path("a/popqa-dev.jsonl"), {**fp, "prag_lora": "r4"})
    with_corpus = {**fp, "corpus": {"path": "/x/wiki.jsonl", "passages": 5, "digest": "abc"}}
    assert "__corpus-wiki__" in file_prefix(Path("popqa-dev.jsonl"), with_corpus)
    with_translator = {**fp, "translator": {"path": "/t/my-tr.safetensors", "digest": "abc"}}
    assert "__tr-my-tr__" in file_prefix(Path("popqa-dev.jsonl"), with_translator)
    moved = {**with_translator, "translator": {"path": "t/my-tr.safetensors", "digest": "abc"}}
    assert file_prefix(Path("popqa-dev.jsonl"), moved) == file_prefix(Path("popqa-dev.jsonl"), with_translator)
    retrained = {**with_translator, "translator": {"path": "/t/my-tr.safetensors", "digest": "abd"}}
    assert file_prefix(Path("popqa-dev.jsonl"), retrained) != file_prefix(Path("popqa-dev.jsonl"), with_translator)


def test_markdown_table_has_a_row_per_method(baseline) -> None:
    from engine.cli.eval_cmd import markdown_table

    _, result = baseline
    lines = markdown_table(result).splitlines()
    assert lines[0].startswith("sample-qa.jsonl: 3 questions") and lines[2].startswith("| Method | EM | F1 |")
    rows = [line for line in lines[4:] if line.startswith("| ")]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [s.label for s in result.methods.values()]


def test_each_method_file_depends_only_on_what_the_method_reads(tmp_path) -> None:
    fp = {"model": "m", "top_k": 3, "max_new_tokens": 20, "corpus": None, "translator": None, "prag_lora": "r2"}
    trained = {**fp, "translator": {"path": "/t/tr.safetensors", "digest": "abc"}}
    relora = {**fp, "prag_lora": "r4"}
    data = Path("popqa-dev.jsonl")

    def same(method: str, a: dict, b: dict) -> bool:
        return prediction_path(tmp_path, data, a, METHODS[method]) == prediction_path(tmp_path, data, b, METHODS[method])

    assert same("vanilla", fp, trained) and same("rag", fp, relora) and same("prag", fp, trained)
    assert not same("dyprag", fp, trained) and not same("dyprag_combine", fp, trained)
    assert not same("prag", fp, relora) and not same("prag_combine", fp, relora) and same("dyprag", fp, relora)


# --- resume ------------------------------------------------------------------------------


def test_resume_skips_finished_questions(baseline, explorer, monkeypatch, tmp_path) -> None:
    options, files = copy_run(baseline, tmp_path)
    calls = count_compares(explorer, monkeypatch)
    again = evaluate(options, explorer=explorer)
    assert calls == [] and again.computed == 0 and again.resumed == 6
    assert again.methods == baseline[1].methods

    # Lose RAG's last answer: only that question and only that method run again.
    lines = files["rag"].read_text(encoding="utf-8").splitlines(keepends=True)
    files["rag"].write_text("".join(lines[:-1]), encoding="utf-8")
    evaluate(options, explorer=explorer)
    assert [(q[:20], m) for q, m in calls] == [("In which city does t", ["rag"])]
    assert [r["id"] for r in read_lines(files["rag"])] == list(QUESTION_IDS[:3])

    # A larger limit reuses the three finished questions and answers only the fourth.
    calls.clear()
    bigger = evaluate(EvalOptions(data=options.data, methods=TWO, limit=4, max_new_tokens=6, out_dir=options.out_dir), explorer=explorer)
    assert len(calls) == 1 and calls[0][1] == ["vanilla", "rag"] and bigger.n == 4 and bigger.computed == 1


def test_torn_final_line_is_dropped_and_asked_again(baseline, explorer, monkeypatch, tmp_path) -> None:
    options, files = copy_run(baseline, tmp_path)
    whole = files["vanilla"].read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    files["vanilla"].write_bytes(whole[: last_start + 25])  # a writer killed mid-line
    calls = count_compares(explorer, monkeypatch)
    result = evaluate(options, explorer=explorer)
    assert len(calls) == 1 and calls[0][1] == ["vanilla"]
    assert result.repaired == 1 and result.computed == 1
    raw = files["vanilla"].read_text(encoding="utf-8")
    assert raw.endswith("\n")
    ids = [r["id"] for r in read_lines(files["vanilla"])]
    assert sorted(ids) == sorted(QUESTION_IDS[:3]) and len(ids) == 3


def test_prediction_file_drops_garbage_and_failed_lines(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    good = {"id": "a", "method": "rag", "prediction": "x", "error": None}
    failed = {"id": "b", "method": "rag", "prediction": "", "error": "no PRAG LoRA"}
    other = {"id": "c", "method": "vanilla", "prediction": "y", "error": None}
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps(failed), json.dumps(other), '{"id": "d", "meth']),
                    encoding="utf-8")
    file = PredictionFile(path, "rag")
    assert file.load() == 4
    assert list(file.records) == ["a"]
    assert read_lines(path) == [good]


def test_failed_answers_count_as_empty_and_are_retried(explorer, qa_file, monkeypatch, tmp_path) -> None:
    options = EvalOptions(data=qa_file, methods=(METHODS["vanilla"], METHODS["prag"]), limit=2, max_new_tokens=6, out_dir=tmp_path)
    result = evaluate(options, explorer=explorer)
    prag = result.methods["prag"]
    assert prag.errors == 2 and prag.em == 0.0 and prag.f1 == 0.0 and prag.latency_s is None
    assert "no PRAG LoRA" in (prag.first_error or "")
    assert [r["error"] is not None for r in read_lines(result.predictions["prag"])] == [True, True]
    calls = count_compares(explorer, monkeypatch)
    evaluate(options, explorer=explorer)
    assert [m for _, m in calls] == [["prag"], ["prag"]]  # vanilla is finished; PRAG is asked again
    assert len(read_lines(result.predictions["prag"])) == 2  # the retry replaced, not duplicated, the lines


def test_cancel_stops_after_the_question_in_flight(explorer, qa_file, monkeypatch, tmp_path) -> None:
    cancel = threading.Event()
    original = explorer.compare

    def compare_then_cancel(*args, **kwargs):
        comparison = original(*args, **kwargs)
        cancel.set()  # as if the user pressed stop while this question was generating
        return comparison

    monkeypatch.setattr(explorer, "compare", compare_then_cancel)
    events: list[tuple[str, int, int | None]] = []
    options = EvalOptions(data=qa_file, methods=(METHODS["vanilla"],), limit=3, max_new_tokens=2, out_dir=tmp_path)
    with pytest.raises(Cancelled, match="after 1 of 3"):
        evaluate(options, explorer=explorer, progress=lambda e: events.append((e.label, e.done, e.total)), cancel=cancel)
    assert events == [("Evaluating sample-qa", 0, 3), ("Evaluating sample-qa", 1, 3)]
    assert [r["id"] for r in read_lines(next(tmp_path.glob("*__vanilla.jsonl")))] == ["sq-001"]


def test_second_run_on_the_same_files_is_refused(tmp_path) -> None:
    with _exclusive(tmp_path / ".x.lock", "x__*.jsonl"):
        with pytest.raises(InputError, match="another `prag eval` is writing x__"):
            with _exclusive(tmp_path / ".x.lock", "x__*.jsonl"):
                pass


# --- conflict rates and scoring ----------------------------------------------------------


def test_conflict_rates_follow_the_predictions(baseline) -> None:
    _, result = baseline
    rag = {r["id"]: r for r in read_lines(result.predictions["rag"])}
    conflict = rag["sq-049"]["prediction"]
    for scores in result.methods.values():
        assert scores.conflict_n == 1
    assert result.methods["rag"].context_rate == float(contains_any(conflict, ["Rome"]))
    assert result.methods["rag"].memory_rate == float(contains_any(conflict, ["Paris"]))
    assert set(result.to_json()["methods"]["rag"]) == {
        "em", "f1", "precision", "recall", "latency_s", "tokens", "errors", "passages", "context_rate", "memory_rate", "probes"
    }


def test_summarize_exact_numbers() -> None:
    items = [
        QAItem("q1", "Where?", ("Rome",), conflict=Conflict(("Paris",), ("Rome",))),
        QAItem("q2", "Where?", ("Rome",), conflict=Conflict(("Paris",), ("Rome",))),
        QAItem("q3", "Who?", ("Tenzing Norgay",)),
        QAItem("q4", "Unanswered?", ("x",)),
    ]
    rows = {
        "q1": {"id": "q1", "prediction": "Rome, not Paris", "error": None, "latency_s": 1.0, "tokens": 4},
        "q2": {"id": "q2", "prediction": "Rome", "error": "boom", "latency_s": 0.0, "tokens": 0},
        "q3": {"id": "q3", "prediction": "Tenzing Norgay", "error": None, "latency_s": 3.0, "tokens": 6},
    }
    scores = summarize(items, [METHODS["rag"]], {"rag": rows})["rag"]
    assert scores.n == 3  # q4 has no prediction yet
    assert scores.em == pytest.approx(1 / 3)  # the failed "Rome" counts as empty
    assert scores.f1 == pytest.approx((2 * (1 / 3) / (1 + 1 / 3) + 0 + 1) / 3)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.errors == 1 and scores.first_error == "boom"
    assert scores.latency_s == pytest.approx(2.0) and scores.tokens == pytest.approx(5.0)
    assert scores.conflict_n == 2 and scores.context_rate == 0.5 and scores.memory_rate == 0.5


def test_rows_with_more_passages_than_k_use_bm25_among_them() -> None:
    passages = tuple(make_passage(f"Filler passage number {i} about rivers and lakes.", f"p{i}") for i in range(5))
    target = make_passage("The Blue Nile and the White Nile join at Khartoum.", "Nile")
    item = QAItem("n", "Where do the White Nile and the Blue Nile join?", ("Khartoum",), passages=passages + (target,))
    hits = hits_for(item, None, EvalOptions(data=Path("x.jsonl"), top_k=2))  # type: ignore[arg-type]
    # Only the Nile passage shares a term with the question; the first filler fills the second slot.
    assert [h.passage for h in hits] == [target, passages[0]] and [h.rank for h in hits] == [1, 2]
    assert hits[0].score > 0 and hits[1].matched_terms == ()
    nile = passages[:3] + (make_passage("The Blue Nile starts at Lake Tana.", "Blue Nile"), target)
    both = hits_for(QAItem("b", item.question, ("Khartoum",), passages=nile), None, EvalOptions(data=Path("x.jsonl"), top_k=2))  # type: ignore[arg-type]
    assert [h.passage.title for h in both] == ["Nile", "Blue Nile"]
    few = hits_for(QAItem("m", "Where?", ("x",), passages=(target,)), None, EvalOptions(data=Path("x.jsonl")))  # type: ignore[arg-type]
    assert [h.passage for h in few] == [target]


def test_a_rows_own_passages_are_scored_against_the_pooled_index_for_a_weighted_merge() -> None:
    from types import SimpleNamespace

    from engine.explorer import merge_weights
    from engine.retrieval import BM25Retriever

    subject = make_passage("Odalys Pemberforth (born 1931) was a Harnwick engineer who designed wind pumps.", "Odalys Pemberforth")
    generic = make_passage("An engineer is a person who designs, builds or maintains engines, machines or structures.", "Engineer")
    others = tuple(make_passage(f"Filler {i} tells of a harbour town and its fishing boats.", f"f{i}") for i in range(6))
    pooled = SimpleNamespace(retriever=BM25Retriever((subject, generic, *others)))
    item = QAItem("o", "What is Odalys Pemberforth's occupation?", ("engineer",), passages=(subject, generic))
    hits = hits_for(item, pooled, EvalOptions(data=Path("x.jsonl"), top_k=3))  # type: ignore[arg-type]
    assert [h.passage for h in hits] == [subject, generic]  # the file's order is kept ...
    assert hits[0].score > 0 and hits[1].score == 0  # ... and the passage naming the subject gets the weight
    assert merge_weights("weighted", 2, [h.score for h in hits]) == [1.0, 0.0]
    assert merge_weights("mean", 2, [h.score for h in hits]) == [0.5, 0.5]


# --- the command line --------------------------------------------------------------------


def prag(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path) -> None:
    assert_one_line_error(prag("eval", "--data", str(tmp_path / "missing.jsonl")), "does not exist")
    assert_one_line_error(prag("eval"), "no QA file given")
    no_answers = tmp_path / "no-answers.jsonl"
    no_answers.write_text('{"id": "a", "question": "Who?", "passages": [{"title": "", "text": "x"}]}\n', encoding="utf-8")
    assert_one_line_error(prag("eval", "--data", str(no_answers)), '"answers" must be a non-empty list')
    no_question = tmp_path / "no-question.jsonl"
    no_question.write_text('{"id": "a", "answers": ["x"]}\n', encoding="utf-8")
    assert_one_line_error(prag("eval", "--data", str(no_question)), 'missing "question"')
    no_passages = tmp_path / "no-passages.jsonl"
    no_passages.write_text('{"id": "a", "question": "Who?", "answers": ["x"]}\n', encoding="utf-8")
    assert_one_line_error(prag("eval", "--data", str(no_passages)), "has no passages")
    twice = tmp_path / "twice.jsonl"
    row = '{"id": "a", "question": "Who?", "answers": ["x"], "passages": [{"title": "", "text": "x"}]}\n'
    twice.write_text(row + row, encoding="utf-8")
    assert_one_line_error(prag("eval", "--data", str(twice)), "appears twice")
    assert_one_line_error(prag("eval", "--data", str(twice), "--methods", "nope"), "unknown method")
    assert_one_line_error(prag("eval", "--data", str(twice), "--limit", "0"), "limit must be at least 1")
    ok = tmp_path / "ok.jsonl"
    ok.write_text(row, encoding="utf-8")
    assert_one_line_error(prag("eval", "--data", str(ok), "--out", str(ok / "sub")), "cannot create the predictions folder")
    assert_one_line_error(prag("eval", "--data", str(ok), "--json", "--markdown"), "pass one of them")
    assert_one_line_error(prag("eval", "--data", str(ok), "--offset", "1"), "no questions after the first 1")


def test_sigkill_mid_run_resumes_to_the_same_predictions(loaded, explorer, qa_file, tmp_path) -> None:
    out = tmp_path / "killed"
    args = ("eval", "--data", str(qa_file), "--limit", "4", "--methods", "vanilla,rag", "--max-new-tokens", "6", "--out", str(out))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.read_bytes().count(b"\n") >= 1 for p in out.glob("*.jsonl")):
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert sum(p.read_bytes().count(b"\n") for p in out.glob("*.jsonl")) < 8  # really interrupted

    resumed = prag(*args, "--json")
    assert resumed.returncode == 0, resumed.stderr
    table = json.loads(resumed.stdout)
    assert table["n"] == 4 and set(table["methods"]) == {"vanilla", "rag"}
    assert {"em", "f1", "precision", "recall", "latency_s", "tokens", "context_rate", "memory_rate"} <= set(table["methods"]["rag"])

    reference = evaluate(EvalOptions(data=qa_file, methods=TWO, limit=4, max_new_tokens=6, out_dir=tmp_path / "whole"), explorer=explorer)
    for _name, path in reference.predictions.items():
        expected = {r["id"]: r["prediction"] for r in read_lines(path)}
        got = read_lines(out / path.name)
        assert len({r["id"] for r in got}) == len(got) == 4  # no duplicates
        assert {r["id"]: r["prediction"] for r in got} == expected


def test_offset_takes_a_dev_split_of_the_same_file(qa_file) -> None:
    from engine.errors import InputError
    from engine.evaluate import load_items

    every = load_items(EvalOptions(data=qa_file))
    assert [i.id for i in load_items(EvalOptions(data=qa_file, offset=1, limit=1))] == [every[1].id]
    assert [i.id for i in load_items(EvalOptions(data=qa_file, offset=1))] == [i.id for i in every[1:]]
    with pytest.raises(InputError, match="no questions after the first"):
        load_items(EvalOptions(data=qa_file, offset=len(every)))


def test_ctrl_c_stops_after_the_question_in_flight(qa_file, tmp_path) -> None:
    out = tmp_path / "interrupted"
    args = ("eval", "--data", str(qa_file), "--limit", "4", "--methods", "vanilla", "--max-new-tokens", "6", "--out", str(out))
    # A fresh session: SIGINT reaches only this process, as Ctrl-C in its own terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not any(p.read_bytes().count(b"\n") >= 1 for p in out.glob("*.jsonl")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "evaluation stopped after" in lines[0] and "Traceback" not in stderr
    done = [r["id"] for p in out.glob("*.jsonl") for r in read_lines(p)]
    assert 1 <= len(done) < 4 and len(set(done)) == len(done)  # the finished questions are kept, once each


def test_a_run_cleans_only_its_own_files_temps(explorer, qa_file, tmp_path) -> None:
    options = EvalOptions(data=qa_file, methods=(METHODS["vanilla"],), limit=1, max_new_tokens=2, out_dir=tmp_path)
    first = evaluate(options, explorer=explorer)
    vanilla = first.predictions["vanilla"]
    rag = vanilla.with_name(vanilla.name.replace("__vanilla.jsonl", "__rag.jsonl"))  # same settings, another method
    dead = vanilla.with_name(f".{vanilla.name}.k1ll3d.tmp")  # what a run killed mid-repair leaves
    busy = rag.with_name(f".{rag.name}.bu5y00.tmp")  # a concurrent RAG-only run writing right now
    dead.write_text("half")
    busy.write_text("being written")
    evaluate(options, explorer=explorer)
    assert not dead.exists() and busy.exists()
    assert len(list(tmp_path.glob("*.settings.json"))) == 1  # the run's own files, named by its methods


def test_questions_batched_in_one_pass_answer_as_one_at_a_time(loaded, baseline, tmp_path) -> None:
    """--batch-questions: three questions' rows (their own prompts, passages and probes) in one generation."""
    from engine.explorer import Explorer
    from engine.retrieval import BM25Retriever
    from engine.store import LoraStore

    options, result = baseline
    explorer = Explorer(loaded, BM25Retriever([make_passage("Placeholder index.", "unused")]),
                        LoraStore(tmp_path / "loras", loaded.model_id), None, "no translator")
    batched = evaluate(EvalOptions(data=options.data, methods=TWO, limit=3, max_new_tokens=6, out_dir=tmp_path / "out",
                                   batch_questions=3), explorer=explorer)
    assert batched.computed == 3
    for name, path in result.predictions.items():
        alone, together = read_lines(path), read_lines(batched.predictions[name])
        assert [r["prediction"] for r in together] == [r["prediction"] for r in alone]
        for one, many in zip(alone, together, strict=True):
            assert many["probes"] == pytest.approx(one["probes"], abs=0.05)
    with pytest.raises(InputError, match="questions per batch"):
        evaluate(EvalOptions(data=options.data, methods=TWO, limit=3, out_dir=tmp_path / "x", batch_questions=0), explorer=explorer)


def test_the_lora_span_keys_only_the_combine_methods_predictions():
    """A run with the LoRA scoped to the question re-runs PRAG-combine and DyPRAG-combine; RAG and PRAG keep their files."""
    from engine.evaluate.predictions import methods_fingerprint
    from engine.methods import METHODS

    fp = {"model": "m", "top_k": 3, "max_new_tokens": 20, "corpus": None, "translator": {"digest": "t"}, "prag_lora": "r8",
          "merge": "weighted", "order": "best-last", "lora_span": "question"}
    for name in ("vanilla", "rag", "prag", "dyprag"):
        assert "lora_span" not in methods_fingerprint(fp, [METHODS[name]]), name
    for name in ("prag_combine", "dyprag_combine"):
        assert methods_fingerprint(fp, [METHODS[name]])["lora_span"] == "question", name
    papers = {k: v for k, v in fp.items() if k != "lora_span"}  # "all" is not written: records made before keep their keys
    assert methods_fingerprint(papers, [METHODS["prag_combine"]]) != methods_fingerprint(fp, [METHODS["prag_combine"]])
