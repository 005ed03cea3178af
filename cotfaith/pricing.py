"""Cost of model calls from a user-editable price table (conf/prices/default.yaml).

Prices are USD per million tokens. A model name matches its entry exactly, or else the longest
entry it starts with ("gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini"), so dated snapshots
need no entries of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models.base import Usage


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    """Price of input tokens served from the provider's prompt cache (default: input)."""

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        fresh = usage.input_tokens - cached
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            fresh * self.input + cached * cached_price + usage.output_tokens * self.output
        ) / 1e6


class PriceTable:
    def __init__(self, table: Mapping[str, Any] | None):
        self._prices: dict[str, Price] = {}
        for name, entry in (table or {}).items():
            problem = (
                f"prices.{name}: expected input, output and optionally cached_input "
                f"(USD per million tokens, numbers >= 0), got {entry!r}"
            )
            try:
                price = Price(**dict(entry))
            except (TypeError, ValueError) as e:
                raise ConfigError(problem) from e
            values = (price.input, price.output, price.cached_input)
            if not all(v is None or (_is_number(v) and v >= 0) for v in values):
                raise ConfigError(problem)
            self._prices[str(name)] = price

    def lookup(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        matches = [k for k in self._prices if model.startswith(k)]
        return self._prices[max(matches, key=len)] if matches else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate (about four characters a token in English)."""
    return max(1, len(text) // 4)
