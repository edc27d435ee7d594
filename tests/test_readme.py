"""The README is a contract: every `--flag` it shows on a `prag` command exists on that command."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO
from tests.conftest import run_cli as prag

SUBCOMMANDS = {"corpus": ("index", "info"), "data": ("convert",)}


def shown_commands() -> list[list[str]]:
    """Every `prag ...` command line of the README: in code blocks and in inline code."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"```(?:bash|text)\n(.*?)```", text, re.S) for line in block.splitlines()]
    lines += re.findall(r"`(prag [^`]+)`", text)
    commands = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        start = line.find("prag ")
        if start < 0 or (start > 0 and not line[start - 1].isspace() and line[start - 1] not in "=("):
            continue
        try:
            words = shlex.split(line[start:])
        except ValueError:
            continue
        if len(words) > 1 and words[0] == "prag":
            commands.append(words[1:])
    return commands


def command_and_flags(words: list[str]) -> tuple[tuple[str, ...], set[str]]:
    name = (words[0],)
    if words[0] in SUBCOMMANDS and len(words) > 1 and words[1] in SUBCOMMANDS[words[0]]:
        name = (words[0], words[1])
    flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    return name, flags


def test_the_readme_shows_commands():
    names = {command_and_flags(words)[0] for words in shown_commands()}
    assert {("ask",), ("eval",), ("encode",), ("train",), ("augment",), ("bench",), ("data", "convert")} <= names


@pytest.mark.parametrize("name", sorted({command_and_flags(w)[0] for w in shown_commands() if w[0] not in ("COMMAND",)}))
def test_every_flag_the_readme_shows_exists(name):
    wanted = set().union(*(command_and_flags(w)[1] for w in shown_commands() if command_and_flags(w)[0] == name))
    wanted.discard("--help")
    result = prag(*name, "--help", env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    missing = sorted(flag for flag in wanted if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.stdout))
    assert not missing, f"prag {' '.join(name)} has no {missing}"
