"""Interventions: small units, registered by name, that turn a question or a trace into records.

Adding one touches one module (decorated with `@register`) plus its config in conf/intervention/.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from cotfaith.context import RunContext, Trace
from cotfaith.errors import ConfigError
from cotfaith.tasks.base import Question

REGISTRY: dict[str, type[Intervention]] = {}


class Intervention(ABC):
    name: ClassVar[str]
    scope: ClassVar[Literal["question", "trace"]]
    """`question`: runs once per question (no CoT needed); `trace`: once per sampled CoT."""

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)

    async def run_question(self, ctx: RunContext, q: Question) -> None:
        raise NotImplementedError

    async def run_trace(self, ctx: RunContext, trace: Trace) -> None:
        raise NotImplementedError


def register(cls: type[Intervention]) -> type[Intervention]:
    REGISTRY[cls.name] = cls
    return cls


def build_interventions(selected: Mapping[str, Mapping[str, Any]]) -> list[Intervention]:
    from cotfaith.interventions import no_cot, truncation  # noqa: F401 - registers them

    out = []
    for key, settings in selected.items():
        name = settings.get("name", key) if isinstance(settings, Mapping) else key
        if name not in REGISTRY:
            raise ConfigError(
                f"intervention.{key}: unknown intervention {name!r}; known: {sorted(REGISTRY)}"
            )
        out.append(REGISTRY[name](settings or {}))
    if not out:
        raise ConfigError("intervention: none selected; e.g. intervention=[truncation,no_cot]")
    return out
