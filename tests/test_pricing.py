"""Prices (per million tokens), the price table's name matching, the shipped price file and
the run budget."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from cotfaith.budget import Budget, BudgetExceeded
from cotfaith.errors import ConfigError, CotfaithError
from cotfaith.models.base import Message, ModelRequest, Usage
from cotfaith.pricing import Price, PriceTable, estimate_tokens

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRICES = REPO / "conf" / "prices" / "default.yaml"


# --------------------------------------------------------------------------- Price


def test_cost_without_cached_input() -> None:
    price = Price(input=2.5, output=10.0)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert price.cost(usage) == pytest.approx(2.5 + 5.0)


def test_cost_with_cached_input_price() -> None:
    price = Price(input=2.5, output=10.0, cached_input=1.25)
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=400)
    expected = (600 * 2.5 + 400 * 1.25 + 500 * 10.0) / 1e6
    assert price.cost(usage) == pytest.approx(expected)


def test_cached_tokens_default_to_the_input_price() -> None:
    price = Price(input=3.0, output=15.0)
    with_cache = Usage(input_tokens=1000, output_tokens=10, cached_input_tokens=900)
    without = Usage(input_tokens=1000, output_tokens=10)
    assert price.cost(with_cache) == pytest.approx(price.cost(without))


def test_cached_tokens_never_exceed_input_tokens() -> None:
    price = Price(input=1.0, output=0.0, cached_input=0.0)
    # a provider reporting more cached than input tokens does not make the cost negative
    usage = Usage(input_tokens=100, output_tokens=0, cached_input_tokens=500)
    assert price.cost(usage) == 0.0


def test_reasoning_tokens_are_not_billed_twice() -> None:
    price = Price(input=1.0, output=2.0)
    plain = Usage(input_tokens=10, output_tokens=20)
    with_reasoning = Usage(input_tokens=10, output_tokens=20, reasoning_tokens=15)
    assert price.cost(with_reasoning) == price.cost(plain)


def test_zero_usage_costs_nothing() -> None:
    assert Price(input=5.0, output=5.0, cached_input=1.0).cost(Usage()) == 0.0


# --------------------------------------------------------------------------- PriceTable

TABLE = {
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
    "gpt-4.1": {"input": 2.0, "output": 8.0},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0},
}


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest prefix, not gpt-4o
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ],
)
def test_lookup_exact_and_longest_prefix(model: str, entry: str) -> None:
    table = PriceTable(TABLE)
    assert table.lookup(model) == Price(**TABLE[entry])


def test_longest_prefix_does_not_depend_on_table_order() -> None:
    reordered = dict(reversed(list(TABLE.items())))
    got = PriceTable(reordered).lookup("gpt-4o-mini-2024-07-18")
    assert got == Price(input=0.15, output=0.6, cached_input=0.075)


@pytest.mark.parametrize(
    "model",
    # a different model that merely shares a prefix gets no price, not a wrong one
    [
        "unknown-model",
        "gpt-4",
        "gpt",
        "",
        "o-gpt-4o",
        "GPT-4O",
        "gpt-4.1-nano",
        "claude-sonnet-4-5",
        "gpt-4o-audio-preview",
    ],
)
def test_lookup_unknown_is_none(model: str) -> None:
    assert PriceTable(TABLE).lookup(model) is None


@pytest.mark.parametrize("table", [None, {}])
def test_empty_table(table) -> None:
    assert PriceTable(table).lookup("gpt-4o") is None


def test_table_from_omegaconf_node() -> None:
    """The runner passes cfg.prices, a DictConfig; its entries build Prices too."""
    table = PriceTable(OmegaConf.create({"prices": TABLE}).prices)
    assert table.lookup("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6, 0.075)


@pytest.mark.parametrize(
    "entry",
    [
        {"input": 1.0},  # no output price
        {"output": 1.0},
        {"input": 1.0, "output": 2.0, "cache_read": 0.1},  # unknown key
        {},
    ],
)
def test_malformed_entry_is_a_config_error_naming_the_model(entry: dict) -> None:
    with pytest.raises(ConfigError, match=r"prices\.my-model"):
        PriceTable({"gpt-4o": {"input": 1.0, "output": 1.0}, "my-model": entry})


@pytest.mark.parametrize("entry", [3, None, "cheap", [1, 2]], ids=["int", "none", "str", "list"])
def test_non_mapping_entry_is_a_config_error(entry) -> None:
    with pytest.raises(ConfigError, match=r"prices\.my-model"):
        PriceTable({"my-model": entry})


def test_non_numeric_price_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"prices\.my-model"):
        PriceTable({"my-model": {"input": "2.50$", "output": 10}})


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("a" * 400) == 100


# --------------------------------------------------------------------------- shipped prices


def test_default_price_file_parses_and_every_entry_is_a_price() -> None:
    data = yaml.safe_load(DEFAULT_PRICES.read_text())
    assert isinstance(data, dict) and data
    for name, entry in data.items():
        assert isinstance(name, str)
        assert isinstance(entry, dict), name
        price = Price(**entry)
        for value in (price.input, price.output, price.cached_input):
            if value is not None:
                assert isinstance(value, int | float) and not isinstance(value, bool), name
                assert math.isfinite(value) and value >= 0, name
        if price.cached_input is not None:
            assert price.cached_input <= price.input, name
    table = PriceTable(data)
    for name in data:
        assert table.lookup(name) == Price(**data[name])


def test_default_price_file_prefix_matching() -> None:
    data = yaml.safe_load(DEFAULT_PRICES.read_text())
    table = PriceTable(data)
    assert table.lookup("gpt-4o-mini-2024-07-18") == Price(**data["gpt-4o-mini"])
    assert table.lookup("gpt-4o-2024-08-06") == Price(**data["gpt-4o"])
    assert table.lookup("gpt-4.1-mini-2025-04-14") == Price(**data["gpt-4.1-mini"])
    assert table.lookup("claude-3-5-haiku-latest") == Price(**data["claude-3-5-haiku"])


# --------------------------------------------------------------------------- Budget

# one dollar per input token and two per output token: exact float arithmetic below
DOLLAR = Price(input=1_000_000.0, output=2_000_000.0)


def request(content: str = "abcdefgh", max_tokens: int = 3, prefill: str | None = None):
    return ModelRequest(
        messages=(Message("user", content),), prefill=prefill, max_tokens=max_tokens
    )


def test_worst_case_uses_estimated_input_and_max_tokens_output() -> None:
    budget = Budget(None, DOLLAR)
    assert budget.worst_case(request("abcdefgh", max_tokens=3)) == 2 + 3 * 2
    assert budget.worst_case(request("abcdefgh", max_tokens=100)) == 2 + 100 * 2
    # every message and the prefill count as input
    two_turns = ModelRequest(
        messages=(Message("system", "a" * 8), Message("user", "b" * 8)),
        prefill="c" * 8,
        max_tokens=1,
    )
    assert budget.worst_case(two_turns) == 6 + 2


def test_worst_case_without_price_is_zero() -> None:
    assert Budget(1.0, None).worst_case(request()) == 0.0


def reserve(budget: Budget, req: ModelRequest | None = None) -> float:
    """Reserve outside an event loop (nothing else in flight can settle meanwhile)."""
    return asyncio.run(budget.reserve(req or request()))


def test_reserve_until_exceeded_with_nothing_in_flight() -> None:
    budget = Budget(20.0, DOLLAR)
    first = reserve(budget)
    assert first == 8.0 and budget.reserved == 8.0 and budget.in_flight == 1
    budget.settle(first, 8.0)  # the call cost its worst case
    second = reserve(budget)
    budget.settle(second, 8.0)
    assert budget.spent == 16.0 and budget.in_flight == 0
    with pytest.raises(BudgetExceeded) as info:
        reserve(budget)  # 16 + 8 > 20, nothing in flight to wait for
    assert isinstance(info.value, CotfaithError)
    assert "max_usd=20" in str(info.value)
    # a refused reservation leaves the books as they were
    assert budget.reserved == 0.0 and budget.spent == 16.0


def test_reserve_exactly_to_the_limit_is_allowed() -> None:
    budget = Budget(8.0, DOLLAR)
    budget.settle(reserve(budget), 8.0)
    with pytest.raises(BudgetExceeded):
        reserve(budget, request("", max_tokens=0))  # even the smallest call (1 token) is over


def test_a_call_that_does_not_fit_waits_for_calls_in_flight() -> None:
    """Worst cases are pessimistic: once the calls in flight settle cheaply, there is room."""

    async def scenario() -> list[str]:
        budget = Budget(20.0, DOLLAR)
        events: list[str] = []
        a = await budget.reserve(request())
        b = await budget.reserve(request())  # 16 of 20 reserved

        async def third() -> None:
            await budget.reserve(request())  # 16 + 8 > 20: must wait
            events.append("third reserved")

        task = asyncio.create_task(third())
        await asyncio.sleep(0.01)
        events.append("waiting" if not task.done() else "did not wait")
        budget.settle(a, 1.0)  # real cost far below the worst case: 1 + 8 + 8 <= 20
        await asyncio.wait_for(task, 1)
        budget.settle(b, 1.0)
        return events

    assert asyncio.run(scenario()) == ["waiting", "third reserved"]


def test_a_waiting_call_gives_up_when_nothing_is_left_in_flight() -> None:
    async def scenario() -> None:
        budget = Budget(20.0, DOLLAR)
        a = await budget.reserve(request())
        b = await budget.reserve(request())
        task = asyncio.create_task(budget.reserve(request()))
        await asyncio.sleep(0.01)
        budget.settle(a, 8.0)
        budget.settle(b, 8.0)  # 16 spent, nothing in flight, 8 more does not fit
        with pytest.raises(BudgetExceeded):
            await asyncio.wait_for(task, 1)

    asyncio.run(scenario())


def test_settle_without_cost_spends_nothing() -> None:
    budget = Budget(8.0, DOLLAR)
    estimate = reserve(budget)
    budget.settle(estimate, None)
    assert budget.reserved == 0.0 and budget.spent == 0.0
    reserve(budget)  # the whole budget is available again


def test_spent_counts_against_the_budget() -> None:
    budget = Budget(10.0, DOLLAR)
    budget.spent = 9.5
    with pytest.raises(BudgetExceeded):
        reserve(budget)


def test_no_max_usd_never_raises() -> None:
    budget = Budget(None, DOLLAR)
    for _ in range(100):
        reserve(budget, request(max_tokens=10_000))
    budget.spent = 1e12
    reserve(budget, request(max_tokens=10_000))
    assert budget.reserved == 101 * (2 + 20_000)


def test_no_price_reserves_nothing() -> None:
    budget = Budget(0.0, None)
    assert reserve(budget, request(max_tokens=10_000)) == 0.0
    assert budget.reserved == 0.0
