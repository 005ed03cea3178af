"""The reasoning stage (stage 1): a question becomes a trace and a reference answer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from cotfaith import registry
from cotfaith.tasks.base import Question

if TYPE_CHECKING:
    from cotfaith.context import RunContext, Trace


class ReasoningMethod(ABC):
    """Turns a question into reasoning traces. Registered with
    `@register("reasoning", name, config=Schema)`; chosen by `reasoning=<name>`."""

    name: ClassVar[str]

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)

    @abstractmethod
    async def trace(self, ctx: RunContext, q: Question, sample: int) -> Trace | None:
        """Produce sample `sample` of the reasoning for `q`, read the reference answer after
        it, and emit the reference record. None when there is no usable trace (a failed call,
        recorded as such)."""


def build_reasoning(cfg: Mapping[str, Any]) -> ReasoningMethod:
    name = cfg.get("name")
    return registry.lookup("reasoning", name).obj(cfg)
