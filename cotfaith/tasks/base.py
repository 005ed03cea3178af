"""A multiple-choice question, as every task produces it."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    choices: tuple[str, ...]
    answer: str
    """Gold choice letter."""
    task: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    context: str | None = None
    """A passage the question is about (LogiQA, HellaSwag, HotpotQA), rendered before it."""
    subtask: str | None = None
    """MMLU subject, BBH task...: reported beside the task."""
    source_id: str | None = None
    """The record's id in its source file, where the source has one."""
    demos: str | None = None
    """Few-shot demonstrations, rendered as text, put before the question (never holding the
    question itself)."""

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(string.ascii_uppercase[: len(self.choices)])

    def __post_init__(self) -> None:
        if not 2 <= len(self.choices) <= 26:
            raise ValueError(f"question {self.id}: needs 2-26 choices, has {len(self.choices)}")
        if self.answer not in self.letters:
            raise ValueError(f"question {self.id}: gold {self.answer!r} not in {self.letters}")


def content_id(text: str, choices: tuple[str, ...]) -> str:
    """Stable id from the content, so the same question keeps its id across runs."""
    h = hashlib.sha256("\x1f".join((text, *choices)).encode("utf-8")).hexdigest()
    return h[:12]
