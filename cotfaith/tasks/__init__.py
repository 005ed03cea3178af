"""Tasks produce multiple-choice `Question`s, built by name from the task config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.tasks.base import Question


def _arithmetic(cfg: Mapping[str, Any]) -> list[Question]:
    from cotfaith.tasks.arithmetic import generate

    try:
        return generate(
            int(cfg["n_questions"]),
            seed=int(cfg["seed"]),
            min_steps=int(cfg["min_steps"]),
            max_steps=int(cfg["max_steps"]),
            min_choices=int(cfg["min_choices"]),
            max_choices=int(cfg["max_choices"]),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


TASKS: dict[str, Callable[[Mapping[str, Any]], list[Question]]] = {"arithmetic": _arithmetic}


def build_task(cfg: Mapping[str, Any]) -> list[Question]:
    name = cfg.get("name")
    if name not in TASKS:
        raise ConfigError(f"task.name: unknown task {name!r}; known: {sorted(TASKS)}")
    questions = TASKS[name](cfg)
    if not questions:
        raise ConfigError(f"task {name}: no questions (task.n_questions={cfg.get('n_questions')})")
    return questions
