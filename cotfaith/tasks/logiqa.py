"""LogiQA (Liu et al. 2020): logical reasoning over a passage, 4 choices. The published text
files hold blocks of 8 lines: blank, gold letter (lower case), passage, question, options
"A." to "D.". Some option lines lack their "X." prefix or read "X " or "d."; an option is
known by its position in the block, and a prefix is removed only when it names that position.
The files end without a final newline."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotfaith.registry import register
from cotfaith.tasks.base import Question
from cotfaith.tasks.build import finish
from cotfaith.tasks.common import (
    BadRecord,
    FileTaskConfig,
    Item,
    RecordLog,
    check_choice,
    parse_config,
    read_text,
    short,
)
from cotfaith.tasks.fetch import locate

SPLITS = ("eval", "test", "train")
PUBLISHED = "https://github.com/lgw863/LogiQA-dataset"
LETTERS = "ABCD"
BLOCK = 7  # lines after the blank separator


@dataclass
class LogiQATaskConfig(FileTaskConfig):
    """LogiQA logical reasoning questions on a passage (4 choices)."""

    name: str = "logiqa"
    split: str = "eval"
    """eval (Eval.txt, 651, pinned download), test or train (Test.txt, Train.txt: task.path)."""


@register("task", "logiqa", config=LogiQATaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """LogiQA logical reasoning (passage in the question's context)."""
    c = parse_config(LogiQATaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    path = locate(c, f"logiqa/{c.split.capitalize()}.txt", published=PUBLISHED)
    records = RecordLog(c.name, c.on_bad_record)
    return finish(read_blocks(path, records), c, records)


def read_blocks(path: Path, records: RecordLog) -> list[Item]:
    lines = read_text(path).replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # a final newline (or none, as published)
    items = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        # a block runs to the next blank line; a malformed one is skipped as a whole so it
        # does not shift the blocks after it
        nxt = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()), len(lines))
        where = f"{path} line {i + 1}"
        with records.record(where):
            got = nxt - i
            if got != BLOCK:
                field = "options" if got < BLOCK else "(block)"
                raise BadRecord(
                    field,
                    f"expected {BLOCK} lines (answer, passage, question, 4 options), got {got}",
                )
            items.append(_item(lines[i:nxt], where))
        i = nxt
    return items


def _item(block: list[str], where: str) -> Item:
    gold, passage, question, *options = (line.strip() for line in block)
    if len(gold) != 1 or gold.upper() not in LETTERS:
        raise BadRecord("answer", f"unknown answer label {short(gold)}, not one of a-d")
    if not passage:
        raise BadRecord("passage", "empty")
    if not question:
        raise BadRecord("question", "empty")
    choices = []
    for letter, line in zip(LETTERS, options, strict=True):
        text = strip_label(line, letter)
        if not text:
            raise BadRecord(f"option {letter}", "empty")
        choices.append(text)
    return Item(question, choices, LETTERS.index(gold.upper()), where, context=passage)


def strip_label(line: str, letter: str) -> str:
    """`A.text`, `a.text`, `A. text` and `A Text` lose their label; a line that starts with
    another letter's label (`Mr.A.P wrote`, `C.S City...` in position A) keeps its text."""
    m = re.match(rf"^[{letter}{letter.lower()}]\s*[.．]\s*(.*)$", line)
    if m:
        return m.group(1).strip()
    m = re.match(rf"^{letter}\s+(?=[A-Z])(.*)$", line)  # "A The brain...": a lost dot
    if m:
        return m.group(1).strip()
    return line.strip()
