"""`dry_run=true`: what a configuration would cost, without calling any model.

The real pipeline runs with the target backend's identity and capabilities, so requests are
built exactly as they would be and the cache can say which are already paid for; misses are
answered by the simulated organism (giving plausible CoT lengths) and counted, never sent and
never stored. Token counts are estimates (about four characters a token); the worst case
assumes every call uses its whole `max_tokens`.
"""

from __future__ import annotations

from typing import Any

from cotfaith.models.base import Model, ModelRequest, ModelResponse, Usage
from cotfaith.models.simulated import Knobs, SimulatedModel
from cotfaith.pricing import Price, estimate_tokens


class DryRunModel(Model):
    def __init__(self, target: Model, price: Price | None):
        self.target = target
        self.price = price
        self.capabilities = target.capabilities
        self.continuation = target.continuation
        self.concurrency = 256
        self.organism = SimulatedModel(Knobs())
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.worst_output_tokens = 0

    @property
    def identity(self) -> dict[str, Any]:
        return self.target.identity

    async def generate(self, request: ModelRequest) -> ModelResponse:
        response = await self.organism.generate(request)
        text = "".join(m.content for m in request.messages) + (request.prefill or "")
        usage = Usage(
            input_tokens=estimate_tokens(text), output_tokens=estimate_tokens(response.text)
        )
        self.calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.worst_output_tokens += request.max_tokens
        response.usage = usage
        return response

    def estimate(self, cached_calls: int) -> dict[str, Any]:
        def cost(output: int) -> float | None:
            if self.price is None:
                return None
            return self.price.cost(Usage(input_tokens=self.input_tokens, output_tokens=output))

        return {
            "calls_to_make": self.calls,
            "calls_already_cached": cached_calls,
            "est_input_tokens": self.input_tokens,
            "est_output_tokens": self.output_tokens,
            "est_cost_usd": cost(self.output_tokens),
            "worst_case_cost_usd": cost(self.worst_output_tokens),
        }
