"""Token buckets for requests and tokens per minute, on a fake clock (no wall-clock timing)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from cotfaith.models import ratelimit
from cotfaith.models.ratelimit import RateLimiter, _Bucket


class FakeTime:
    """A monotonic clock that moves only when told to (or when the limiter sleeps)."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []
        self._real_sleep = asyncio.sleep

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if len(self.sleeps) > 1000:  # a limiter that never lets go fails, not hangs
            raise AssertionError(f"slept {len(self.sleeps)} times, last {delay}")
        self.now += delay
        await self._real_sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    ft = FakeTime()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=ft.monotonic))
    monkeypatch.setattr(ratelimit, "asyncio", SimpleNamespace(sleep=ft.sleep, Lock=asyncio.Lock))
    return ft


# --------------------------------------------------------------------------- _Bucket


def test_bucket_starts_full_and_takes_when_available(clock: FakeTime) -> None:
    bucket = _Bucket(60)  # one per second, a minute's worth of burst
    for _ in range(60):
        assert bucket.wait_for(1) == 0.0
    assert bucket.level == pytest.approx(0.0)


def test_bucket_returns_exact_seconds_until_refilled(clock: FakeTime) -> None:
    bucket = _Bucket(60)
    assert bucket.wait_for(60) == 0.0
    assert bucket.wait_for(1) == pytest.approx(1.0)
    assert bucket.wait_for(3) == pytest.approx(3.0)
    clock.advance(0.25)
    assert bucket.wait_for(1) == pytest.approx(0.75)
    clock.advance(0.75)
    assert bucket.wait_for(1) == 0.0  # refilled exactly enough: taken
    assert bucket.level == pytest.approx(0.0)


def test_bucket_wait_does_not_consume(clock: FakeTime) -> None:
    bucket = _Bucket(120)  # two per second
    assert bucket.wait_for(100) == 0.0
    level = bucket.level
    assert bucket.wait_for(50) == pytest.approx((50 - 20) / 2)
    assert bucket.level == pytest.approx(level)


def test_bucket_rate_is_per_minute(clock: FakeTime) -> None:
    bucket = _Bucket(6000)  # 100 tokens a second
    assert bucket.wait_for(6000) == 0.0
    assert bucket.wait_for(500) == pytest.approx(5.0)
    clock.advance(2.0)
    assert bucket.wait_for(500) == pytest.approx(3.0)


def test_bucket_larger_than_capacity_is_clamped(clock: FakeTime) -> None:
    bucket = _Bucket(600)  # 10 a second
    # a single call larger than a minute's worth still runs, taking the whole bucket
    assert bucket.wait_for(10_000) == 0.0
    assert bucket.level == pytest.approx(0.0)
    # and afterwards it waits for a full bucket, not for 10_000 tokens
    assert bucket.wait_for(10_000) == pytest.approx(60.0)


def test_bucket_refill_is_capped_at_capacity(clock: FakeTime) -> None:
    bucket = _Bucket(60)
    assert bucket.wait_for(60) == 0.0
    clock.advance(10_000)
    assert bucket.wait_for(60) == 0.0
    assert bucket.wait_for(1) == pytest.approx(1.0)  # no credit was banked beyond capacity


# --------------------------------------------------------------------------- RateLimiter


@pytest.mark.parametrize(("rpm", "tpm"), [(None, None), (0, 0), (0, None)])
def test_inactive_limiter_returns_at_once(clock: FakeTime, rpm, tpm) -> None:
    limiter = RateLimiter(rpm=rpm, tpm=tpm)
    assert limiter.active is False

    async def main() -> None:
        for _ in range(1000):
            await limiter.acquire(10**9)

    asyncio.run(main())
    assert clock.sleeps == []


@pytest.mark.parametrize(("rpm", "tpm"), [(10, None), (None, 1000), (10, 1000)])
def test_limiter_active_with_any_limit(clock: FakeTime, rpm, tpm) -> None:
    assert RateLimiter(rpm=rpm, tpm=tpm).active is True


def test_rpm_burst_then_wait(clock: FakeTime) -> None:
    limiter = RateLimiter(rpm=3)  # one request every 20 s after a burst of 3

    async def main() -> list[float]:
        stamps = []
        for _ in range(5):
            await limiter.acquire(1)
            stamps.append(clock.now)
        return stamps

    stamps = asyncio.run(main())
    t0 = 500.0
    assert stamps[:3] == [t0, t0, t0]  # the burst goes through at once
    assert stamps[3] == pytest.approx(t0 + 20.0)  # the 4th has to wait for a refill
    assert stamps[4] == pytest.approx(t0 + 40.0)
    assert clock.sleeps == [pytest.approx(20.0), pytest.approx(20.0)]


def test_rpm_refills_while_idle(clock: FakeTime) -> None:
    limiter = RateLimiter(rpm=2)

    async def main() -> None:
        await limiter.acquire(0)
        await limiter.acquire(0)
        clock.advance(60)  # a full minute idle: a full burst available again
        await limiter.acquire(0)
        await limiter.acquire(0)

    asyncio.run(main())
    assert clock.sleeps == []


def test_tpm_waits_for_enough_tokens(clock: FakeTime) -> None:
    limiter = RateLimiter(tpm=600)  # 10 tokens a second

    async def main() -> None:
        await limiter.acquire(500)
        await limiter.acquire(300)  # 100 left: 200 more take 20 s

    asyncio.run(main())
    assert clock.sleeps == [pytest.approx(20.0)]


def test_tpm_request_larger_than_a_minute_still_runs(clock: FakeTime) -> None:
    limiter = RateLimiter(tpm=600)

    async def main() -> None:
        await limiter.acquire(5000)

    asyncio.run(main())
    assert clock.sleeps == []


def test_both_limits_apply(clock: FakeTime) -> None:
    limiter = RateLimiter(rpm=60, tpm=600)  # 1 request/s and 10 tokens/s

    async def main() -> None:
        await limiter.acquire(600)  # empties the token bucket, not the request bucket
        await limiter.acquire(50)  # requests are fine; tokens need 5 s

    asyncio.run(main())
    assert clock.sleeps == [pytest.approx(5.0)]


def test_concurrent_acquires_are_spaced_out(clock: FakeTime) -> None:
    limiter = RateLimiter(rpm=2)  # burst of 2, then one every 30 s
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire(1)
        stamps.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(main())
    assert sorted(stamps) == [
        pytest.approx(500.0),
        pytest.approx(500.0),
        pytest.approx(530.0),
        pytest.approx(560.0),
    ]
