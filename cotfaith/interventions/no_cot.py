"""The no-CoT baseline: the answer asked straight after the question, no reasoning at all."""

from __future__ import annotations

from cotfaith.context import RunContext
from cotfaith.interventions.base import Intervention, register
from cotfaith.tasks.base import Question


@register
class NoCot(Intervention):
    name = "no_cot"
    scope = "question"

    async def run_question(self, ctx: RunContext, q: Question) -> None:
        answered = await ctx.answer(q, None)
        ctx.emit(q, answered, intervention=self.name, condition="none", sample=None)
