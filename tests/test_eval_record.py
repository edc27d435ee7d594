"""`prag eval --record` / `--rescore`: the answers behind a table, and the table again from them alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ArtifactError, InputError
from engine.evaluate.record import RECORD_FORMAT, record_in_sidecar, rescore
from engine.evaluate.results import EvalResult, MethodScores
from engine.models import ModelArch
from engine.translator import ParameterTranslator, TranslatorConfig, save_translator
from tests.conftest import assert_one_line_error, run_cli

QUESTIONS = Path(__file__).resolve().parent.parent / "sample_corpus" / "questions.jsonl"


@pytest.mark.model
def test_record_then_rescore_gives_the_same_table(tmp_path):
    record = tmp_path / "run.record.jsonl"
    args = ("eval", "--data", str(QUESTIONS), "--group", "counterfactual", "--limit", "2", "--methods", "vanilla,rag",
            "--max-new-tokens", "6", "--out", str(tmp_path / "eval"), "--json")
    ran = run_cli(*args, "--record", str(record), env={"PRAG_HOME": str(tmp_path / "home")})
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["format"] == RECORD_FORMAT and lines[0]["methods"] == ["vanilla", "rag"] and lines[0]["placement"] == "cpu float32"
    assert len(lines) == 1 + 2 * 2 and not any("answers" in row or "question" in row for row in lines[1:])  # no data copied
    again = run_cli("eval", "--rescore", str(record), "--json", env={"PRAG_HOME": str(tmp_path / "home")})
    assert again.returncode == 0, again.stderr
    first, second = json.loads(ran.stdout), json.loads(again.stdout)
    assert first["methods"] == second["methods"]  # EM, F1, conflict rates and probes, from the record alone
    assert "context_rate" in second["methods"]["rag"] and "probes" in second["methods"]["rag"]


@pytest.mark.model
def test_reuse_copies_the_answers_of_methods_whose_settings_the_run_shares(tmp_path):
    home = {"PRAG_HOME": str(tmp_path / "home")}
    base = ("eval", "--data", QUESTIONS, "--group", "counterfactual", "--limit", "2", "--methods", "vanilla,rag", "--json")
    record = tmp_path / "first.record.jsonl"
    ran = run_cli(*base, "--max-new-tokens", "6", "--out", tmp_path / "first", "--record", record, env=home)
    assert ran.returncode == 0, ran.stderr
    # Mark the recorded answers: a run that copies one shows the mark, a run that computes it cannot.
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    record.write_text("".join(json.dumps({**row, "prediction": "copied"} if "method" in row and "format" not in row else row) + "\n"
                              for row in lines))
    # Another passage order: RAG reads it, vanilla does not.
    again = run_cli(*base, "--max-new-tokens", "6", "--order", "best-first", "--out", tmp_path / "second", "--reuse", record, env=home)
    assert again.returncode == 0, again.stderr
    rows = {method: [json.loads(line) for line in next((tmp_path / "second").glob(f"*__{method}.jsonl")).read_text().splitlines()]
            for method in ("vanilla", "rag")}
    assert [r["prediction"] for r in rows["vanilla"]] == ["copied", "copied"]
    assert all(r["answers"] for r in rows["vanilla"])  # ready to score, like a computed line
    assert len(rows["rag"]) == 2 and "copied" not in [r["prediction"] for r in rows["rag"]]
    other = run_cli(*base, "--max-new-tokens", "5", "--out", tmp_path / "third", "--reuse", record, env=home)
    assert_one_line_error(other, "shares no method's settings with this run (they differ in max_new_tokens")
    missing = run_cli(*base, "--reuse", tmp_path / "none.jsonl", env=home)
    assert_one_line_error(missing, "does not exist")


def test_reuse_copies_only_what_the_settings_allow_and_names_what_differs(tmp_path):
    from engine.evaluate.predictions import PredictionFile
    from engine.evaluate.record import reuse_record
    from engine.qa import load_qa

    items = load_qa(QUESTIONS, limit=2)
    settings = {"model": "m", "top_k": 3, "max_new_tokens": 20, "corpus": None, "prag_lora": "r8",
                "translator": {"path": "/old/translator.safetensors", "digest": "old"}}
    header = {"format": RECORD_FORMAT, "data": QUESTIONS.name, "data_path": str(QUESTIONS), "n": 2,
              "methods": ["vanilla", "dyprag"], "settings": settings}
    rows = [{"id": item.id, "method": method, "prediction": f"{method} said", "em": 0.0, "f1": 0.0, "error": None}
            for item in items for method in ("vanilla", "dyprag")]
    record = tmp_path / "r.record.jsonl"
    record.write_text("".join(json.dumps(line) + "\n" for line in [header, *rows]))

    def files() -> dict[str, PredictionFile]:
        return {m: PredictionFile(tmp_path / f"{m}-{len(list(tmp_path.iterdir()))}.jsonl", m) for m in ("vanilla", "dyprag")}

    # A new translator: vanilla's answers are still this run's, DyPRAG's are not.
    new_translator = {**settings, "translator": {"path": "/new.safetensors", "digest": "new"}}
    fresh = files()
    assert reuse_record(record, QUESTIONS, new_translator, fresh, items) == 2
    assert [r["prediction"] for r in fresh["vanilla"].records.values()] == ["vanilla said"] * 2
    assert fresh["dyprag"].records == {}
    assert fresh["vanilla"].records[items[0].id]["answers"] == list(items[0].answers)
    fresh["vanilla"].close()
    # The same translator reached by another path is the same translator.
    moved = {**settings, "translator": {"path": "/elsewhere.safetensors", "digest": "old"}}
    both = files()
    assert reuse_record(record, QUESTIONS, moved, both, items) == 4
    for f in both.values():
        f.close()
    with pytest.raises(InputError, match="they differ in max_new_tokens, translator"):
        reuse_record(record, QUESTIONS, {**new_translator, "max_new_tokens": 5}, files(), items)
    other = tmp_path / "other.jsonl"
    other.write_text(QUESTIONS.read_text())
    with pytest.raises(InputError, match="answers questions.jsonl, not other.jsonl"):
        reuse_record(record, other, settings, files(), items)


def test_a_damaged_or_foreign_record_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n')
    with pytest.raises(ArtifactError, match="not a prag-explorer evaluation record"):
        rescore(bad)
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"format": "prag-explorer-eval-record/1"\n')
    with pytest.raises(ArtifactError, match="not valid JSONL"):
        rescore(torn)
    result = run_cli("eval", "--rescore", str(tmp_path / "none.jsonl"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    moved = tmp_path / "moved.jsonl"
    moved.write_text(json.dumps({"format": RECORD_FORMAT, "data": "qa.jsonl", "data_path": str(tmp_path / "gone.jsonl"),
                                 "methods": ["rag"]}) + "\n" + json.dumps({"id": "q1", "method": "rag", "prediction": "x"}) + "\n")
    with pytest.raises(InputError, match="is not here"):
        rescore(moved)
    with pytest.raises(InputError, match="lacks 1 of the record's 1"):
        rescore(moved, QUESTIONS)


def test_the_table_goes_into_our_translators_sidecar_only(tmp_path):
    arch = ModelArch("tiny", hidden_size=8, intermediate_size=16, num_layers=2)
    path = tmp_path / "t.safetensors"
    save_translator(ParameterTranslator(TranslatorConfig(arch)), path, {"training": {"steps": 3}})
    scores = MethodScores("dyprag", "DyPRAG")
    scores.n, scores.em, scores.f1 = 2, 0.5, 0.75
    result = EvalResult(Path("popqa-dev.jsonl"), 2, {"dyprag": scores}, {}, "tiny", placement="cpu float32")
    assert record_in_sidecar(path, result, tmp_path / "popqa.record.jsonl", "prag eval ...")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["training"] == {"steps": 3}
    assert meta["evaluation"]["popqa-dev"]["methods"]["dyprag"]["f1"] == 0.75
    assert meta["evaluation"]["popqa-dev"]["predictions"] == "popqa.record.jsonl"
    assert not record_in_sidecar(tmp_path / "reference.pt", result, tmp_path / "x.jsonl", "prag eval ...")


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.mark.parametrize("record, data", [
    ("fictional.record.jsonl", None),
    ("popqa-dev-200.record.jsonl", SHARED_DATA / "popqa-dev.jsonl"),
    ("nqswap-dev-200.record.jsonl", SHARED_DATA / "nqswap-dev.jsonl"),
    ("popqa-dev-200-prag-mean.record.jsonl", SHARED_DATA / "popqa-dev.jsonl"),
])
def test_the_readme_results_are_the_shipped_records(record, data):
    """Every row of the README's result tables is what `--rescore` makes of the shipped record: no figure typed in."""
    from engine.cli.eval_cmd import markdown_table

    if data is not None and not data.is_file():
        pytest.skip(f"{data} is not beside this checkout")  # the data sets live in ../shared, never in the repo
    root = Path(__file__).resolve().parent.parent
    rows = [line for line in markdown_table(rescore(root / "assets" / "results" / record, data)).splitlines() if line.startswith("| ")]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert len(rows) > 2 and all(row in readme for row in rows), [row for row in rows if row not in readme]


@pytest.mark.parametrize("record, data, against", [
    ("nqswap-dev-200.record.jsonl", SHARED_DATA / "nqswap-dev.jsonl", "rag"),
    ("popqa-dev-200.record.jsonl", SHARED_DATA / "popqa-dev.jsonl", "vanilla"),
])
def test_the_readme_paired_tables_are_the_shipped_records(record, data, against):
    """The README's `--against` tables, row by row, are what the shipped records give (seeded bootstrap)."""
    from engine.evaluate.paired import paired_table

    if not data.is_file():
        pytest.skip(f"{data} is not beside this checkout")
    root = Path(__file__).resolve().parent.parent
    result = rescore(root / "assets" / "results" / record, data)
    title, _, rows = paired_table(result.paired(against), result.methods[against].label)
    readme = (root / "README.md").read_text(encoding="utf-8")
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    assert title in readme and all(line in readme for line in lines), [line for line in lines if line not in readme]


@pytest.mark.parametrize("record, data", [
    ("nqswap-dev-200.record.jsonl", SHARED_DATA / "nqswap-dev.jsonl"),
    ("popqa-dev-200.record.jsonl", SHARED_DATA / "popqa-dev.jsonl"),
])
def test_the_readme_coverage_tables_are_the_shipped_records(record, data):
    """The README's `--coverage` tables, row by row, are what the shipped records and this version's pairs give."""
    from engine.evaluate.coverage import coverage_table
    from engine.evaluate.record import rescore_with_coverage

    if not data.is_file():
        pytest.skip(f"{data} is not beside this checkout")
    root = Path(__file__).resolve().parent.parent
    title, _, rows = coverage_table(*reversed(rescore_with_coverage(root / "assets" / "results" / record, data)[1]))
    readme = (root / "README.md").read_text(encoding="utf-8")
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    assert title in readme and all(line in readme for line in lines), [line for line in lines if line not in readme]


SPAN_ROWS = {
    "fictional-top1": ("25 fictional (top-1 of the sample corpus)", None),
    "fictional-top3": ("25 fictional (top-3, best last)", None),
    "popqa-dev-201-280": ("PopQA 201-280, held out (its 2 passages)", SHARED_DATA / "popqa-dev.jsonl"),
    "nqswap-dev-64": ("NQ-Swap 1-64 (its one passage)", SHARED_DATA / "nqswap-dev.jsonl"),
}


@pytest.mark.parametrize("run", sorted(SPAN_ROWS))
def test_the_readme_lora_span_table_is_the_shipped_records(run):
    """Each row of "Where the combine methods' LoRA acts" is what `--rescore` makes of its record under assets/results/lora-span."""
    label, data = SPAN_ROWS[run]
    if data is not None and not data.is_file():
        pytest.skip(f"{data} is not beside this checkout")
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    for span in ("all", "question"):
        result = rescore(root / "assets" / "results" / "lora-span" / f"{run}-{span}.record.jsonl", data)
        cells = [f"{result.methods[m].em:.3f} / {result.methods[m].f1:.3f}" if m in result.methods else "(no LoRAs encoded)"
                 for m in ("rag", "prag_combine", "dyprag_combine")]
        row = f"| {label} | `{span}` | " + " | ".join(cells) + " |"
        assert row in readme, row
