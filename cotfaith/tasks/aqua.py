"""AQuA-RAT (Ling et al. 2017): algebra word problems with 5 choices, read from the published
JSON Lines file (named .json): question, options ["A)...", ...], rationale, correct."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
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
    check_choices,
    need,
    parse_config,
    read_jsonl,
    short,
)
from cotfaith.tasks.fetch import locate

SPLITS = ("dev", "test", "train")
PUBLISHED = "https://github.com/google-deepmind/AQuA"
# "A)32400" and "A) 32400" both occur in the published files
_OPTION = re.compile(r"^\s*([A-Za-z])\s*\)\s*(.*)$", re.S)


@dataclass
class AquaTaskConfig(FileTaskConfig):
    """AQuA-RAT algebra word problems (5 choices), from the published JSON Lines file."""

    name: str = "aqua"
    split: str = "dev"
    """dev (254 problems, pinned download), test or train (give task.path)."""
    keep_rationale: bool = False
    """Keep the published rationale in each question's meta (`rationale`)."""


@register("task", "aqua", config=AquaTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """AQuA-RAT algebra word problems (Ling et al. 2017)."""
    c = parse_config(AquaTaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    path = locate(c, f"aqua/{c.split}.json", published=PUBLISHED)
    records = RecordLog(c.name, c.on_bad_record)
    items = []
    for where, obj in read_jsonl(path, records):
        with records.record(where):
            items.append(_item(obj, where, c.keep_rationale))
    return finish(items, c, records)


def _item(obj: dict[str, Any], where: str, keep_rationale: bool) -> Item:
    text = need(obj, "question")
    options = need(obj, "options", list)
    choices = []
    for i, opt in enumerate(options):
        m = _OPTION.match(opt) if isinstance(opt, str) else None
        expected = string.ascii_uppercase[i] if i < 26 else "?"
        if m is None or m.group(1).upper() != expected:
            raise BadRecord(
                "options", f"option {i + 1} {short(opt)} does not start with '{expected})'"
            )
        choices.append(m.group(2).strip())
    check_choices(choices, "options")
    correct = need(obj, "correct").strip().upper()
    letters = string.ascii_uppercase[: len(choices)]
    if len(correct) != 1 or correct not in letters:
        raise BadRecord(
            "correct", f"unknown answer label {short(obj['correct'])}, not in {letters}"
        )
    meta = {"rationale": obj.get("rationale")} if keep_rationale else {}
    return Item(text.strip(), choices, letters.index(correct), where, meta=meta)
