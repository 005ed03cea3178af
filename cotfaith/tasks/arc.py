"""ARC-Easy, ARC-Challenge (Clark et al. 2018) and OpenBookQA (Mihaylov et al. 2018): the AI2
JSON Lines schema, id, question.stem, question.choices[{text, label}], answerKey. Labels may be
"A".."E" or "1".."5"; choices keep their listed order and become A, B, C..."""

from __future__ import annotations

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
ARC_PUBLISHED = "https://ai2-public-datasets.s3.amazonaws.com/arc/ARC-V1-Feb2018.zip"
OBQA_PUBLISHED = (
    "https://ai2-public-datasets.s3.amazonaws.com/open-book-qa/OpenBookQA-V1-Sep2018.zip "
    "(Data/Main/<split>.jsonl)"
)


@dataclass
class ArcEasyTaskConfig(FileTaskConfig):
    """ARC-Easy grade-school science questions (3-5 choices), AI2 JSON Lines."""

    name: str = "arc_easy"
    split: str = "dev"
    """dev (570, pinned download), test or train (give task.path)."""


@dataclass
class ArcChallengeTaskConfig(FileTaskConfig):
    """ARC-Challenge grade-school science questions (3-5 choices), AI2 JSON Lines."""

    name: str = "arc_challenge"
    split: str = "test"
    """dev, test or train: ARC-Challenge-<Split>.jsonl (no pinned copy: give task.path)."""


@dataclass
class OpenBookQATaskConfig(FileTaskConfig):
    """OpenBookQA elementary science questions (4 choices), AI2 JSON Lines."""

    name: str = "openbookqa"
    split: str = "test"
    """dev, test or train: Data/Main/<split>.jsonl (no pinned copy: give task.path)."""


@register("task", "arc_easy", config=ArcEasyTaskConfig)
def load_arc_easy(cfg: Mapping[str, Any]) -> list[Question]:
    """ARC-Easy (AI2 Reasoning Challenge, easy set)."""
    c = parse_config(ArcEasyTaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    return _load(c, f"arc_easy/ARC-Easy-{c.split.capitalize()}.jsonl", ARC_PUBLISHED)


@register("task", "arc_challenge", config=ArcChallengeTaskConfig)
def load_arc_challenge(cfg: Mapping[str, Any]) -> list[Question]:
    """ARC-Challenge (AI2 Reasoning Challenge, challenge set)."""
    c = parse_config(ArcChallengeTaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    return _load(c, f"arc_challenge/ARC-Challenge-{c.split.capitalize()}.jsonl", ARC_PUBLISHED)


@register("task", "openbookqa", config=OpenBookQATaskConfig)
def load_openbookqa(cfg: Mapping[str, Any]) -> list[Question]:
    """OpenBookQA (AI2), main questions."""
    c = parse_config(OpenBookQATaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    return _load(c, f"openbookqa/{c.split}.jsonl", OBQA_PUBLISHED)


def _load(c: FileTaskConfig, rel: str, published: str) -> list[Question]:
    path = locate(c, rel, published=published)
    records = RecordLog(c.name, c.on_bad_record)
    items = []
    for where, obj in read_jsonl(path, records):
        with records.record(where):
            items.append(item(obj, where))
    return finish(items, c, records)


def item(obj: dict[str, Any], where: str) -> Item:
    qid = need(obj, "id", (str, int))
    question = need(obj, "question", dict)
    stem = need(question, "stem", label="question.stem")
    raw = need(question, "choices", list, label="question.choices")
    labels, choices = [], []
    for i, ch in enumerate(raw):
        label = need(ch, "label", (str, int), label=f"question.choices[{i}].label")
        text = need(ch, "text", (str, int, float), label=f"question.choices[{i}].text")
        labels.append(str(label).strip())
        choices.append(str(text).strip())
    check_choices(choices, "question.choices")
    if len(set(labels)) != len(labels):
        raise BadRecord("question.choices", f"repeated labels {labels}")
    key = str(need(obj, "answerKey", (str, int))).strip()
    if key not in labels:
        raise BadRecord("answerKey", f"unknown answer label {short(key)}, not in {labels}")
    meta: dict[str, Any] = {}
    if labels != list(string.ascii_uppercase[: len(labels)]):
        meta["source_labels"] = labels  # e.g. "1".."4": mapped to A.. in listed order
    if isinstance(obj.get("fact1"), str):
        meta["fact1"] = obj["fact1"]  # OpenBookQA's Additional files: the supporting fact
    return Item(stem.strip(), choices, labels.index(key), where, source_id=str(qid), meta=meta)
