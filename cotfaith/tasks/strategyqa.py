"""StrategyQA (Geva et al. 2021): yes/no questions needing implicit multi-step reasoning, read
from the published JSON array (qid, question, answer true/false, facts, decomposition). The
answer becomes two choices, "True" and "False"; the facts are NOT shown (they hold the
reasoning the model is meant to do)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cotfaith.registry import register
from cotfaith.tasks.base import Question
from cotfaith.tasks.build import finish
from cotfaith.tasks.common import (
    FileTaskConfig,
    Item,
    RecordLog,
    check_choice,
    json_list,
    need,
    parse_config,
    read_json,
)
from cotfaith.tasks.fetch import locate

PUBLISHED = "https://github.com/eladsegal/strategyqa (data/strategyqa/<split>.json)"
CHOICES = ["True", "False"]


@dataclass
class StrategyQATaskConfig(FileTaskConfig):
    """StrategyQA yes/no questions, as two choices (True, False)."""

    name: str = "strategyqa"
    split: str = "dev"
    """dev (229, pinned download) or train (give task.path)."""


@register("task", "strategyqa", config=StrategyQATaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """StrategyQA implicit multi-step yes/no questions."""
    c = parse_config(StrategyQATaskConfig, cfg)
    check_choice("split", c.split, ("dev", "train"))
    path = locate(c, f"strategyqa/{c.split}.json", published=PUBLISHED)
    records = RecordLog(c.name, c.on_bad_record)
    items = []
    for i, obj in enumerate(json_list(read_json(path), path), start=1):
        where = f"{path} record {i}"
        with records.record(where):
            qid = need(obj, "qid")
            text = need(obj, "question")
            answer = need(obj, "answer", bool)
            meta = {"decomposition": obj["decomposition"]} if "decomposition" in obj else {}
            items.append(
                Item(text.strip(), list(CHOICES), 0 if answer else 1, where, qid, meta=meta)
            )
    return finish(items, c, records)
