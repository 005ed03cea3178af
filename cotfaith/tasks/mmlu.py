"""MMLU (Hendrycks et al. 2021): one headerless CSV per subject and split, rows
question,A,B,C,D,answer. The published files mix line endings and an option cell can read
`None` (a real answer text, kept as such); the subject comes from the file name
(<subject>_<split>.csv)."""

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
    parse_config,
    read_text,
    short,
)
from cotfaith.tasks.fetch import fetch, local_path
from cotfaith.tasks.sources import PINNED

SPLITS = ("dev", "val", "test")
PUBLISHED = "https://people.eecs.berkeley.edu/~hendrycks/data.tar"
COLUMNS = ("question", "A", "B", "C", "D", "answer")


@dataclass
class MmluTaskConfig(FileTaskConfig):
    """MMLU multiple-choice questions (4 choices) of one subject, several, or all."""

    name: str = "mmlu"
    split: str = "val"
    """dev (5 per subject), val (pinned downloads) or test (give task.path)."""
    subjects: Any = None
    """A subject (e.g. `anatomy`), a list of subjects, or null / `all` = every subject."""
    n_shots: int | None = 0
    """Demonstrations from the same subject's dev split (held-apart dev records when the
    split is dev itself)."""


@register("task", "mmlu", config=MmluTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """MMLU (Massive Multitask Language Understanding), by subject."""
    c = parse_config(MmluTaskConfig, cfg)
    check_choice("split", c.split, SPLITS)
    files = _files(c, c.split)
    records = RecordLog(c.name, c.on_bad_record)
    items = [it for subject, path in files.items() for it in read_csv(path, subject, records)]
    pool = None
    if c.n_shots and c.split != "dev":
        dev = _files(c, "dev", subjects=list(files))
        if set(dev) == set(files):  # else: demos held apart from the split itself
            pool = [it for subject, path in dev.items() for it in read_csv(path, subject, records)]
    return finish(items, c, records, demo_pool=pool)


def subject_of(path: Path, split: str | None = None) -> str:
    stem = path.stem
    for s in (split, *SPLITS):
        if s and stem.endswith(f"_{s}"):
            return stem[: -len(s) - 1]
    return stem


def _wanted(c: MmluTaskConfig) -> list[str] | None:
    s = c.subjects
    if s is None or s == "all" or s == ["all"]:
        return None
    if isinstance(s, str):
        return [s]
    if isinstance(s, list | tuple) and all(isinstance(x, str) for x in s) and s:
        return list(s)
    raise ConfigError(f"task.subjects: expected a subject, a list of subjects or 'all', got {s!r}")


def _files(c: MmluTaskConfig, split: str, subjects: list[str] | None = None) -> dict[str, Path]:
    """subject -> CSV file of `split`: from task.path (a file, a split folder or the data
    folder holding dev/ val/ test/) or the pinned downloads."""
    wanted = subjects if subjects is not None else _wanted(c)
    path = local_path(c)
    if path is not None and path.is_file():
        if split != c.split:
            return {}  # a single file given: no dev split beside it (demos held apart instead)
        found = {subject_of(path, split): path}
    elif path is not None:
        folder = path / split if (path / split).is_dir() else path
        found = {subject_of(p, split): p for p in sorted(folder.glob(f"*_{split}.csv"))}
        if not found and split == c.split:
            raise ConfigError(f"task.path: {folder} holds no *_{split}.csv files (task mmlu)")
    else:
        prefix = f"mmlu/{split}/"
        known = sorted(subject_of(Path(r), split) for r in PINNED if r.startswith(prefix))
        if not known:
            raise ConfigError(
                f"task mmlu: no pinned download for split {split}; get {PUBLISHED} and set "
                f"task.path=<its data folder>"
            )
        found = {s: Path(f"{prefix}{s}_{split}.csv") for s in known}  # fetched below
    if wanted is not None:
        unknown = sorted(set(wanted) - set(found))
        if unknown and subjects is None:
            raise ConfigError(
                f"task.subjects: unknown subject(s) {unknown} for split {split}; known: "
                f"{sorted(found)}"
            )
        found = {s: p for s, p in found.items() if s in wanted}
    if path is None:
        found = {s: fetch(str(p), c, published=PUBLISHED) for s, p in found.items()}
    return found


def read_csv(path: Path, subject: str, records: RecordLog) -> list[Item]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    items = []
    start = 1
    while True:
        where = f"{path} line {start}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # an unterminated quote: the rest of the file cannot be read
            records.bad(where, "(csv)", f"{e}; is the file truncated?")
            break
        start = reader.line_num + 1
        if not row or not any(cell.strip() for cell in row):
            continue
        with records.record(where):
            items.append(_item(row, where, subject))
    return items


def _item(row: list[str], where: str, subject: str) -> Item:
    if len(row) != len(COLUMNS):
        missing = COLUMNS[len(row)] if len(row) < len(COLUMNS) else "(extra)"
        raise BadRecord(missing, f"expected 6 cells (question,A,B,C,D,answer), got {len(row)}")
    cells = [cell.replace("\r\n", "\n").strip() for cell in row]
    if not cells[0]:
        raise BadRecord("question", "empty")
    answer = cells[5].upper()
    if answer not in ("A", "B", "C", "D"):
        raise BadRecord("answer", f"unknown answer label {short(row[5])}, not in ABCD")
    return Item(cells[0], cells[1:5], "ABCD".index(answer), where, subtask=subject)
