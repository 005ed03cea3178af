"""HellaSwag (Zellers et al. 2019): pick the most plausible ending of a passage, 4 choices,
from the published JSON Lines (ind, activity_label, ctx, endings, label, source_id,
split_type). The passage goes in the question's context, prefixed by its activity label. The
WikiHow records carry markup ("[header]", "[title]", "[step]"); `clean_markup` removes it as the
common evaluation harnesses do."""

from __future__ import annotations

import re
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

SPLITS = ("val", "train", "test")
PUBLISHED = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{split}.jsonl"
QUESTION = "Which of the answer choices best completes the following sentence?"


@dataclass
class HellaSwagTaskConfig(FileTaskConfig):
    """HellaSwag sentence completion (4 endings), from the published JSON Lines."""

    name: str = "hellaswag"
    split: str = "val"
    """val or train (test has no labels); no pinned copy: give task.path or put
    hellaswag_<split>.jsonl in <data_dir>/hellaswag/."""
    clean_markup: bool = True
    """Remove WikiHow markup such as "[header]" and "[step]" from passages and endings."""


@register("task", "hellaswag", config=HellaSwagTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """HellaSwag commonsense sentence completion."""
    c = parse_config(HellaSwagTaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    rel = f"hellaswag/hellaswag_{c.split}.jsonl"
    path = locate(c, rel, published=PUBLISHED.format(split=c.split))
    records = RecordLog(c.name, c.on_bad_record)
    items = []
    for where, obj in read_jsonl(path, records):
        with records.record(where):
            items.append(_item(obj, where, c.clean_markup))
    return finish(items, c, records)


def clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _item(obj: dict[str, Any], where: str, clean_markup: bool) -> Item:
    ind = need(obj, "ind", (int, str))
    ctx = need(obj, "ctx")
    endings = need(obj, "endings", list)
    if not all(isinstance(e, str) for e in endings):
        raise BadRecord("endings", f"expected a list of text, got {short(endings)}")
    check_choices(endings, "endings")
    label = obj.get("label")
    if label is None:
        raise BadRecord("label", "missing (the test split is unlabelled)")
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(endings):
        raise BadRecord("label", f"unknown answer label {short(label)}, not 0-{len(endings) - 1}")
    fix = clean if clean_markup else str.strip
    activity = obj.get("activity_label")
    context = fix(ctx)
    if isinstance(activity, str) and activity.strip():
        context = f"{activity.strip()}: {context}"
    # the record's own "source_id" names its video or article, not the record
    meta = {
        ("origin" if k == "source_id" else k): obj[k]
        for k in ("source_id", "split_type")
        if isinstance(obj.get(k), str)
    }
    return Item(
        QUESTION, [fix(e) for e in endings], label, where, str(ind), context=context, meta=meta
    )
