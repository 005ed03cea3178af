"""Chain of thought (Lanham et al. 2023): "Let's think step by step:", sampled, split into steps.

The CoT is sampled with the run's sampling settings (nucleus p = 0.95, temperature 0.8 by
default), split by the configured segmenter, and the answer is read after the complete CoT:
that answer is the reference every intervention compares with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cotfaith.context import Trace, failed_answer
from cotfaith.models.retry import CallFailed
from cotfaith.pricing import estimate_tokens
from cotfaith.reasoning.base import ReasoningMethod
from cotfaith.records import REFERENCE
from cotfaith.registry import register
from cotfaith.segment import prefix, split_steps
from cotfaith.tasks.base import Question

if TYPE_CHECKING:
    from cotfaith.context import RunContext

# finish reasons meaning "stopped at the output cap" (OpenAI / Anthropic / servers)
CUT_OFF = ("length", "max_tokens")


@dataclass
class CotConfig:
    """Chain of thought: one sampled reasoning, split into steps."""

    name: str = "cot"


@register("reasoning", "cot", config=CotConfig)
class ChainOfThought(ReasoningMethod):
    """Chain of thought sampled after "Let's think step by step:"."""

    name = "cot"

    async def trace(self, ctx: RunContext, q: Question, sample: int) -> Trace | None:
        request = ctx.cot_request(q, sample)
        try:
            cot_call = await ctx.call(request)
        except CallFailed as e:
            ctx.emit(
                q,
                failed_answer(e, ctx.key_of(request)),
                intervention=REFERENCE,
                condition="full",
                sample=sample,
            )
            return None
        response = cot_call.response
        cot = response.text
        steps = split_steps(cot, ctx.segmenter)
        cut_off = response.finish_reason in CUT_OFF
        # the text up to the end of the last step, so truncation at k = n asks the very same
        # request (a cache hit that agrees by construction, as in the paper's curves)
        answered = await ctx.answer(q, prefix(cot, steps, len(steps)))
        ctx.emit(
            q,
            answered,
            intervention=REFERENCE,
            condition="full",
            sample=sample,
            n_steps=len(steps),
            calls=[cot_call],
            cot_cut_off=cut_off,
            extra={"cot_request_key": cot_call.key},
        )
        if answered.error is not None:
            return None
        tokens = response.usage.output_tokens or estimate_tokens(cot)
        return Trace(q, sample, cot, steps, answered.parsed, self.name, tokens, cut_off)
