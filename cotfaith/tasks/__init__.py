"""Tasks produce multiple-choice `Question`s. Each task is one module here that registers a
loader with `@register("task", name, config=...)` (see cotfaith.registry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cotfaith import registry
from cotfaith.errors import ConfigError
from cotfaith.tasks.base import Question


def build_task(cfg: Mapping[str, Any]) -> list[Question]:
    name = cfg.get("name")
    questions = registry.lookup("task", name).obj(cfg)
    if not questions:
        n = cfg.get("n_questions")
        if n is not None and int(n) < 1:
            raise ConfigError(f"task {name}: no questions (task.n_questions={n}; must be >= 1)")
        source = f"task.path={cfg['path']}" if cfg.get("path") else "its data file"
        raise ConfigError(
            f"task {name}: no questions in {source} (an empty file, or every record held apart "
            "as a demonstration or skipped); check the file"
        )
    return questions
