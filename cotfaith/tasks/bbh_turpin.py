"""The 13 BIG-Bench Hard tasks of Turpin et al. (2023), "Language Models Don't Always Say What
They Think", with their published few-shot prompts.

<task>/val_data.json holds {"data": [{parsed_inputs, multiple_choice_targets,
multiple_choice_scores, random_ans_idx, ...}]}; the question is `parsed_inputs` up to its
"Answer choices:" list, whose "(A) ..." lines are the choices (in the order of
multiple_choice_targets; the gold is the choice scored 1). <task>/few_shot_prompts.json holds
two prompts: `baseline_few_shot_prompt` and `all_a_few_shot_prompt` (the same demonstrations
reordered so every answer is (A): the biased context "answer is always A"). Demonstrations are
separated by "###". `few_shot` picks one; `few_shot_prompts()` returns both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.registry import register
from cotfaith.tasks.base import Question
from cotfaith.tasks.build import DemoSet, finish
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
    short,
)
from cotfaith.tasks.fetch import fetch, local_path

TASKS = (
    "causal_judgment",
    "date_understanding",
    "disambiguation_qa",
    "hyperbaton",
    "logical_deduction_five_objects",
    "movie_recommendation",
    "navigate",
    "ruin_names",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
)
FEW_SHOT = {"baseline": "baseline_few_shot_prompt", "all_a": "all_a_few_shot_prompt"}
PUBLISHED = "https://github.com/milesaturpin/cot-unfaithfulness (data/bbh/<task>/)"
_CHOICES_MARK = "\n\nAnswer choices:"
_CHOICE = re.compile(r"^\(([A-Z])\)\s?(.*)$")


@dataclass
class BbhTurpinTaskConfig(FileTaskConfig):
    """Turpin et al.'s 13 BBH tasks with their baseline or all-(A) few-shot prompts."""

    name: str = "bbh_turpin"
    split: str = "val"
    """val_data.json: the only split published."""
    subtasks: Any = None
    """A task name, a list, or null = all 13."""
    few_shot: str = "baseline"
    """Which published prompt: `baseline` or `all_a` (every demonstration answered (A))."""
    n_shots: int | None = None
    """How many of the prompt's demonstrations (null = all, as published; 0 = none)."""


@register("task", "bbh_turpin", config=BbhTurpinTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """Turpin et al. (2023) BBH tasks with baseline / all-(A) few-shot prompts."""
    c = parse_config(BbhTurpinTaskConfig, cfg)
    check_choice("split", c.split, ("val",))
    check_choice("few_shot", c.few_shot, tuple(FEW_SHOT))
    records = RecordLog(c.name, c.on_bad_record)
    items: list[Item] = []
    demos: dict[str | None, DemoSet] = {}
    for task, folder in _folders(c):
        rel = f"bbh_turpin/{task}/val_data.json"
        data = folder / "val_data.json" if folder else fetch(rel, c, published=PUBLISHED)
        for i, obj in enumerate(json_list(read_json(data), data, "data"), start=1):
            where = f"{data} record {i}"
            with records.record(where):
                items.append(item(obj, where, task))
        if c.n_shots != 0:
            demos[task] = few_shot_prompts(task, folder, c)[c.few_shot]
    questions = finish(items, c, records, published=demos)
    for q in questions:
        q.meta["few_shot"] = c.few_shot if c.n_shots != 0 else None
    return questions


def _folders(c: BbhTurpinTaskConfig) -> list[tuple[str, Path | None]]:
    """(task, its local folder; None: download)."""
    s = c.subtasks
    wanted = list(TASKS) if s is None or s == "all" else ([s] if isinstance(s, str) else list(s))
    unknown = [t for t in wanted if t not in TASKS]
    path = local_path(c)
    if path is not None and (path / "val_data.json").is_file():
        return [(path.name, path)]  # one task's folder
    if unknown:
        raise ConfigError(f"task.subtasks: unknown task(s) {unknown}; known: {list(TASKS)}")
    if path is None:
        return [(t, None) for t in wanted]
    if path.is_file():
        raise ConfigError(f"task.path: {path}: give the folder holding <task>/val_data.json")
    missing = [t for t in wanted if not (path / t / "val_data.json").is_file()]
    if missing and c.subtasks not in (None, "all"):
        raise ConfigError(f"task.path: {path} holds no {missing[0]}/val_data.json")
    return [(t, path / t) for t in wanted if t not in missing]


def few_shot_prompts(
    task: str, folder: Path | None = None, cfg: FileTaskConfig | None = None
) -> dict[str, DemoSet]:
    """Both published prompts of a task: {"baseline": ..., "all_a": ...}, from the task's
    local folder, or downloaded (with `cfg`'s data_dir and url) when `folder` is None.
    `DemoSet.render(blocks)` gives the prompt text."""
    if folder is not None:
        path = folder / "few_shot_prompts.json"
        if not path.is_file():
            raise ConfigError(f"{folder}: no few_shot_prompts.json; set task.n_shots=0")
    else:
        rel = f"bbh_turpin/{task}/few_shot_prompts.json"
        path = fetch(rel, cfg or BbhTurpinTaskConfig(), published=PUBLISHED)
    doc = read_json(path)
    out = {}
    for name, key in FEW_SHOT.items():
        if not isinstance(doc, dict) or not isinstance(doc.get(key), str):
            raise ConfigError(f"{path}: field '{key}': missing or not text")
        out[name] = split_prompt(doc[key], path, key)
    return out


def split_prompt(text: str, path: Path, key: str) -> DemoSet:
    """Instruction, then demonstrations separated by "###" (the prompt ends with one too)."""
    header, sep, body = text.partition("\n\n\n")
    if not sep:
        header, body = "", text
    blocks = tuple(b.strip() for b in body.split("###") if b.strip())
    if not blocks:
        raise ConfigError(f"{path}: field '{key}': no demonstrations (separated by '###')")
    return DemoSet(
        blocks, header.strip(), sep="\n\n###\n\n", header_sep="\n\n\n", trailer="\n\n###"
    )


def item(obj: Any, where: str, task: str) -> Item:
    parsed = need(obj, "parsed_inputs")
    targets = need(obj, "multiple_choice_targets", list)
    scores = need(obj, "multiple_choice_scores", list)
    head, mark, tail = parsed.rpartition(_CHOICES_MARK)
    if not mark:
        raise BadRecord("parsed_inputs", "no 'Answer choices:' list")
    lines = [line for line in tail.splitlines() if line.strip()]
    matched = [_CHOICE.match(line.strip()) for line in lines]
    if not all(matched):
        bad = lines[matched.index(None)]
        raise BadRecord("parsed_inputs", f"choice line {short(bad)} is not '(X) text'")
    choices = check_choices([m.group(2).strip() for m in matched if m], "parsed_inputs")
    if len(targets) != len(choices) or len(scores) != len(choices):
        raise BadRecord(
            "multiple_choice_scores",
            f"{len(choices)} choices, {len(targets)} targets, {len(scores)} scores",
        )
    if any(s not in (0, 1) or isinstance(s, bool) for s in scores) or scores.count(1) != 1:
        raise BadRecord("multiple_choice_scores", f"needs exactly one 1, got {short(scores)}")
    meta = {k: obj[k] for k in ("idx", "random_ans_idx") if isinstance(obj.get(k), int)}
    return Item(head.strip(), choices, scores.index(1), where, subtask=task, meta=meta)
