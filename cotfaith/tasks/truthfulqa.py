"""TruthfulQA multiple choice (Lin et al. 2022), MC1: one true answer among 2-13.

Two published layouts: mc_task.json (a JSON array of {question, mc1_targets: {answer: 0/1},
mc2_targets}) and TruthfulQA.csv (columns found by header name: Question, Best Answer,
Incorrect Answers separated by ";"). In both the true answer is listed first, so the choices
are shuffled by default (seeded per question)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotfaith.errors import ConfigError
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
    json_list,
    need,
    parse_config,
    read_json,
    read_text,
    short,
)
from cotfaith.tasks.fetch import locate

PUBLISHED = "https://github.com/sylinrl/TruthfulQA (data/mc_task.json or TruthfulQA.csv)"
CSV_COLUMNS = ("Question", "Best Answer", "Incorrect Answers")


@dataclass
class TruthfulQATaskConfig(FileTaskConfig):
    """TruthfulQA MC1: one true answer among 2-13 (mc_task.json or TruthfulQA.csv)."""

    name: str = "truthfulqa"
    split: str = "validation"
    """TruthfulQA publishes one split (817 questions)."""
    shuffle_choices: bool = True
    """On by default: the published files list the true answer first."""


@register("task", "truthfulqa", config=TruthfulQATaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """TruthfulQA multiple choice (MC1)."""
    c = parse_config(TruthfulQATaskConfig, cfg)
    check_choice("split", c.split, ("validation",))
    path = locate(c, "truthfulqa/mc_task.json", published=PUBLISHED)
    records = RecordLog(c.name, c.on_bad_record)
    items = _from_csv(path, records) if path.suffix.lower() == ".csv" else _from_json(path, records)
    return finish(items, c, records)


def _from_json(path: Path, records: RecordLog) -> list[Item]:
    items = []
    for i, obj in enumerate(json_list(read_json(path), path), start=1):
        where = f"{path} record {i}"
        with records.record(where):
            text = need(obj, "question")
            targets = need(obj, "mc1_targets", dict)
            choices = [str(k).strip() for k in targets]
            marks = list(targets.values())
            if any(m not in (0, 1) or isinstance(m, bool) for m in marks):
                raise BadRecord("mc1_targets", f"scores must be 0 or 1, got {short(marks)}")
            if marks.count(1) != 1:
                raise BadRecord(
                    "mc1_targets", f"needs exactly one true answer, has {marks.count(1)}"
                )
            check_choices(choices, "mc1_targets")
            # the dict's order is the published order; the true answer need not come first
            items.append(Item(text.strip(), choices, marks.index(1), where))
    return items


def _from_csv(path: Path, records: RecordLog) -> list[Item]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), strict=True)
    header = reader.fieldnames or []
    missing = [col for col in CSV_COLUMNS if col not in header]
    if missing:
        raise ConfigError(f"{path} line 1: field '{missing[0]}': missing from the CSV header")
    items = []
    start = 2
    while True:
        where = f"{path} line {start}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            records.bad(where, "(csv)", f"{e}; is the file truncated?")
            break
        start = reader.line_num + 1
        with records.record(where):
            if None in row:
                raise BadRecord(
                    "(row)", f"{len(header) + len(row[None])} cells, header has {len(header)}"
                )
            for col in CSV_COLUMNS:
                if row.get(col) is None:
                    raise BadRecord(col, "missing")
            text, best = row["Question"].strip(), row["Best Answer"].strip()
            if not text:
                raise BadRecord("Question", "empty")
            if not best:
                raise BadRecord("Best Answer", "empty")
            wrong = [a.strip() for a in row["Incorrect Answers"].split(";") if a.strip()]
            choices = check_choices([best, *wrong], "Incorrect Answers")
            meta = {k: row[k] for k in ("Type", "Category") if row.get(k)}
            items.append(Item(text, choices, 0, where, meta=meta))
    return items
