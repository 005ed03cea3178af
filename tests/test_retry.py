"""The retry layer: Retry-After parsing, error classification on the real SDK exception types,
and `with_retries` (backoff, exhaustion, final errors, the shared 429 pause and window,
cancellation).

Time is faked wherever the logic allows (a clock and a sleep that only record), so nothing here
depends on how fast the machine is; the one real-time test uses sleeps of tens of milliseconds
and only asserts lower bounds that a broken pause would miss by ~50 ms.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections import Counter
from types import SimpleNamespace

import anthropic
import httpx2
import openai
import pytest

from cotfaith.models import pacing, retry
from cotfaith.models.base import Message
from cotfaith.models.chat_template import render
from cotfaith.models.pacing import Pacer
from cotfaith.models.retry import (
    CallFailed,
    RetryPolicy,
    RetryStats,
    classify,
    retry_after,
    with_retries,
)

URL = "https://api.example.invalid/v1/chat/completions"


def _request() -> httpx2.Request:
    return httpx2.Request("POST", URL)


def _response(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, request=_request())


def status_error(cls: type[Exception], status: int, **headers: str) -> Exception:
    """A real SDK status exception, as the SDK itself builds them from a response."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return cls(f"status {status}", response=_response(status, hdrs), body=None)


# --------------------------------------------------------------------------- retry_after


FIXED_NOW = 1_700_000_000.0  # a whole second, so HTTP-dates (1 s resolution) are exact


@pytest.fixture
def frozen_wallclock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        retry, "time", SimpleNamespace(time=lambda: FIXED_NOW, monotonic=time.monotonic)
    )


def test_retry_after_none_and_empty() -> None:
    assert retry_after(None) is None
    assert retry_after({}) is None
    assert retry_after(httpx2.Headers()) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "0"}, 0.0),
        ({"retry-after-ms": "-20"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "10"}, 0.25),  # ms takes precedence
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
    ],
)
def test_retry_after_numbers(headers: dict[str, str], expected: float) -> None:
    assert retry_after(headers) == pytest.approx(expected)


def test_retry_after_reads_real_response_headers_case_insensitively() -> None:
    resp = _response(429, {"Retry-After": "3", "X-Other": "1"})
    assert retry_after(resp.headers) == 3.0
    resp = _response(429, {"Retry-After-Ms": "40"})
    assert retry_after(resp.headers) == pytest.approx(0.04)


def test_retry_after_http_date_in_future(frozen_wallclock: None) -> None:
    value = email.utils.formatdate(FIXED_NOW + 30, usegmt=True)
    assert retry_after({"retry-after": value}) == pytest.approx(30.0)


def test_retry_after_http_date_in_past_is_zero(frozen_wallclock: None) -> None:
    value = email.utils.formatdate(FIXED_NOW - 3600, usegmt=True)
    assert retry_after({"retry-after": value}) == 0.0


def test_retry_after_http_date_real_clock() -> None:
    value = email.utils.formatdate(time.time() + 120, usegmt=True)
    got = retry_after({"retry-after": value})
    assert got is not None
    assert 100 < got <= 121  # the date only has one-second resolution


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "12abc"},
        {"retry-after": "Mon, 99 Foo 2024 99:99:99 GMT"},
        {"retry-after-ms": "abc"},
    ],
)
def test_retry_after_garbage_is_none(headers: dict[str, str]) -> None:
    assert retry_after(headers) is None


@pytest.mark.parametrize("value", ["inf", "Infinity"])
def test_retry_after_non_finite_is_rejected(value: str) -> None:
    got = retry_after({"retry-after": value})
    assert got is None or math.isfinite(got)


def test_retry_after_garbage_ms_falls_back_to_seconds() -> None:
    assert retry_after({"retry-after-ms": "abc", "retry-after": "2"}) == 2.0


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # openai
        (status_error(openai.RateLimitError, 429), ("429", None)),
        (status_error(openai.RateLimitError, 429, retry_after="2"), ("429", 2.0)),
        (status_error(openai.RateLimitError, 429, retry_after_ms="1500"), ("429", 1.5)),
        (status_error(openai.InternalServerError, 500), ("500", None)),
        (status_error(openai.InternalServerError, 502), ("502", None)),
        (status_error(openai.InternalServerError, 503, retry_after="7"), ("503", 7.0)),
        (status_error(openai.ConflictError, 409), ("409", None)),
        (status_error(openai.APIStatusError, 408), ("408", None)),
        (openai.APITimeoutError(request=_request()), ("timeout", None)),
        (openai.APIConnectionError(request=_request()), ("connection", None)),
        # anthropic
        (status_error(anthropic.RateLimitError, 429, retry_after_ms="40"), ("429", 0.04)),
        (status_error(anthropic.OverloadedError, 529), ("529", None)),
        (status_error(anthropic.InternalServerError, 500), ("500", None)),
        (status_error(anthropic.ServiceUnavailableError, 503), ("503", None)),
        # a status error whose class name says Timeout is still classified by its status
        (status_error(anthropic.GatewayTimeoutError, 504), ("504", None)),
        (status_error(anthropic.RequestTimeoutError, 408), ("408", None)),
        (anthropic.APITimeoutError(request=_request()), ("timeout", None)),
        (anthropic.APIConnectionError(request=_request()), ("connection", None)),
        # bodies that do not parse
        (json.JSONDecodeError("Expecting value", "<html>", 0), ("bad_body", None)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_classify_retryable(exc: Exception, expected: tuple[str, float | None]) -> None:
    got = classify(exc)
    assert got is not None
    assert got[0] == expected[0]
    if expected[1] is None:
        assert got[1] is None
    else:
        assert got[1] == pytest.approx(expected[1])


@pytest.mark.parametrize(
    "exc",
    [
        status_error(openai.BadRequestError, 400),
        status_error(openai.AuthenticationError, 401),
        status_error(openai.PermissionDeniedError, 403),
        status_error(openai.NotFoundError, 404),
        status_error(openai.UnprocessableEntityError, 422),
        # a 4xx with a retry-after header is still final
        status_error(openai.BadRequestError, 400, retry_after="1"),
        status_error(anthropic.BadRequestError, 400),
        status_error(anthropic.AuthenticationError, 401),
        status_error(anthropic.PermissionDeniedError, 403),
        status_error(anthropic.NotFoundError, 404),
        KeyError("choices"),
        RuntimeError("boom"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_classify_final(exc: Exception) -> None:
    assert classify(exc) is None


@pytest.mark.parametrize("sdk", [openai, anthropic], ids=["openai", "anthropic"])
def test_classify_sdk_response_validation_error_is_bad_body(sdk: object) -> None:
    exc = sdk.APIResponseValidationError(_response(200), body="<html>")  # type: ignore[attr-defined]
    assert classify(exc) == ("bad_body", None)


def _refused_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sdk", [openai, anthropic], ids=["openai", "anthropic"])
def test_a_refused_connection_is_named_so_not_a_timeout(sdk: object) -> None:
    # the SDKs' aiohttp transport raises APITimeoutError for a refused connection; a user must
    # be told "connection refused" (wrong port, server down), not sent to look for a slow one
    port = _refused_port()

    async def call() -> BaseException:
        cls = sdk.AsyncOpenAI if sdk is openai else sdk.AsyncAnthropic  # type: ignore[attr-defined]
        client = cls(
            api_key="k",
            base_url=f"http://127.0.0.1:{port}",
            max_retries=0,
            timeout=5,
            http_client=sdk.DefaultAioHttpClient(),  # type: ignore[attr-defined]
        )
        try:
            await client.models.list()
        except Exception as e:  # noqa: BLE001 - the exception is what is tested
            return e
        finally:
            await client.close()
        raise AssertionError("a refused connection raised nothing")

    exc = asyncio.run(call())
    assert retry.connection_refused(exc)
    assert classify(exc) == ("connection_refused", None)
    assert not retry.connection_refused(openai.APITimeoutError(request=_request()))


# --------------------------------------------------------------------------- with_retries


class FakeTime:
    """A clock that only moves when the code under test sleeps; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._real_sleep = asyncio.sleep

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if len(self.sleeps) > 1000:  # code that never lets go fails, not hangs
            raise AssertionError(f"slept {len(self.sleeps)} times, last {delay}")
        self.now += max(0.0, delay)
        await self._real_sleep(0)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    ft = FakeTime()
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=ft.monotonic, time=time.time))
    monkeypatch.setattr(
        retry, "asyncio", SimpleNamespace(sleep=ft.sleep, CancelledError=asyncio.CancelledError)
    )
    # the pacer shares the clock: its pauses are waited out by the same recorded sleeps
    monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=ft.monotonic))
    monkeypatch.setattr(
        pacing,
        "asyncio",
        SimpleNamespace(
            sleep=ft.sleep,
            CancelledError=asyncio.CancelledError,
            get_running_loop=asyncio.get_running_loop,
        ),
    )
    return ft


@pytest.fixture
def max_jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make the full-jitter draw deterministic (the ceiling) and record its bounds."""
    calls: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        calls.append((a, b))
        return b

    monkeypatch.setattr(retry, "random", SimpleNamespace(uniform=uniform))
    return calls


class Script:
    """An async call that raises the scripted exceptions in order, then returns `result`."""

    def __init__(self, *errors: BaseException, result: object = "ok", clock=None) -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0
        self.times: list[float] = []
        self.clock = clock or time.monotonic

    async def __call__(self) -> object:
        self.calls += 1
        self.times.append(self.clock())
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def run(call, policy: RetryPolicy, stats: RetryStats | None = None, pacer: Pacer | None = None):
    return asyncio.run(
        with_retries(call, policy, stats or RetryStats(), pacer or Pacer(), lambda: "m (q1)")
    )


def test_success_first_time(fake_time: FakeTime) -> None:
    stats = RetryStats()
    call = Script(result=42)
    assert run(call, RetryPolicy(), stats) == 42
    assert call.calls == 1
    assert stats.retries == 0 and stats.exhausted == 0 and not stats.by_reason
    assert fake_time.sleeps == []


def test_succeeds_after_k_transient_failures(fake_time: FakeTime) -> None:
    req = _request()
    call = Script(
        status_error(openai.InternalServerError, 503),
        openai.APITimeoutError(request=req),
        anthropic.APIConnectionError(request=req),
        status_error(anthropic.OverloadedError, 529),
        result="done",
    )
    stats = RetryStats()
    assert run(call, RetryPolicy(retries=8, initial=0.01), stats) == "done"
    assert call.calls == 5
    assert stats.retries == 4
    assert stats.by_reason == Counter({"503": 1, "timeout": 1, "connection": 1, "529": 1})
    assert stats.exhausted == 0
    assert len(fake_time.sleeps) == 4


def test_backoff_doubles_with_full_jitter_and_is_capped(
    fake_time: FakeTime, max_jitter: list[tuple[float, float]]
) -> None:
    errors = [status_error(openai.InternalServerError, 500) for _ in range(5)]
    call = Script(*errors)
    assert run(call, RetryPolicy(retries=5, initial=1.0, maximum=5.0)) == "ok"
    # jitter is drawn from [0, ceiling] with the ceiling doubling up to `maximum`
    assert max_jitter == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_stats_accumulate_across_calls(fake_time: FakeTime) -> None:
    stats = RetryStats()
    run(Script(status_error(openai.RateLimitError, 429)), RetryPolicy(initial=0.01), stats)
    run(Script(status_error(openai.RateLimitError, 429)), RetryPolicy(initial=0.01), stats)
    assert stats.retries == 2
    assert stats.by_reason == Counter({"429": 2})


def test_exhausted_after_retries_plus_one_attempts(fake_time: FakeTime) -> None:
    errors = [status_error(openai.InternalServerError, 500) for _ in range(10)]
    call = Script(*errors)
    stats = RetryStats()
    with pytest.raises(CallFailed) as info:
        run(call, RetryPolicy(retries=2, initial=0.01), stats)
    err = info.value
    assert err.attempts == 3
    assert err.reason == "500"
    assert call.calls == 3
    assert stats.exhausted == 1
    assert stats.retries == 2
    assert stats.by_reason == Counter({"500": 2})
    assert "m (q1)" in str(err) and "3 attempts" in str(err)
    assert isinstance(err.__cause__, openai.InternalServerError)
    assert len(fake_time.sleeps) == 2  # no pointless sleep after the last attempt


def test_zero_retries_gives_up_after_one_attempt(fake_time: FakeTime) -> None:
    stats = RetryStats()
    call = Script(openai.APITimeoutError(request=_request()))
    with pytest.raises(CallFailed) as info:
        run(call, RetryPolicy(retries=0), stats)
    assert (info.value.attempts, info.value.reason) == (1, "timeout")
    assert call.calls == 1 and stats.exhausted == 1 and stats.retries == 0


@pytest.mark.parametrize(
    "exc",
    [
        status_error(openai.BadRequestError, 400),
        status_error(openai.AuthenticationError, 401),
        status_error(openai.NotFoundError, 404),
        status_error(anthropic.BadRequestError, 400),
        KeyError("choices"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_non_retryable_fails_immediately(fake_time: FakeTime, exc: Exception) -> None:
    stats = RetryStats()
    call = Script(exc)
    with pytest.raises(CallFailed) as info:
        run(call, RetryPolicy(retries=5), stats)
    assert info.value.attempts == 1
    assert info.value.reason == "error"
    assert info.value.__cause__ is exc
    assert type(exc).__name__ in str(info.value) and "m (q1)" in str(info.value)
    assert call.calls == 1
    assert stats.retries == 0 and stats.exhausted == 0
    assert fake_time.sleeps == []


def test_final_error_after_transient_ones_counts_attempts(fake_time: FakeTime) -> None:
    stats = RetryStats()
    call = Script(
        status_error(openai.InternalServerError, 503),
        status_error(openai.AuthenticationError, 401),
    )
    with pytest.raises(CallFailed) as info:
        run(call, RetryPolicy(retries=5, initial=0.01), stats)
    assert (info.value.attempts, info.value.reason) == (2, "error")
    assert stats.retries == 1 and stats.exhausted == 0


def test_429_retry_after_pauses_everyone_for_exactly_that(fake_time: FakeTime) -> None:
    pacer = Pacer(16)
    call = Script(
        status_error(openai.RateLimitError, 429, retry_after="5"), clock=fake_time.monotonic
    )
    t0 = fake_time.now
    assert run(call, RetryPolicy(initial=30.0), pacer=pacer) == "ok"
    # the server's wait, not the (long) backoff, and every caller is paused for it
    assert pacer.until == pytest.approx(t0 + 5.0)
    assert fake_time.sleeps[0] == pytest.approx(5.0)
    assert call.times[1] >= pacer.until
    assert pacer.cuts == 0 and pacer.in_flight == 0  # one refusal in 16 is no overload


def test_429_retry_after_zero_is_retried_at_once(fake_time: FakeTime) -> None:
    """A server saying 'Retry-After: 0' is asking for the call now: waiting each caller's own
    exponential backoff instead made a 429-only run 2.6x slower than a 500-only one."""
    call = Script(*[status_error(openai.RateLimitError, 429, retry_after="0")] * 4)
    assert run(call, RetryPolicy(initial=8.0)) == "ok"
    assert sum(fake_time.sleeps) == 0.0 and call.calls == 5


def test_429_without_retry_after_steps_aside_briefly_while_the_window_can_narrow(
    fake_time: FakeTime, max_jitter: list[tuple[float, float]]
) -> None:
    pacer = Pacer(16)
    t0 = fake_time.now
    call = Script(*[status_error(anthropic.RateLimitError, 429)] * 4)
    run(call, RetryPolicy(initial=0.25), pacer=pacer)
    assert pacer.until < t0  # nobody else paused
    # no exponential growth: the window does the pacing
    assert fake_time.sleeps == [pytest.approx(0.25)] * 4


def test_429_without_retry_after_backs_off_once_the_window_is_one(
    fake_time: FakeTime, max_jitter: list[tuple[float, float]]
) -> None:
    call = Script(*[status_error(anthropic.RateLimitError, 429)] * 3)
    run(call, RetryPolicy(initial=0.25), pacer=Pacer(1))
    assert fake_time.sleeps == [pytest.approx(0.25), pytest.approx(0.5), pytest.approx(1.0)]


def test_5xx_retry_after_is_honoured_without_pausing_everyone(fake_time: FakeTime) -> None:
    pacer = Pacer(4)
    call = Script(status_error(openai.InternalServerError, 503, retry_after="4"))
    run(call, RetryPolicy(initial=0.001), pacer=pacer)
    assert fake_time.sleeps == [pytest.approx(4.0)]
    assert pacer.until == 0.0 and pacer.window == 4 and pacer.cuts == 0


def test_pause_sleeps_for_the_remaining_time(fake_time: FakeTime) -> None:
    pacer = Pacer(2)
    pacer.hold(3.0)
    pacer.hold(1.0)  # a shorter hold never shortens the pause
    assert pacer.until == pytest.approx(fake_time.now + 3.0)
    epoch = asyncio.run(pacer.acquire())
    assert fake_time.sleeps == [pytest.approx(3.0)]
    pacer.release(epoch)
    asyncio.run(pacer.acquire())  # already over: no further sleep
    assert len(fake_time.sleeps) == 1


def test_one_overload_halves_the_window_once() -> None:
    """Sixteen attempts in flight all come back 429: one overload, one cut (16 -> 8), not one
    per refusal; refusals from attempts sent before the cut do not count after it."""
    pacer = Pacer(16)

    async def main() -> None:
        epochs = [await pacer.acquire() for _ in range(16)]
        for e in epochs:
            pacer.release(e, rate_limited=True)
        assert (pacer.limit, pacer.cuts) == (8, 1)
        # after the cut: half of the new window refused again cuts again
        fresh = [await pacer.acquire() for _ in range(4)]
        for e in fresh:
            pacer.release(e, rate_limited=True)
        assert (pacer.limit, pacer.cuts, pacer.lowest) == (4, 2, 4)
        for _ in range(4 + 5 + 6 + 7):  # one window's worth of successes per place
            pacer.release(await pacer.acquire())
        assert pacer.limit == 8

    asyncio.run(main())


def test_a_429_now_and_then_is_noise_not_overload() -> None:
    """One refusal in four, spread through the run, never halves the window: 429s at random
    (not the server at its limit) must not slow a run below what 500s would."""
    pacer = Pacer(16)

    async def main() -> None:
        for i in range(400):
            pacer.release(await pacer.acquire(), rate_limited=i % 4 == 0)

    asyncio.run(main())
    assert pacer.cuts == 0 and pacer.limit == 16


def test_a_cut_never_goes_below_what_the_server_is_working_on() -> None:
    pacer = Pacer(6)

    async def main() -> None:
        held = [await pacer.acquire() for _ in range(5)]  # five being served
        refused = await pacer.acquire()
        pacer.release(refused, rate_limited=True)  # 1 of the last... not yet half of 6
        for _ in range(2):
            pacer.release(await pacer.acquire(), rate_limited=True)
        # half refused: cut, but to the five still in flight, not to three
        assert (pacer.cuts, pacer.limit) == (1, 5)
        for e in held:
            pacer.release(e)

    asyncio.run(main())


def test_window_caps_attempts_in_flight_and_settles_under_a_server_limit() -> None:
    """Real clock: 48 calls at concurrency 16 against a 'server' that takes 4 at a time and
    answers 429 (Retry-After: 0) beyond that. The window must come down to the server's
    capacity (never below 1), the number in flight never exceed the window, and every call
    succeed; with each caller's own backoff this took many rounds of sleeping."""
    capacity = 4
    pacer = Pacer(16)
    state = {"now": 0, "peak_over_window": 0, "rejected": 0}

    async def server() -> str:
        state["peak_over_window"] = max(state["peak_over_window"], pacer.in_flight - pacer.limit)
        if state["now"] >= capacity:
            state["rejected"] += 1
            raise status_error(openai.RateLimitError, 429, retry_after="0")
        state["now"] += 1
        try:
            await asyncio.sleep(0.002)
        finally:
            state["now"] -= 1
        return "ok"

    async def main() -> list[str]:
        calls = [
            with_retries(server, RetryPolicy(retries=50), RetryStats(), pacer, str)
            for _ in range(48)
        ]
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main()) == ["ok"] * 48
    assert 1 <= pacer.lowest <= capacity
    # attempts start only inside the window; a cut may leave more in flight than the new
    # window for a moment (they were sent before it), never more than before the cut
    assert state["peak_over_window"] <= 16 - pacer.lowest
    assert pacer.in_flight == 0
    assert state["rejected"] < 48  # the window stopped the flood, it did not retry all


def test_server_wait_real_time_shared_pause() -> None:
    """Real clock, tiny sleeps: after a 429 asking for 50 ms, neither the failing caller nor
    another caller sharing the pacer calls again before the pause ends."""
    asked = 0.05
    pacer = Pacer(4)
    a_failed = asyncio.Event()
    times: dict[str, list[float]] = {"a": [], "b": []}

    async def call_a() -> str:
        times["a"].append(time.monotonic())
        if len(times["a"]) == 1:
            a_failed.set()
            raise status_error(openai.RateLimitError, 429, retry_after=str(asked))
        return "a"

    async def call_b() -> str:
        times["b"].append(time.monotonic())
        return "b"

    async def main() -> tuple[float, float, list[str]]:
        policy = RetryPolicy(initial=0.001)
        before = time.monotonic()
        task_a = asyncio.create_task(with_retries(call_a, policy, RetryStats(), pacer, str))
        await a_failed.wait()
        held = pacer.until
        task_b = asyncio.create_task(with_retries(call_b, policy, RetryStats(), pacer, str))
        return before, held, list(await asyncio.gather(task_a, task_b))

    before, held, results = asyncio.run(main())
    assert results == ["a", "b"]
    assert held >= before + asked  # the pause was pushed forward by the server's wait
    slack = 2e-3  # the event loop may wake a timer up to its clock resolution early
    assert times["a"][1] >= held - slack
    assert times["b"][0] >= held - slack


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    pacer = Pacer(1)

    async def main() -> None:
        first = await pacer.acquire()
        waiting = asyncio.create_task(pacer.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        pacer.release(first)
        assert pacer.in_flight == 0
        second = await asyncio.wait_for(pacer.acquire(), 1.0)  # nobody holds the place
        pacer.release(second)

    asyncio.run(main())


def test_failed_call_says_what_came_back_each_time(fake_time: FakeTime) -> None:
    bad = json.JSONDecodeError("Expecting value", "<html>502 Bad Gateway</html>", 0)
    with pytest.raises(CallFailed) as info:
        run(Script(*[bad] * 4), RetryPolicy(retries=3, initial=0.001))
    assert len(info.value.history) == 4
    said = retry.summarize_history(info.value.history)
    assert said.startswith("invalid JSON 4 times (last: Expecting value, char 0: ")
    assert "<html>502 Bad Gateway" in said
    mixed = [
        retry.describe_failure(status_error(openai.InternalServerError, 500)),
        retry.describe_failure(retry.CallTimeout("no complete reply within 2 s")),
    ]
    assert retry.summarize_history(mixed) == (
        "HTTP 500 (status 500), then no complete reply within 2 s"
    )


def test_cancelled_error_from_call_propagates_unretried(fake_time: FakeTime) -> None:
    stats = RetryStats()
    call = Script(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        run(call, RetryPolicy(), stats)
    assert call.calls == 1
    assert stats.retries == 0 and stats.exhausted == 0


def test_cancel_during_backoff_propagates() -> None:
    call = Script(*[status_error(openai.InternalServerError, 503, retry_after="30")] * 3)

    async def main() -> None:
        task = asyncio.create_task(
            with_retries(call, RetryPolicy(), RetryStats(), Pacer(), lambda: "x")
        )
        for _ in range(100):
            await asyncio.sleep(0)
            if call.calls:
                break
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert call.calls == 1


def test_deterministic_local_value_error_is_not_retried(fake_time: FakeTime) -> None:
    async def call() -> str:
        return render((Message("user", "hi"),), None, template="llama3")

    stats = RetryStats()
    with pytest.raises(CallFailed) as info:
        run(call, RetryPolicy(retries=3, initial=0.01), stats)
    assert info.value.attempts == 1
    assert stats.retries == 0
