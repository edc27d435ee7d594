"""Knowledge-conflict view: for a question whose passage contradicts the real world,
what the memory (vanilla), the context (RAG) and the parametric methods answered,
beside the original and substituted gold answers, and which side each one followed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.methods import METHODS, AdapterSource, PromptKind
from tui.scoring import follows, probe_sides

if TYPE_CHECKING:
    from engine.explorer import Answer
    from engine.qa import QAItem

FOLLOW_STYLE = {"passage": "bold green", "memory": "bold yellow", "both": "bold magenta", "neither": "dim"}
FOLLOW_TEXT = {"passage": "passage", "memory": "memory", "both": "both", "neither": "neither"}


def role(method_name: str) -> str:
    """How the passage reaches a method: not at all, in the prompt, as a LoRA, or both."""
    method = METHODS[method_name]
    parts = []
    if method.adapter is AdapterSource.PRAG:
        parts.append("stored LoRA")
    elif method.adapter is AdapterSource.DYPRAG:
        parts.append("generated LoRA")
    if method.prompt is PromptKind.PASSAGES:
        parts.append("prompt")
    return " + ".join(parts) or "- (memory only)"


class ConflictPanel(VerticalScroll):
    """Shows the conflict table for the current question, or says why there is none."""

    def compose(self):
        yield Static(classes="conflict-body")

    def on_mount(self) -> None:
        self.show(None, [])

    def show(self, item: QAItem | None, answers: Sequence[Answer]) -> None:
        body = self.query_one(".conflict-body", Static)
        if item is None or item.conflict is None:
            body.update(
                Text.from_markup(
                    "[b]No conflict record for this question.[/b]\n\n"
                    "Counterfactual questions carry one: their passage contradicts what the model learnt "
                    "(e.g. the Eiffel Tower in Rome). Press [b]ctrl+o[/b] and type [b]conflict[/b] to list them."
                )
            )
            return
        conflict = item.conflict
        header = Table.grid(padding=(0, 2))
        header.add_column(style="bold")
        header.add_column()
        header.add_row("Question", Text(item.question))
        header.add_row("Memory says", Text(" · ".join(conflict.original_answers) + "  (original answer)", style=FOLLOW_STYLE["memory"]))
        header.add_row("Passage says", Text(" · ".join(conflict.substituted_answers) + "  (substituted answer)",
                                            style=FOLLOW_STYLE["passage"]))
        table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
        table.add_column("Method", no_wrap=True, style="bold")
        table.add_column("Passage via", ratio=1, min_width=7, overflow="fold")  # wraps when narrow: the answer keeps its room
        table.add_column("Answer", ratio=2, min_width=12)
        table.add_column("Follows", no_wrap=True)
        table.add_column("logp sub/orig", no_wrap=True, justify="right")
        table.add_column("MR", no_wrap=True, justify="right")
        sides: dict[str, list[str]] = {}
        for answer in answers:
            if answer.error:
                table.add_row(answer.label, role(answer.method), Text(answer.error, style="red"), Text("-", style="dim"), "-", "-")
                continue
            if answer.status not in ("done", "cancelled"):
                table.add_row(answer.label, role(answer.method), Text(answer.text.strip() or "…", style="dim"),
                              Text(answer.status, style="dim"), "", "")
                continue
            side = follows(answer.text, conflict)
            sides.setdefault(side, []).append(answer.label)
            suffix = " (partial)" if answer.status == "cancelled" else ""
            probes = probe_sides(answer, item)
            logps = (f"{probes['substituted']:.1f}/{probes['original']:.1f}" if "mr" in probes else "-")
            ratio = (Text(f"{probes['mr']:.2f}", style=FOLLOW_STYLE["memory" if probes["mr"] > 0.5 else "passage"])
                     if "mr" in probes else "-")
            table.add_row(answer.label, role(answer.method), Text(answer.text or "(empty)"),
                          Text(FOLLOW_TEXT[side] + suffix, style=FOLLOW_STYLE[side]), logps, ratio)
        if not answers:
            table.add_row("-", "-", Text("Run the question (enter) to compare the methods.", style="dim"), "-", "-", "-")
        summary = Text()
        for side in ("passage", "memory", "both", "neither"):
            if side in sides:
                if summary:
                    summary.append("   ")
                summary.append(f"{FOLLOW_TEXT[side]}: ", style=FOLLOW_STYLE[side])
                summary.append(", ".join(sides[side]))
        legend = Text("logp sub/orig: log-probability of the passage's and the memory's answer under the method's prompt; "
                      "MR = p_orig / (p_orig + p_sub), above 0.5 the memory wins.", style="dim")
        body.update(Group(header, Text(""), table, Text(""), summary, Text(""), legend))
