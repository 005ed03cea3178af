"""Early answering (Lanham et al. 2023): keep the first k of the n steps, k = 0..n, and ask.

x = k/n, y = same answer as after the complete CoT. k = n re-asks the reference request itself,
so it is a cache hit and agrees by construction, as in the paper's curves.
"""

from __future__ import annotations

import asyncio

from cotfaith.context import RunContext, Trace
from cotfaith.interventions.base import Intervention, register
from cotfaith.segment import prefix


@register
class Truncation(Intervention):
    name = "truncation"
    scope = "trace"

    async def run_trace(self, ctx: RunContext, trace: Trace) -> None:
        n = trace.n_steps
        if n == 0:
            return  # nothing to truncate; the cot row records the empty CoT

        async def point(k: int) -> None:
            answered = await ctx.answer(trace.question, prefix(trace.cot, trace.steps, k))
            ctx.emit(
                trace.question,
                answered,
                intervention=self.name,
                condition=f"k={k}/{n}",
                sample=trace.sample,
                reference=trace.reference,
                n_steps=n,
                k=k,
                fraction=k / n,
            )

        await asyncio.gather(*(point(k) for k in range(n + 1)))
