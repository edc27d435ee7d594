"""Chat prompts in the PRAG style, rendered through the model's chat template.

The user turn asks for an answer that combines the passages (if any) with the
model's own knowledge; the assistant turn is pre-filled with "The answer is",
which is also how PRAG's training examples end, so a small model answers with a
short span instead of a paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engine.corpus import Passage

_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]][a-z0-9)\]])\.\s+")

ANSWER_PREFIX = "The answer is"

_WITH_PASSAGES = (
    "Use the passages below together with what you already know to answer the question. "
    "Give a short answer."
)
_QUESTION_ONLY = "Answer the question from what you already know. Give a short answer."


def user_message(question: str, passages: Sequence[Passage] = ()) -> str:
    question = question.strip()
    if not passages:
        return f"{_QUESTION_ONLY}\n\nQuestion: {question}"
    blocks = "\n".join(f"Passage {i}: {p.text}" for i, p in enumerate(passages, start=1))
    return f"{_WITH_PASSAGES}\n\n{blocks}\n\nQuestion: {question}"


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    # Base models without a template get a plain transcript.
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


def render_chat(tokenizer: Any, user: str) -> str:
    """One user turn through the chat template, ready for the assistant's reply."""
    return _render(tokenizer, [{"role": "user", "content": user}], True)


def generation_prompt(tokenizer: Any, question: str, passages: Sequence[Passage] = ()) -> str:
    """Text the model continues: template + user turn + "The answer is"."""
    return f"{render_chat(tokenizer, user_message(question, passages))}{ANSWER_PREFIX}"


def question_offset(tokenizer: Any, question: str, passages: Sequence[Passage]) -> int:
    """Tokens of `generation_prompt(...)` before its "Question:" line: the passages' part, which a LoRA
    scoped to the question leaves to the model as it is (0 when there are no passages)."""
    if not passages:
        return 0
    full = generation_prompt(tokenizer, question, passages)
    cut = full.rfind(f"\n\nQuestion: {question.strip()}")
    if cut < 0:
        return 0
    whole = tokenizer(full, add_special_tokens=False)["input_ids"]
    before = tokenizer(full[: cut + 2], add_special_tokens=False)["input_ids"]
    return shared_prefix([whole, before])  # a merge across the cut counts as the question's


def shared_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with (the chat template and system prompt before each question)."""
    first = rows[0]
    length = min(len(row) for row in rows)
    for index in range(length):
        if any(row[index] != first[index] for row in rows):
            return index
    return length


def training_text(tokenizer: Any, question: str, answer: str, passages: Sequence[Passage] = ()) -> str:
    """A whole PRAG training example: the prompt followed by "The answer is <answer>."."""
    answer = answer.strip().rstrip(".")
    return f"{generation_prompt(tokenizer, question, passages)} {answer}."


def clean_answer(text: str) -> str:
    """Generated continuation -> the answer span shown and scored."""
    text = text.strip().lstrip(":").strip()
    for stop in ("<|im_end|>", "<|endoftext|>", "\n"):
        text = text.split(stop, 1)[0]
    # The answer is the first sentence: "775. The passage says..." -> "775", but "J. R. R. Tolkien" and
    # "St. Louis" stay whole (a period after a capitalized or one-letter word is an abbreviation).
    text = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    if text.endswith("."):
        text = text[:-1]
    return text.strip().strip('"').strip()
