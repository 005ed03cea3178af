"""HotpotQA (Yang et al. 2018), its yes/no questions only, as two choices (Yes, No).

Read from the published JSON array (_id, question, answer, type, level, context [[title,
[sentences]]], supporting_facts [[title, sentence index]]). Records whose answer is not yes/no
are left out (not errors). The context shows the supporting paragraphs only, compactly (one
line per paragraph: "Title: sentences"); `distractors: true` shows all ten paragraphs as
published (the distractor setting)."""

from __future__ import annotations

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
    json_list,
    need,
    parse_config,
    read_json,
    short,
)
from cotfaith.tasks.fetch import locate

PUBLISHED = "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json"
CHOICES = ["Yes", "No"]


@dataclass
class HotpotQATaskConfig(FileTaskConfig):
    """HotpotQA yes/no (comparison) questions, with their supporting paragraphs."""

    name: str = "hotpotqa"
    split: str = "dev"
    """dev: the pinned download is the first 103 records of the distractor dev set (12 yes/no
    questions); for the whole set give task.path (hotpot_dev_distractor_v1.json)."""
    distractors: bool = False
    """Show all published paragraphs (distractors included), not only the supporting ones."""


@register("task", "hotpotqa", config=HotpotQATaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """HotpotQA yes/no questions with supporting paragraphs."""
    c = parse_config(HotpotQATaskConfig, cfg)
    check_choice("split", c.split, ("dev",))
    path = locate(c, "hotpotqa/hotpot_dev_distractor_v1_100.json", published=PUBLISHED)
    records = RecordLog(c.name, c.on_bad_record)
    items = []
    for i, obj in enumerate(json_list(read_json(path), path), start=1):
        where = f"{path} record {i}"
        with records.record(where):
            it = _item(obj, where, c.distractors)
            if it is not None:
                items.append(it)
    return finish(items, c, records)


def _item(obj: Any, where: str, distractors: bool) -> Item | None:
    qid = need(obj, "_id")
    text = need(obj, "question")
    answer = need(obj, "answer").strip().lower()
    if answer not in ("yes", "no"):
        return None  # an open-text answer: not part of this task
    paragraphs = need(obj, "context", list)
    facts = need(obj, "supporting_facts", list)
    titles = set()
    for k, fact in enumerate(facts):
        if not (isinstance(fact, list) and len(fact) == 2 and isinstance(fact[0], str)):
            raise BadRecord(f"supporting_facts[{k}]", f"expected [title, index], got {short(fact)}")
        titles.add(fact[0])
    lines = []
    for k, para in enumerate(paragraphs):
        ok = isinstance(para, list) and len(para) == 2 and isinstance(para[0], str)
        if not ok or not isinstance(para[1], list) or not all(isinstance(s, str) for s in para[1]):
            raise BadRecord(f"context[{k}]", f"expected [title, [sentences]], got {short(para)}")
        title, sentences = para
        if distractors or title in titles:
            lines.append(f"{title}: {''.join(sentences).strip()}")  # sentences keep their spaces
    missing = titles - {p[0] for p in paragraphs}
    if missing:
        raise BadRecord("supporting_facts", f"title(s) {sorted(missing)} not in the context")
    meta = {"type": obj.get("type"), "level": obj.get("level")}
    return Item(
        text.strip(),
        list(CHOICES),
        CHOICES.index(answer.capitalize()),
        where,
        qid,
        context="\n".join(lines),
        meta=meta,
    )
