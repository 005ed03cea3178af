"""What components work with: the run's models by role, prompts, read-out, continuation and the
record sink. Interventions and reasoning methods see only this, never the runner."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cotfaith.answers import ParsedAnswer
from cotfaith.cache import CachedModel
from cotfaith.errors import ConfigError
from cotfaith.models.base import ModelRequest, ModelResponse, request_key
from cotfaith.models.retry import CallFailed
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.records import CALL_FAILED, NOT_ASKED, Record, RecordWriter
from cotfaith.segment import Step, prefix
from cotfaith.tasks.base import Question

MODEL = "model"
"""The role of the model under test."""

CONTINUATIONS = ("prefill", "completion", "scaffold")


@dataclass
class Trace:
    """One reasoning trace and the answer read after it: the reference for every intervention."""

    question: Question
    sample: int
    cot: str
    """The sampled reasoning text, verbatim (for CoT: what followed "Let's think step by step:")."""
    steps: list[Step]
    reference: ParsedAnswer
    method: str = "cot"
    """The reasoning method that produced it."""
    tokens: int = 0
    """Length of the reasoning in tokens (from the backend's usage where reported, else an
    estimate of about four characters a token)."""
    cut_off: bool = False
    """The reasoning stopped at max_tokens (it may lack its conclusion)."""

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def prefix(self, k: int) -> str:
        """The first k steps, exactly as sampled."""
        return prefix(self.cot, self.steps, k)


@dataclass
class Call:
    """One model call behind a record, with the role that made it."""

    response: ModelResponse
    key: str
    role: str = MODEL


@dataclass
class Answered:
    parsed: ParsedAnswer
    response: ModelResponse
    key: str
    error: str | None = None


@dataclass
class Continued:
    """A partial CoT carried on by the model under test."""

    text: str
    """The continuation only (the partial text is not repeated)."""
    strategy: str
    """prefill | completion | scaffold: how it was obtained (stored in every record)."""
    call: Call


def failed_answer(error: CallFailed, key: str) -> Answered:
    response = ModelResponse(text="", retries=max(0, error.attempts - 1))
    return Answered(ParsedAnswer(None, CALL_FAILED), response, key, str(error))


@dataclass
class Role:
    """A model the run calls in some role: the model under test, the mistake model..."""

    name: str
    client: CachedModel
    provider: str
    model_name: str
    can_prefill: bool


@dataclass
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int


@dataclass
class RunContext:
    model: CachedModel
    templates: PromptTemplates
    reader: AnswerReader
    writer: RecordWriter
    segmenter: str
    model_name: str
    provider: str
    sampling: Sampling = field(default_factory=lambda: Sampling(0.8, 0.95, 1024))
    continuation: str = "prefill"
    """How this backend continues prefilled turns (prefill | completion | none), for answers."""
    cot_prompt: str = "prefill"
    """`prefill` (assistant turn starts with the CoT phrase) or `instructed`."""
    continuation_strategy: str | None = None
    """How a partial CoT is carried on (prefill | completion | scaffold); None: not possible."""
    roles: dict[str, Role] = field(default_factory=dict)
    method: str = "cot"
    overrides: str = ""
    """The job's command-line overrides (a sweep's swept values), stored in every record."""

    @cached_property
    def backend_key(self) -> str:
        # the identity is fixed for a run; hashed once, not on every record
        identity = json.dumps(self.model.identity, sort_keys=True, default=str)
        return hashlib.sha256(identity.encode()).hexdigest()[:10]

    # ------------------------------------------------------------------ calls
    def role(self, name: str) -> Role:
        found = self.roles.get(name)
        if found is not None:
            return found
        if name != MODEL:
            # an intervention calling a role it did not declare in `roles`
            raise ConfigError(f"no model is configured for the role {name!r}")
        can_prefill = self.continuation != "none"
        return Role(MODEL, self.model, self.provider, self.model_name, can_prefill)

    async def call(self, request: ModelRequest, role: str = MODEL) -> Call:
        """One call through the cache in `role`; CallFailed when it failed for good."""
        response, key = await self.role(role).client.generate(request)
        return Call(response, key, role)

    def key_of(self, request: ModelRequest, role: str = MODEL) -> str:
        return request_key(self.role(role).client.identity, request)

    def cot_request(self, q: Question, sample: int) -> ModelRequest:
        instructed = self.cot_prompt == "instructed"
        return ModelRequest(
            messages=self.templates.cot_request_messages(q, instructed=instructed),
            prefill=None if instructed else self.templates.cot_prefix,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_tokens,
            sample_index=sample,
        )

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

    async def continue_cot(self, q: Question, sample: int, partial: str) -> Continued:
        """Carry a partial CoT on with the model under test, with the original prompt and
        sampling settings (the trace's own sample index), by the run's continuation strategy.
        Raises CallFailed when the call failed for good."""
        strategy = self.continuation_strategy
        if strategy is None:
            raise ConfigError("this run cannot continue a partial CoT (see continuation.strategy)")
        if strategy == "scaffold":
            messages = self.templates.scaffold_messages(q, partial)
            prefill = None
        else:
            messages = self.templates.cot_request_messages(q, instructed=False)
            prefill = self.templates.cot_turn(partial)
        request = ModelRequest(
            messages=messages,
            prefill=prefill,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_tokens,
            sample_index=sample,
        )
        try:
            call = await self.call(request)
        except CallFailed as e:
            e.key = self.key_of(request)  # so the failed row counts this very call
            raise
        text = call.response.text
        if strategy == "scaffold" and text and not text[0].isspace():
            text = " " + text  # a fresh turn starts without the space that joins sentences
        return Continued(text, strategy, call)

    # ------------------------------------------------------------------ records
    def emit(
        self,
        q: Question,
        answered: Answered,
        *,
        intervention: str,
        condition: str,
        sample: int | None,
        reference: ParsedAnswer | None = None,
        calls: list[Call] = (),
        payload: dict[str, Any] | None = None,
        continuation: str | None = None,
        answer_role: str = MODEL,
        **fields: Any,
    ) -> Record:
        """Build the record for one answered condition point and write it at once.

        `calls` lists further model calls this record depends on (a sampled CoT, a mistake, a
        continuation), so that tokens, costs and cache hits add up per intervention and role.
        """
        parsed = answered.parsed
        # an answer never asked (an unusable mistake) is no call; a failed helper call is the
        # helper role's, not the model's
        asked = (
            []
            if parsed.status == NOT_ASKED
            else [Call(answered.response, answered.key, answer_role)]
        )
        every = [*asked, *calls]
        responses = [c.response for c in every]
        costs = [r.cost_usd for r in responses if r.cost_usd is not None]
        fresh_costs = [r.cost_usd for r in responses if r.cost_usd is not None and not r.cached]
        # one entry per call, so totals can count a call shared by several rows (k = n and
        # the reference, the common k = 0 prefix of samples) once
        call_log = [
            {
                "key": c.key,
                "role": c.role,
                "cached": c.response.cached,
                "input_tokens": c.response.usage.input_tokens,
                "output_tokens": c.response.usage.output_tokens,
                "cached_input_tokens": c.response.usage.cached_input_tokens,
                "reasoning_tokens": c.response.usage.reasoning_tokens,
                "cost_usd": c.response.cost_usd,
                # failed attempts retried before this call succeeded (or gave up): the
                # summary counts each distinct call's retries once
                "retries": c.response.retries,
            }
            for c in every
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
            backend_key=self.backend_key,
            overrides=self.overrides,
            method=self.method,
            subtask=q.subtask,
            gold=q.answer,
            n_choices=len(q.choices),
            answer=parsed.letter,
            parse_status=parsed.status,
            correct=parsed.letter == q.answer,
            original_answer=reference.letter if reference is not None else None,
            same_answer=same,
            answer_strategy=self.reader.strategy,
            # "" = a continuing intervention's row where nothing was continued
            continuation_strategy=(
                self.continuation if continuation is None else (continuation or None)
            ),
            cot_prompt=self.cot_prompt,
            segmenter=self.segmenter,
            answer_probs=parsed.probs,
            letter_mass=getattr(parsed, "mass", None),
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
            payload=payload or {},
            **fields,
        )
        self.writer.write(record)
        return record
