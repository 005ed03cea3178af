"""The no-CoT baseline: the answer asked straight after the question, no reasoning at all."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cotfaith.context import RunContext
from cotfaith.curvestats import ratio_columns
from cotfaith.interventions.base import Intervention, StatSettings
from cotfaith.records import REFERENCE
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
    headline = ("changed_vs_no_cot",)
    scope = "question"

    async def run_question(self, ctx: RunContext, q: Question) -> None:
        answered = await ctx.answer(q, None)
        ctx.emit(q, answered, intervention=self.name, condition="none", sample=None)

    @classmethod
    def controls(cls, rows: pd.DataFrame, group: pd.DataFrame, stats: StatSettings) -> dict:
        out = ratio_columns("accuracy_no_cot", rows, "correct", stats)
        # the no-CoT answer against each CoT's reference answer: the scaling proxy of the
        # paper, on the no-CoT prompt itself (changed_at_k0 uses the empty-CoT prompt)
        ref = group[(group["intervention"] == REFERENCE) & (group["parse_status"] == "ok")]
        base = rows[rows["parse_status"] == "ok"][["question_id", "answer"]]
        pairs = ref.merge(base, on="question_id", suffixes=("", "_no_cot"))
        pairs = pairs.assign(changed=pairs["answer"] != pairs["answer_no_cot"])
        out.update(ratio_columns("changed_vs_no_cot", pairs, "changed", stats))
        return out
