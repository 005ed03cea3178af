"""Cost of model calls from a user-editable price table (conf/prices/default.yaml).

Prices are USD per million tokens. A model name matches its entry exactly, or the entry it is a
dated snapshot or alias of ("gpt-4o-mini-2024-07-18" and "claude-3-5-haiku-latest" are priced as
"gpt-4o-mini" and "claude-3-5-haiku"), so snapshots need no entries of their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models.base import Usage

# what may follow a priced name: a date (-2024-07-18, -20241022, @20241022) or -latest
_SNAPSHOT = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8}|latest)")


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
        """The exact entry, or the entry of which `model` is a dated snapshot or alias
        ("gpt-4o-mini-2024-07-18", "claude-3-5-haiku-latest"). A different model that merely
        shares a prefix ("gpt-4.1-nano" vs "gpt-4.1") gets no price rather than a wrong one."""
        if model in self._prices:
            return self._prices[model]
        for name in sorted(self._prices, key=len, reverse=True):
            if model.startswith(name) and _SNAPSHOT.fullmatch(model[len(name) :]):
                return self._prices[name]
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate (about four characters a token in English)."""
    return max(1, len(text) // 4)
