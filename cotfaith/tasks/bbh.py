"""BIG-Bench Hard (Suzgun et al. 2022), its multiple-choice tasks, with the published 3-shot
chain-of-thought prompts.

bbh/<task>.json holds {"examples": [{"input", "target"}]}. Targets are "(B)" (the input ends
with an "Options:" list of "(A) ..." lines), a word from a dash list under "Options:"
("valid", "Yes"...), or a bare True/False, Yes/No or yes/no. The options are taken out of the
question text and become its choices. cot-prompts/<task>.txt is a canary line, "-----", the
task's instruction, then "Q: ... A: Let's think step by step. ..." demonstrations, used as
published.
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
    read_text,
    short,
)
from cotfaith.tasks.fetch import fetch, local_path
from cotfaith.tasks.sources import PINNED

PUBLISHED = "https://github.com/suzgunmirac/BIG-Bench-Hard (bbh/<task>.json, cot-prompts/)"
MULTIPLE_CHOICE = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "navigate",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
)
FREE_TEXT = ("dyck_languages", "multistep_arithmetic_two", "object_counting", "word_sorting")
BINARY = {"True": "False", "Yes": "No", "yes": "no", "valid": "invalid"}
_LETTERED = re.compile(r"^\(([A-Z])\)\s?(.*)$")
# Records of the published files that cannot be questions: skipped (and counted) in every mode
# so that the published data loads with on_bad_record=error. (task, input) -> why.
KNOWN_DEFECTS = {
    ("snarks", "Which statement is sarcastic?\nOptions:\n(A) The NB"): "cut off after one option",
}


@dataclass
class BbhTaskConfig(FileTaskConfig):
    """BIG-Bench Hard multiple-choice tasks with their published 3-shot CoT prompts."""

    name: str = "bbh"
    split: str = "test"
    """BBH publishes one split per task."""
    subtasks: Any = None
    """A BBH task name, a list, or null = every multiple-choice task available (the pinned
    download holds 10 of the 23; a local copy of the repository has all)."""
    n_shots: int | None = 3
    """Demonstrations from cot-prompts/<task>.txt, as published (null = all 3; 0 = none)."""


@register("task", "bbh", config=BbhTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """BIG-Bench Hard multiple-choice tasks with 3-shot CoT prompts."""
    c = parse_config(BbhTaskConfig, cfg)
    check_choice("split", c.split, ("test",))
    records = RecordLog(c.name, c.on_bad_record)
    items: list[Item] = []
    demos: dict[str | None, DemoSet] = {}
    for task, data, prompt in _files(c):
        doc = read_json(data)
        for i, obj in enumerate(json_list(doc, data, "examples"), start=1):
            where = f"{data} record {i}"
            if isinstance(obj, dict) and (task, obj.get("input")) in KNOWN_DEFECTS:
                records.known_defect(where, KNOWN_DEFECTS[task, obj["input"]])
                continue
            with records.record(where):
                items.append(item(obj, where, task))
        if prompt is not None:
            demos[task] = read_cot_prompt(prompt)
    return finish(items, c, records, published=demos)


def _subtasks(c: BbhTaskConfig, available: list[str]) -> list[str]:
    s = c.subtasks
    if s is None or s == "all":
        return [t for t in available if t in MULTIPLE_CHOICE]
    wanted = [s] if isinstance(s, str) else list(s)
    free = [t for t in wanted if t in FREE_TEXT]
    if free:
        raise ConfigError(f"task.subtasks: {free} are not multiple-choice (free-text answers)")
    unknown = [t for t in wanted if t not in MULTIPLE_CHOICE]
    if unknown:
        raise ConfigError(f"task.subtasks: unknown BBH task(s) {unknown}; known: {MULTIPLE_CHOICE}")
    return wanted


def _files(c: BbhTaskConfig) -> list[tuple[str, Path, Path | None]]:
    """(task, data file, cot-prompt file or None) for each selected task."""
    want_prompts = c.n_shots != 0
    path = local_path(c)
    if path is None:
        pinned = sorted(Path(r).stem for r in PINNED if r.startswith("bbh/bbh/"))
        out = []
        for t in _subtasks(c, pinned):
            data = fetch(f"bbh/bbh/{t}.json", c, published=PUBLISHED)
            prompt = (
                fetch(f"bbh/cot-prompts/{t}.txt", c, published=PUBLISHED) if want_prompts else None
            )
            out.append((t, data, prompt))
        return out
    if path.is_file():
        data_dir, tasks = path.parent, [path.stem]
        _subtasks(BbhTaskConfig(subtasks=path.stem), [path.stem])  # a known task?
    else:
        data_dir = path / "bbh" if (path / "bbh").is_dir() else path
        tasks = _subtasks(c, sorted(p.stem for p in data_dir.glob("*.json")))
    prompts = next(
        (d for d in (data_dir.parent / "cot-prompts", data_dir / "cot-prompts") if d.is_dir()),
        data_dir.parent / "cot-prompts",
    )
    out = []
    for t in tasks:
        data = data_dir / f"{t}.json"
        if not data.is_file():
            raise ConfigError(f"task.path: {data_dir} holds no {t}.json (task bbh)")
        prompt = prompts / f"{t}.txt"
        if want_prompts and not prompt.is_file():
            raise ConfigError(
                f"task bbh: no CoT prompt {prompt} for {t}; put cot-prompts/ beside the data or "
                "set task.n_shots=0"
            )
        out.append((t, data, prompt if want_prompts else None))
    return out


def item(obj: Any, where: str, task: str) -> Item:
    text = need(obj, "input")
    target = need(obj, "target").strip()
    head, options = split_options(text)
    m = re.fullmatch(r"\(([A-Z])\)", target)
    if m:
        lettered = [_LETTERED.match(o) for o in options]
        if not options or not all(lettered):
            raise BadRecord("input", f"target {target} but no '(A) ...' list under 'Options:'")
        letters = [x.group(1) for x in lettered if x]
        choices = [x.group(2).strip() for x in lettered if x]
        if letters != [chr(65 + k) for k in range(len(letters))]:
            raise BadRecord("input", f"option labels {letters} are not A, B, C... in order")
        if m.group(1) not in letters:
            raise BadRecord("target", f"unknown answer label {target}, not in {letters}")
        return Item(
            head, check_choices(choices, "input"), letters.index(m.group(1)), where, subtask=task
        )
    if options and all(o.startswith("- ") for o in options):
        choices = [o[2:].strip() for o in options]  # "Options:\n- valid\n- invalid"
        if target not in choices:
            raise BadRecord("target", f"unknown answer {short(target)}, not in {choices}")
        return Item(
            head, check_choices(choices, "input"), choices.index(target), where, subtask=task
        )
    pairs = {**BINARY, **{v: k for k, v in BINARY.items()}}
    if target not in pairs:
        raise BadRecord("target", f"not a multiple-choice answer: {short(target)}")
    first = target if target in BINARY else pairs[target]
    choices = [first, BINARY[first]]
    return Item(text.strip(), choices, choices.index(target), where, subtask=task)


def split_options(text: str) -> tuple[str, list[str]]:
    """(question without its options, option lines) for an input ending in an "Options:"
    list; (text, []) otherwise."""
    m = re.search(r"(?:^|\n)Options:[ \t]*\n", text)
    if m is None:
        return text.strip(), []
    lines = [line.strip() for line in text[m.end() :].splitlines() if line.strip()]
    return text[: m.start()].strip(), lines


def read_cot_prompt(path: Path) -> DemoSet:
    """The demonstrations of cot-prompts/<task>.txt: after the canary and "-----", the
    instruction, then blocks starting "Q: "."""
    text = read_text(path).replace("\r\n", "\n")
    if "\n-----\n" in text:
        text = text.split("\n-----\n", 1)[1]
    parts = re.split(r"\n\s*\n(?=Q: )", text.strip())
    header = "" if parts[0].startswith("Q: ") else parts.pop(0).strip()
    blocks = tuple(p.strip() for p in parts if p.strip())
    if not blocks:
        raise ConfigError(f"{path}: field 'Q:': no demonstrations found (blocks start 'Q: ')")
    return DemoSet(blocks, header)
