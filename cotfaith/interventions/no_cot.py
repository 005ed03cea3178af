"""The no-CoT baseline: the answer asked straight after the question, no reasoning at all."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cotfaith.context import RunContext
from cotfaith.interventions.base import Intervention, StatSettings
from cotfaith.metrics import mean
from cotfaith.registry import register
from cotfaith.tasks.base import Question


@dataclass
class NoCotConfig:
    """The no-CoT baseline: answer straight after the question."""

    name: str = "no_cot"


@register("intervention", "no_cot", config=NoCotConfig)
class NoCot(Intervention):
    """The answer without any reasoning (a control for every metric)."""

    name = "no_cot"
    scope = "question"

    async def run_question(self, ctx: RunContext, q: Question) -> None:
        answered = await ctx.answer(q, None)
        ctx.emit(q, answered, intervention=self.name, condition="none", sample=None)

    @classmethod
    def controls(cls, rows: pd.DataFrame, stats: StatSettings) -> dict:
        return {"accuracy_no_cot": mean(rows["correct"])}
