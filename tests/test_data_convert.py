"""`prag data convert`: each public release layout -> QA JSONL -> `engine.qa.load_qa`, and bad input.

Every fixture is a few records written here in the layout the release publishes (field names, nesting,
quoting), so no download and no model is needed.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data import convert_file, qa_info
from engine.errors import InputError
from engine.qa import load_qa

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _convert(fmt: str, raw: Path, tmp_path: Path, **kwargs):
    out = tmp_path / f"{raw.name}.qa.jsonl"
    report = convert_file(fmt, raw, out, **kwargs)
    return report, load_qa(out), [json.loads(line) for line in out.read_text("utf-8").splitlines()]


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli.app", "data", *map(str, args)], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=60)


# -- PopQA -------------------------------------------------------------------------------------------------

POPQA_HEADER = ("id\tsubj\tprop\tobj\tsubj_id\tprop_id\tobj_id\ts_aliases\to_aliases\ts_uri\to_uri\ts_wiki_title\to_wiki_title"
                "\ts_pop\to_pop\tquestion\tpossible_answers")
POPQA_TSV = "\n".join([
    POPQA_HEADER,
    ('4222362\tGeorge Rankin\toccupation\tpolitician\t1850297\t22\t2834605\t"[""George James Rankin""]"\t"[""political leader"",""pol""]"\t'
    'http://www.wikidata.org/entity/Q5543720\thttp://www.wikidata.org/entity/Q82955\tGeorge Rankin\tPolitician\t142\t25692\t'
    'What is George Rankin\'s occupation?\t"[""politician"", ""political leader"", ""pol"", ""politician""]"'),
    ('6054\tSøren Kierkegaard\tplace of birth\tCopenhagen\t1\t2\t3\t[]\t[]\tu\tu\tSøren Kierkegaard\tCopenhagen\t9000\t80000\t'
    'In what city was Søren Kierkegaard born?\t"[""Copenhagen"", ""København""]"'),
    '77\tNobody\toccupation\t\t1\t2\t3\t[]\t[]\tu\tu\tNobody\t\t1\t1\tWhat is Nobody\'s occupation?\t[]',
]) + "\n"


def test_popqa_tsv(tmp_path):
    report, items, rows = _convert("popqa", _write(tmp_path / "popQA.tsv", POPQA_TSV), tmp_path)
    assert (report.converted, dict(report.skipped)) == (2, {"no answer": 1})
    first, second = items
    assert first.id == "popqa-4222362" and first.question == "What is George Rankin's occupation?"
    assert first.answers == ("politician", "political leader", "pol")  # JSON list in a string, deduplicated
    assert first.passages == () and first.conflict is None
    assert first.meta == {"source": "popqa", "source_index": 0, "s_pop": 142, "o_pop": 25692, "prop": "occupation",
                          "subj": "George Rankin", "obj": "politician", "s_wiki_title": "George Rankin", "o_wiki_title": "Politician"}
    assert second.answers == ("Copenhagen", "København") and second.id == "popqa-6054"
    assert "passages" not in rows[0]


def test_popqa_csv_and_jsonl(tmp_path):
    import csv

    reader_rows = list(csv.reader(POPQA_TSV.splitlines(), delimiter="\t"))
    with open(tmp_path / "popqa.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(reader_rows)
    _, items, _ = _convert("popqa", tmp_path / "popqa.csv", tmp_path)
    assert [i.answers[0] for i in items] == ["politician", "Copenhagen"]
    # a Hugging Face JSON Lines export: same columns, possible_answers still a JSON string
    hf = [dict(zip(reader_rows[0], r, strict=False)) for r in reader_rows[1:]]
    _write(tmp_path / "popqa.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in hf))
    _, items2, _ = _convert("popqa", tmp_path / "popqa.jsonl", tmp_path)
    assert [(i.id, i.answers) for i in items2] == [(i.id, i.answers) for i in items]


def test_popqa_json_with_paragraphs(tmp_path):
    """The NeuroPath / HippoRAG PopQA subset: a JSON array of PopQA rows plus `paragraphs`."""
    rows = [{"id": 0, "subj": "George Rankin", "prop": "occupation", "obj": "politician", "s_aliases": "[\"George James Rankin\"]",
             "s_wiki_title": "George Rankin", "o_wiki_title": "Politician", "s_pop": 142, "o_pop": 25692,
             "question": "What is George Rankin's occupation?", "possible_answers": "[\"politician\", \"pol\"]",
             "paragraphs": [{"title": "George Rankin", "text": "George James Rankin was an Australian politician.", "is_supporting": True},
                            {"title": "Politician", "text": "A politician takes part in policy-making.", "is_supporting": False}]}]
    raw = _write(tmp_path / "popqa.json", json.dumps(rows, indent=4))
    _, items, _ = _convert("popqa", raw, tmp_path)
    (item,) = items
    assert item.id == "popqa-0000"
    assert [(p.title, p.text) for p in item.passages] == [("George Rankin", "George James Rankin was an Australian politician."),
                                                         ("Politician", "A politician takes part in policy-making.")]
    assert item.meta["is_supporting"] == [True, False]


# -- NQ-Swap -----------------------------------------------------------------------------------------------

NQSWAP = [
    {"question": "how many episodes are in chicago fire season 4",
     "org_context": "<P> The season contained 23 episodes . </P>", "org_answer": ["23"],
     "sub_context": "<P> The season contained 775 episodes . </P>", "sub_answer": ["775"]},
    {"question": "how many episodes are in chicago fire season 4",
     "org_context": "<P> The season contained 23 episodes .", "org_answer": ["23"],
     "sub_context": "<Table> <Tr> <Td> Season </Td> <Td> three episodes </Td> </Tr> </Table> <P", "sub_answer": "three"},
    {"question": "who sang the song", "org_context": "<P> Ann sang it. </P>", "org_answer": ["Ann"],
     "sub_context": "<P> Bob sang it. </P>", "sub_answer": ["Bob", "Bob"]},
]


@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_nq_swap(tmp_path, layout):
    text = "".join(json.dumps(r) + "\n" for r in NQSWAP) if layout == "jsonl" else json.dumps(NQSWAP)
    report, items, rows = _convert("nq-swap", _write(tmp_path / f"nqswap.{layout}", text), tmp_path)
    assert report.converted == 3 and report.with_conflict == 3 and report.with_passages == 3
    first, second, third = items
    assert first.id == "nqswap-00000" and first.answers == ("775",)
    assert first.passages[0].title == "" and first.passages[0].text == "The season contained 775 episodes ."
    assert first.conflict.original_answers == ("23",) and first.conflict.substituted_answers == ("775",)
    assert first.meta["original_passage"] == "The season contained 23 episodes ."
    assert second.passages[0].text == "Season three episodes"  # table tags and the cut-off "<P" removed
    assert second.answers == ("three",)
    assert [i.meta["question_group"] for i in items] == [0, 0, 1]
    assert third.answers == ("Bob",)
    assert rows[0]["conflict"] == {"original_answers": ["23"], "substituted_answers": ["775"]}


# -- HotpotQA and 2WikiMultihopQA --------------------------------------------------------------------------

HOTPOT = [
    {"_id": "5a8b57f25542995d1e6f1371", "answer": "yes",
     "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
     "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
     "context": [["Ed Wood (film)", ["Ed Wood is a 1994 American biopic.", " It was directed by Tim Burton."]],
                 ["Scott Derrickson", ["Scott Derrickson (born 1966) is an American director.", " He lives in Los Angeles."]],
                 ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker."]]],
     "type": "comparison", "level": "hard"},
    {"_id": "5a8c7595554299585d9e36b6", "answer": "Chief of Protocol",
     "question": "What government position was held by the woman who portrayed Corliss Archer?",
     "supporting_facts": [["Shirley Temple", 0]],
     "context": [["Shirley Temple", ["Shirley Temple Black was an actress.", " She served as Chief of Protocol."]]],
     "type": "bridge", "level": "medium"},
]


def test_hotpotqa(tmp_path):
    test_split = {k: v for k, v in HOTPOT[0].items() if k not in ("answer", "supporting_facts")} | {"_id": "test1"}
    raw = _write(tmp_path / "hotpot_dev_distractor_v1.json", json.dumps([*HOTPOT, test_split], indent=1))
    report, items, _ = _convert("hotpotqa", raw, tmp_path)
    assert report.converted == 2 and dict(report.skipped) == {"no answer (test split)": 1}
    first = items[0]
    assert first.id == "5a8b57f25542995d1e6f1371" and first.answers == ("yes",)
    assert [p.title for p in first.passages] == ["Ed Wood (film)", "Scott Derrickson", "Ed Wood"]
    assert first.passages[0].text == "Ed Wood is a 1994 American biopic. It was directed by Tim Burton."
    assert first.meta["supporting"] == ["Scott Derrickson", "Ed Wood"]
    assert first.meta["is_supporting"] == [False, True, True]
    assert (first.meta["type"], first.meta["level"], first.meta["source"]) == ("comparison", "hard", "hotpotqa")


def test_hotpotqa_hugging_face_layout(tmp_path):
    row = {"id": "5a8c7595554299585d9e36b6", "question": HOTPOT[1]["question"], "answer": "Chief of Protocol",
           "type": "bridge", "level": "medium", "supporting_facts": {"title": ["Shirley Temple"], "sent_id": [1]},
           "context": {"title": ["Shirley Temple", "Other"],
                       "sentences": [["Shirley Temple Black was an actress.", " She served as Chief of Protocol."], ["x"]]}}
    _, (item,), _ = _convert("hotpotqa", _write(tmp_path / "hotpot.jsonl", json.dumps(row) + "\n"), tmp_path)
    assert item.passages[0].text == "Shirley Temple Black was an actress. She served as Chief of Protocol."
    assert item.meta["is_supporting"] == [True, False]


def test_2wikimultihopqa(tmp_path):
    rows = [{"_id": "8813f87c0bdd11eba7f7acde48001122", "type": "compositional",
             "question": "Who is the mother of the director of film Polish-Russian War?",
             "context": [["Xawery Żuławski", ["Xawery Żuławski is a Polish film director.", "His mother is Małgorzata Braunek."]],
                         ["Polish-Russian War (film)", ["Polish-Russian War is a 2009 Polish film directed by Xawery Żuławski."]]],
             "supporting_facts": [["Polish-Russian War (film)", 0], ["Xawery Żuławski", 1]],
             "evidences": [["Polish-Russian War", "director", "Xawery Żuławski"], ["Xawery Żuławski", "mother", "Małgorzata Braunek"]],
             "answer": "Małgorzata Braunek", "entity_ids": "Q7208419_Q2046"}]
    report, (item,), rows_out = _convert("2wikimultihopqa", _write(tmp_path / "dev.json", json.dumps(rows)), tmp_path)
    assert report.converted == 1
    assert item.answers == ("Małgorzata Braunek",) and item.id == "8813f87c0bdd11eba7f7acde48001122"
    assert item.passages[0].text == "Xawery Żuławski is a Polish film director. His mother is Małgorzata Braunek."
    assert item.meta["evidences"][1] == ["Xawery Żuławski", "mother", "Małgorzata Braunek"]
    assert item.meta["source"] == "2wikimultihopqa" and item.meta["is_supporting"] == [True, True]
    assert "Żuławski" in json.dumps(rows_out[0], ensure_ascii=False)  # written as UTF-8, not \u escapes


# -- ComplexWebQuestions -----------------------------------------------------------------------------------

def test_cwq(tmp_path):
    rows = [
        {"ID": "WebQTrn-3513_7c4117891abf63781b892537979054c6", "webqsp_ID": "WebQTrn-3513",
         "webqsp_question": "what language do they speak in belgium",
         "machine_question": "what language is spoken in the country that has Brussels as capital",
         "question": "What language is spoken in the country whose capital is Brussels?",
         "sparql": "PREFIX ns: <http://rdf.freebase.com/ns/> SELECT ...", "compositionality_type": "composition",
         "answers": [{"answer": "French", "answer_id": "m.064_8sq", "aliases": ["French language", "Français"]},
                     {"answer": "Dutch", "answer_id": "m.02bv9", "aliases": ["Dutch language", "French"]}],
         "created": "2018-01-01T00:00:00"},
        {"ID": "WebQTest-1_x", "question": "", "machine_question": "who is the president of the country that has Paris",
         "answers": [{"answer": None, "answer_id": "m.1", "aliases": ["Macron"]}], "compositionality_type": "composition"},
        {"ID": "WebQTest-2_y", "question": "unanswered?", "answers": []},
    ]
    report, items, rows_out = _convert("cwq", _write(tmp_path / "ComplexWebQuestions_dev.json", json.dumps(rows, indent=2)), tmp_path)
    assert report.converted == 2 and dict(report.skipped) == {"no answer": 1} and report.with_passages == 0
    first, second = items
    assert first.answers == ("French", "French language", "Français", "Dutch", "Dutch language")
    assert first.passages == () and first.meta["answer_ids"] == ["m.064_8sq", "m.02bv9"]
    assert first.meta["compositionality_type"] == "composition" and "passages" not in rows_out[0]
    assert second.question == "who is the president of the country that has Paris" and second.answers == ("Macron",)


# -- SQuAD -------------------------------------------------------------------------------------------------

def _squad(version: str) -> dict:
    return {"version": version, "data": [
        {"title": "Super_Bowl_50", "paragraphs": [
            {"context": "Super Bowl 50 was won by the Denver Broncos.", "qas": [
                {"id": "56be4db0acb8001400a502ec", "question": "Which team won Super Bowl 50?",
                 "answers": [{"text": "Denver Broncos", "answer_start": 29}, {"text": "Denver Broncos", "answer_start": 29},
                             {"text": "the Denver Broncos", "answer_start": 25}]},
                {"id": "5ad39d53604f3c001a3fe8d1", "question": "Which team lost Super Bowl 51?", "answers": [],
                 "plausible_answers": [{"text": "Denver Broncos", "answer_start": 29}], "is_impossible": True}]},
            {"context": "The game was played in Santa Clara.", "qas": [
                {"id": "q2", "question": "Where was it played?", "answers": [{"text": "Santa Clara", "answer_start": 23}],
                 "is_impossible": False}]},
        ]}]}


def test_squad_v2_single_line(tmp_path):
    raw = _write(tmp_path / "dev-v2.0.json", json.dumps(_squad("v2.0")))  # the official files are one line
    report, items, _ = _convert("squad", raw, tmp_path)
    assert report.converted == 2 and dict(report.skipped) == {"unanswerable (SQuAD v2)": 1}
    first, second = items
    assert first.id == "56be4db0acb8001400a502ec" and first.answers == ("Denver Broncos", "the Denver Broncos")
    assert first.passages[0].title == "Super Bowl 50" and first.passages[0].text == "Super Bowl 50 was won by the Denver Broncos."
    assert first.meta == {"source": "squad-v2.0", "title": "Super_Bowl_50",
                          "paragraph_index": 0, "source_file": "dev-v2.0.json"}
    assert second.meta["paragraph_index"] == 1 and second.answers == ("Santa Clara",)


def test_squad_v11_pretty_and_gzipped(tmp_path):
    data = _squad("1.1")
    data["data"][0]["paragraphs"][0]["qas"].pop(1)
    _write(tmp_path / "dev-v1.1.json.gz", gzip.compress(json.dumps(data, indent=2).encode()))
    report, items, _ = _convert("squad", tmp_path / "dev-v1.1.json.gz", tmp_path)
    assert report.converted == 2 and not report.skipped and items[0].meta["source"] == "squad-v1.1"


def test_squad_hugging_face_rows(tmp_path):
    rows = [{"id": "a1", "title": "Super_Bowl_50", "context": "Super Bowl 50 was won by the Denver Broncos.",
             "question": "Who won?", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [29, 36]}},
            {"id": "a2", "title": "Super_Bowl_50", "context": "Super Bowl 50 was won by the Denver Broncos.",
             "question": "Who lost Super Bowl 51?", "answers": {"text": [], "answer_start": []}}]
    report, items, _ = _convert("squad", _write(tmp_path / "squad_v2.jsonl", "".join(json.dumps(r) + "\n" for r in rows)), tmp_path)
    assert [i.answers for i in items] == [("Denver Broncos", "Broncos")]
    assert dict(report.skipped) == {"unanswerable (SQuAD v2)": 1}


# -- streaming, limits, counts -----------------------------------------------------------------------------

def test_array_streams_across_chunk_boundaries(tmp_path, monkeypatch):
    """Tiny read chunks split elements, strings and multi-byte UTF-8 characters; the result is the same."""
    from engine.data import source

    rows = [dict(HOTPOT[i % 2], _id=f"id{i}", answer=f"Żółw {i} “quoted”") for i in range(40)]
    raw = _write(tmp_path / "hotpot.json", json.dumps(rows, ensure_ascii=False, indent=2))
    monkeypatch.setattr(source, "CHUNK", 7)
    _, items, _ = _convert("hotpotqa", raw, tmp_path)
    assert [i.answers for i in items] == [(f"Żółw {i} “quoted”",) for i in range(40)]


def test_limit_duplicates_and_info(tmp_path):
    rows = [HOTPOT[0], HOTPOT[1], HOTPOT[0]]
    raw = _write(tmp_path / "hotpot.json", json.dumps(rows))
    report, items, _ = _convert("hotpotqa", raw, tmp_path)
    assert report.converted == 2 and dict(report.skipped) == {"duplicate id": 1}
    assert report.first_skipped["duplicate id"] == "hotpot.json[2]"
    report, items, _ = _convert("hotpotqa", raw, tmp_path, limit=1)
    assert report.converted == 1 and len(items) == 1
    info = qa_info(tmp_path / "hotpot.json.qa.jsonl")
    assert info["questions"] == 1 and info["with_passages"] == 1 and info["passages"] == 3 and info["sources"] == {"hotpotqa": 1}


def test_later_bad_records_are_skipped_not_fatal(tmp_path):
    lines = [json.dumps(NQSWAP[0]), "{not json", json.dumps({"question": "q only"}), json.dumps(NQSWAP[2])]
    report, _, _ = _convert("nq-swap", _write(tmp_path / "nq.jsonl", "\n".join(lines) + "\n"), tmp_path)
    assert report.converted == 2 and sum(report.skipped.values()) == 2
    assert any("invalid JSON" in reason for reason in report.skipped)
    assert any('no "sub_context"' in reason for reason in report.skipped)


def test_wrong_format_names_the_likely_one(tmp_path):
    raw = _write(tmp_path / "hotpot.json", json.dumps(HOTPOT))
    with pytest.raises(InputError) as caught:
        convert_file("squad", raw, tmp_path / "out.jsonl")
    assert "is not a squad file" in caught.value.message and "--format hotpotqa" in caught.value.hint
    assert not (tmp_path / "out.jsonl").exists()


# -- the command line: success and bad input ---------------------------------------------------------------

def test_cli_convert_and_info(tmp_path):
    raw = _write(tmp_path / "popQA.tsv", POPQA_TSV)
    out = tmp_path / "popqa.jsonl"
    done = _cli("convert", "--format", "popqa", raw, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "converted 2 popqa questions" in done.stdout and "skipped 1: 1 no answer (first: popQA.tsv:4)" in done.stdout
    assert len(load_qa(out)) == 2
    info = _cli("info", out, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["questions"] == 2
    as_json = _cli("convert", "-f", "popqa", raw, "-o", out, "--json")
    assert json.loads(as_json.stdout)["skipped"] == {"no answer": 1}


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str]]:
    hotpot = _write(tmp_path / "hotpot.json", json.dumps(HOTPOT))
    squad = _write(tmp_path / "squad.json", json.dumps(_squad("1.1")))
    test_split = _write(tmp_path / "hotpot_test.json", json.dumps([{k: v for k, v in HOTPOT[0].items() if k != "answer"}]))
    return {
        "missing file": (["--format", "squad", tmp_path / "nope.json"], "does not exist"),
        "unknown format": (["--format", "triviaqa", hotpot], "unknown format 'triviaqa'"),
        "wrong format": (["--format", "squad", hotpot], "--format hotpotqa"),
        "squad as cwq": (["--format", "cwq", squad], "--format squad"),
        "truncated array": (["--format", "hotpotqa", _write(tmp_path / "cut.json", json.dumps(HOTPOT)[:-40])], "cut short"),
        "empty file": (["--format", "hotpotqa", _write(tmp_path / "empty.json", "")], "is empty"),
        "not json": (["--format", "cwq", _write(tmp_path / "notes.json", "hello\n")], "is not JSON"),
        "zip": (["--format", "2wikimultihopqa", _write(tmp_path / "data.zip", b"PK\x03\x04rest")], "unzip it"),
        "table for json format": (["--format", "squad", _write(tmp_path / "x.tsv", POPQA_TSV)], "pass the squad .json"),
        "already converted": (["--format", "squad",
                               _write(tmp_path / "qa.jsonl", json.dumps({"id": "a", "question": "q?", "answers": ["x"]}) + "\n")],
                              "QA JSONL format"),
        "nothing convertible": (["--format", "hotpotqa", test_split], "no questions converted"),
        "popqa answers not a list": (["--format", "popqa",
                                      _write(tmp_path / "p.tsv", POPQA_HEADER + "\n1\ts\tp\to\t1\t2\t3\t[]\t[]\tu\tu\ts\to\t1\t1\tq?"
                                                                                "\tnot json\n")],
                                     "possible_answers"),
    }


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    out = _write(tmp_path / "existing.jsonl", '{"id": "keep", "question": "q?", "answers": ["a"]}\n')
    before = out.read_bytes()
    for name, (args, expected) in _bad_inputs(tmp_path).items():
        done = _cli("convert", *args, "--out", out)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in done.stderr, (name, done.stderr)
        assert expected in lines[0] and ";" in lines[0], (name, lines[0])  # what is wrong; what to do
        assert out.read_bytes() == before, name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_cli_info_bad_file(tmp_path):
    done = _cli("info", _write(tmp_path / "bad.jsonl", '{"id": "x", "question": "q?"}\n'))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and '"answers"' in done.stderr
