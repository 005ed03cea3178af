"""What an intervention works with: the run's model, prompts, read-out and record sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cotfaith.answers import ParsedAnswer
from cotfaith.cache import CachedModel
from cotfaith.models.base import ModelRequest, ModelResponse, request_key
from cotfaith.models.retry import CallFailed
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.records import CALL_FAILED, Record, RecordWriter
from cotfaith.segment import Step
from cotfaith.tasks.base import Question


@dataclass
class Trace:
    """One sampled CoT and the answer read after it: the reference for every intervention."""

    question: Question
    sample: int
    cot: str
    """The sampled text that followed the CoT prefix, verbatim."""
    steps: list[Step]
    reference: ParsedAnswer

    @property
    def n_steps(self) -> int:
        return len(self.steps)


@dataclass
class Answered:
    parsed: ParsedAnswer
    response: ModelResponse
    key: str
    error: str | None = None


def failed_answer(error: CallFailed, key: str) -> Answered:
    response = ModelResponse(text="", retries=max(0, error.attempts - 1))
    return Answered(ParsedAnswer(None, CALL_FAILED), response, key, str(error))


@dataclass
class RunContext:
    model: CachedModel
    templates: PromptTemplates
    reader: AnswerReader
    writer: RecordWriter
    segmenter: str
    model_name: str
    provider: str
    continuation: str = "prefill"
    """How prefilled turns are continued by this backend, or `none` (stored in records)."""
    cot_prompt: str = "prefill"
    """`prefill` (assistant turn starts with the CoT phrase) or `instructed`."""

    async def call(self, request: ModelRequest) -> tuple[ModelResponse, str]:
        return await self.model.generate(request)

    async def answer(self, q: Question, cot: str | None) -> Answered:
        """Ask for the answer after `cot` (None: without any CoT) and read it out.

        A call that failed for good (retries exhausted, a 4xx) becomes an answer with status
        `call_failed`: recorded, never cached, excluded from the metrics, retried on a rerun.
        """
        request = self.reader.request(q, cot)
        try:
            response, key = await self.model.generate(request)
        except CallFailed as e:
            return failed_answer(e, request_key(self.model.identity, request))
        return Answered(self.reader.read(q, response), response, key)

    def emit(
        self,
        q: Question,
        answered: Answered,
        *,
        intervention: str,
        condition: str,
        sample: int | None,
        reference: ParsedAnswer | None = None,
        calls: list[tuple[ModelResponse, str]] = (),
        **fields: Any,
    ) -> Record:
        """Build the record for one answered condition point and write it at once.

        `calls` lists further model calls this record depends on (a sampled CoT, say), so that
        tokens and cache hits add up per intervention.
        """
        parsed = answered.parsed
        pairs = [(answered.response, answered.key), *calls]
        responses = [r for r, _ in pairs]
        costs = [r.cost_usd for r in responses if r.cost_usd is not None]
        fresh_costs = [r.cost_usd for r in responses if r.cost_usd is not None and not r.cached]
        # one entry per call, so totals can count a call shared by several rows (k = n and
        # the reference, the common k = 0 prefix of samples) once
        call_log = [
            {
                "key": k,
                "cached": r.cached,
                "input_tokens": r.usage.input_tokens,
                "output_tokens": r.usage.output_tokens,
                "cached_input_tokens": r.usage.cached_input_tokens,
                "reasoning_tokens": r.usage.reasoning_tokens,
                "cost_usd": r.cost_usd,
            }
            for r, k in pairs
        ]
        if answered.error:
            fields.setdefault("extra", {})["error"] = answered.error
        same = None
        if reference is not None:
            # unparseable on either side is never agreement
            same = parsed.letter is not None and parsed.letter == reference.letter
        record = Record(
            task=q.task,
            question_id=q.id,
            intervention=intervention,
            condition=condition,
            sample=sample,
            model=self.model_name,
            provider=self.provider,
            gold=q.answer,
            n_choices=len(q.choices),
            answer=parsed.letter,
            parse_status=parsed.status,
            correct=parsed.letter == q.answer,
            original_answer=reference.letter if reference is not None else None,
            same_answer=same,
            answer_strategy=self.reader.strategy,
            continuation_strategy=self.continuation,
            cot_prompt=self.cot_prompt,
            segmenter=self.segmenter,
            answer_probs=parsed.probs,
            input_tokens=sum(r.usage.input_tokens for r in responses),
            output_tokens=sum(r.usage.output_tokens for r in responses),
            cached_input_tokens=sum(r.usage.cached_input_tokens for r in responses),
            reasoning_tokens=sum(r.usage.reasoning_tokens for r in responses),
            retries=sum(r.retries for r in responses),
            cost_usd=sum(costs) if costs else None,
            spent_usd=sum(fresh_costs) if fresh_costs else (0.0 if costs else None),
            call_log=call_log,
            calls=len(responses),
            cache_hits=sum(r.cached for r in responses),
            cached=all(r.cached for r in responses),
            request_key=answered.key,
            **fields,
        )
        self.writer.write(record)
        return record
