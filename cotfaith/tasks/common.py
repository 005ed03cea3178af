"""What every loader of a published benchmark file shares: the common config fields, the raw
`Item` a loader makes of one record, and bad-record handling (one-line errors or counted skips).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from cotfaith.errors import ConfigError

log = logging.getLogger(__name__)

ON_BAD_RECORD = ("error", "skip")


@dataclass
class FileTaskConfig:
    """Fields shared by every task read from a published data file."""

    name: str = ""
    path: str | None = None
    """A local copy of the published file (or folder), exactly as published; null = the pinned
    copy downloaded into data_dir (reused once there)."""
    split: str = ""
    """Which published split to read (the file name within a folder or a download)."""
    n_questions: int | None = None
    """How many questions: a seeded subsample that stays stable as the file grows; null or more
    than the file holds = all."""
    seed: int = 0
    """Seeds the subsample, the held-apart demonstrations and the choice shuffle."""
    shuffle_choices: bool = False
    """Shuffle each question's choices (seeded per question; the gold letter follows)."""
    n_shots: int | None = 0
    """Few-shot demonstrations put before each question (never the question itself)."""
    on_bad_record: str = "error"
    """A malformed record: `error` (stop, naming file, line and field) or `skip` (count it;
    the count is in every question's meta as `skipped_records`)."""
    data_dir: str | None = None
    """Download folder; null = $XDG_CACHE_HOME/cotfaith/data (or ~/.cache/cotfaith/data)."""
    url: str | None = None
    """Base URL of a mirror serving the data folder layout (else $COTFAITH_DATA_URL, else the
    pinned published URLs)."""


C = TypeVar("C", bound=FileTaskConfig)


def parse_config(cls: type[C], cfg: Mapping[str, Any] | C) -> C:
    """The typed config from the composed mapping (or a plain dict in tests), checked."""
    if isinstance(cfg, cls):
        out = cfg
    else:
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        data = dict(cfg)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"task {data.get('name')}: unknown key(s) {unknown}")
        out = cls(**data)
    _check_common(out)
    return out


def _check_common(c: FileTaskConfig) -> None:
    if c.n_questions is not None and c.n_questions < 0:
        raise ConfigError(f"task.n_questions must be >= 0 or null, got {c.n_questions}")
    if c.n_shots is not None and c.n_shots < 0:
        raise ConfigError(f"task.n_shots must be >= 0, got {c.n_shots}")
    if c.on_bad_record not in ON_BAD_RECORD:
        raise ConfigError(
            f"task.on_bad_record must be one of {list(ON_BAD_RECORD)}, got {c.on_bad_record!r}"
        )


def check_choice(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"task.{key}: unknown value {value!r}; known: {list(allowed)}")


@dataclass
class Item:
    """One record as a loader read it, before ids, sampling, shuffling and demos."""

    text: str
    choices: list[str]
    gold: int
    """Index of the correct choice."""
    where: str
    """File and line/record number, for messages."""
    source_id: str | None = None
    subtask: str | None = None
    context: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class BadRecord(Exception):
    """A record that cannot become a question: which field, and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")
        self.field = field
        self.problem = problem


def short(value: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecordLog:
    """Applies `on_bad_record`: raise a one-line ConfigError, or count the record as skipped."""

    def __init__(self, task: str, mode: str) -> None:
        self.task = task
        self.mode = mode
        self.skipped = 0
        self.first: str | None = None

    def bad(self, where: str, field: str, problem: str) -> None:
        message = " ".join(f"{where}: field '{field}': {problem}".split())  # one line
        if self.mode != "skip":
            raise ConfigError(message)
        self.skipped += 1
        self.first = self.first or message

    def known_defect(self, where: str, why: str) -> None:
        """A record of the published file known to be broken: skipped in every mode."""
        self.skipped += 1
        self.first = self.first or f"{where}: known defect of the published file ({why})"

    def record(self, where: str) -> _Guard:
        """`with log.record(where):` around the parsing of one record."""
        return _Guard(self, where)

    def report(self) -> None:
        if self.skipped:
            log.warning(
                "task %s: skipped %d malformed record(s); first: %s",
                self.task,
                self.skipped,
                self.first,
            )


class _Guard:
    def __init__(self, log_: RecordLog, where: str) -> None:
        self.log = log_
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, BadRecord):
            self.log.bad(self.where, exc.field, exc.problem)
            return True  # skipped (in error mode `bad` has raised already)
        return False


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text ({e.reason})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from e


def read_jsonl(path: Path, records: RecordLog) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) per non-blank line; a line that is not a JSON object is a bad record."""
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            records.bad(where, "(json)", f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            records.bad(where, "(json)", f"expected an object, got {type(obj).__name__}")
            continue
        yield where, obj


def read_json(path: Path) -> Any:
    """A whole JSON document; invalid JSON (a truncated file) cannot be skipped record by
    record, so it is always an error naming the line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path} line {e.lineno}: field '(json)': invalid JSON ({e.msg} at column "
            f"{e.colno}); is the file truncated?"
        ) from e


def json_list(doc: Any, path: Path, key: str | None = None) -> list[Any]:
    """The list of records of a JSON document: the document itself or `doc[key]`."""
    if key is not None:
        if not isinstance(doc, dict) or key not in doc:
            raise ConfigError(f"{path}: field '{key}': missing (expected {{{key!r}: [...]}})")
        doc = doc[key]
    if not isinstance(doc, list):
        name = key or "(top level)"
        raise ConfigError(f"{path}: field '{name}': expected a list, got {type(doc).__name__}")
    return doc


def need(obj: Any, key: str, kind: type | tuple[type, ...] = str, *, label: str = "") -> Any:
    """obj[key], checked: present, of the right type, and (for text) not empty."""
    name = label or key
    if not isinstance(obj, dict):
        raise BadRecord("(record)", f"expected an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise BadRecord(name, "missing")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
        raise BadRecord(name, f"expected {_kind_name(kind)}, got {short(value)}")
    if not isinstance(value, kind):
        raise BadRecord(name, f"expected {_kind_name(kind)}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise BadRecord(name, "empty")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def check_choices(choices: list[str], field: str = "choices") -> list[str]:
    if len(choices) < 2:
        raise BadRecord(field, f"needs at least 2 choices, has {len(choices)}")
    if len(choices) > 26:
        raise BadRecord(field, f"has {len(choices)} choices; at most 26 fit the letters A-Z")
    return choices
