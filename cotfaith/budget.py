"""`budget.max_usd`: stop a run before a call could take spending past the budget.

Each call about to reach the provider first reserves its worst case (estimated input tokens
plus `max_tokens` of output); the reservation is settled with the real usage when it returns.
A call that does not fit waits while other calls are in flight (their real cost is usually far
below the worst case); only when nothing is in flight and it still does not fit does the run
stop, so no call that was sent is ever cancelled and lost, and every finished record is kept.
"""

from __future__ import annotations

import asyncio

from cotfaith.errors import CotfaithError
from cotfaith.models.base import ModelRequest, Usage
from cotfaith.pricing import Price, estimate_tokens


class BudgetExceeded(CotfaithError):
    pass


class Budget:
    def __init__(self, max_usd: float | None, price: Price | None):
        self.max_usd = max_usd
        self.price = price
        self.spent = 0.0
        self.reserved = 0.0
        self.in_flight = 0
        self._changed = asyncio.Event()

    def worst_case(self, request: ModelRequest, price: Price | None = None) -> float:
        price = price or self.price
        if price is None:
            return 0.0
        text = "".join(m.content for m in request.messages) + (request.prefill or "")
        usage = Usage(input_tokens=estimate_tokens(text), output_tokens=request.max_tokens)
        return price.cost(usage)

    def _fits(self, estimate: float) -> bool:
        return self.max_usd is None or self.spent + self.reserved + estimate <= self.max_usd

    async def reserve(self, request: ModelRequest, price: Price | None = None) -> float:
        """Reserve the worst case of `request` at `price` (the calling role's; default the
        budget's own). One budget is shared by every role of a run: `max_usd` is the total."""
        estimate = self.worst_case(request, price)
        while not self._fits(estimate) and self.in_flight:
            self._changed.clear()
            await self._changed.wait()
        if not self._fits(estimate):
            raise BudgetExceeded(
                f"budget.max_usd={self.max_usd:g} reached: ${self.spent:.4f} spent, "
                f"${self.reserved:.4f} in flight, next call could cost up to ${estimate:.4f}. "
                "Every finished record is kept; rerun with a larger budget to continue "
                "(calls already made are served from the cache for free)."
            )
        self.reserved += estimate
        self.in_flight += 1
        return estimate

    def settle(self, estimate: float, cost: float | None) -> None:
        self.reserved -= estimate
        self.spent += cost or 0.0
        self.in_flight -= 1
        self._changed.set()  # wake the calls waiting for room
