"""The one retry layer: exponential backoff with full jitter, honouring Retry-After.

The SDKs' own retries are switched off (max_retries=0) so that retries are not stacked and every
one is counted. Retried: 429, 408, 409, 5xx (529 included), timeouts, connection errors (a
refused connection is named as such, never as a timeout), and bodies that do not parse. Not
retried: other 4xx (bad request, auth, not found), which no amount of waiting fixes. Under
429s a shared gate pauses every caller until the server's Retry-After has passed, so a
rate-limited run backs off as a whole instead of hammering.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 8
    initial: float = 0.5
    """First backoff ceiling in seconds; doubles each attempt (full jitter below it)."""
    maximum: float = 60.0


@dataclass
class RetryStats:
    retries: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    exhausted: int = 0


class CallFailed(Exception):
    """A call that still failed after every retry (or failed in a way no retry fixes)."""

    def __init__(self, message: str, reason: str, attempts: int):
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts


MAX_ASKED_WAIT = 600.0
"""A server asking for longer than this (or for a non-finite wait) is not taken literally."""


class BadResponse(ValueError):
    """A 2xx reply whose body is not what the API promises (a proxy's error page, a cut body).
    Retried, unlike other ValueErrors, which are our own bugs and would fail again."""


def _seconds(value: Any, scale: float = 1.0) -> float | None:
    try:
        seconds = float(value) / scale
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(MAX_ASKED_WAIT, max(0.0, seconds))


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, retry-after seconds or date)."""
    if headers is None:
        return None
    try:
        ms, value = headers.get("retry-after-ms"), headers.get("retry-after")
    except (AttributeError, TypeError):
        return None
    if ms is not None and (seconds := _seconds(ms, 1000.0)) is not None:
        return seconds
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return _seconds(when.timestamp() - time.time())


def connection_refused(exc: BaseException) -> bool:
    """Whether `exc` comes from a refused TCP connection (nothing listens on the port).

    The SDKs' aiohttp transport reports a refused connection as a *connect timeout*
    (APITimeoutError caused by ConnectTimeout caused by ConnectionRefusedError), which would
    send a user looking for a slow server instead of a wrong port; the cause chain tells.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionRefusedError):
            return True
        seen.add(id(cur))
        # aiohttp keeps the OSError on `os_error` as well as in the chain
        nested = getattr(cur, "os_error", None)
        if isinstance(nested, ConnectionRefusedError):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def classify(exc: BaseException) -> tuple[str, float | None] | None:
    """(reason, server-requested wait) for a retryable error, None for a final one.

    Works on both SDKs' exception hierarchies by their shared shape (status_code, response).
    """
    name = type(exc).__name__
    # a body that does not parse comes with a 2xx status: check it before the status codes
    if isinstance(exc, json.JSONDecodeError | BadResponse) or "ResponseValidation" in name:
        return "bad_body", None
    if "SpendLimit" in name:
        return None  # a 429 that waiting does not fix
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if status == 429:
            return "429", retry_after(headers)
        if status in (408, 409) or status >= 500:
            return f"{status}", retry_after(headers)
        return None
    if connection_refused(exc):
        # retried (a server being restarted refuses for a moment), but named for what it is
        return "connection_refused", None
    if "Timeout" in name:
        return "timeout", None
    if "Connection" in name:
        return "connection", None
    return None


class Gate:
    """A shared pause: when the server says 'wait', everybody waits."""

    def __init__(self) -> None:
        self.until = 0.0

    def hold(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)

    async def wait(self) -> None:
        delay = self.until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    stats: RetryStats,
    gate: Gate,
    describe: Callable[[], str],
) -> T:
    attempt = 0
    while True:
        await gate.wait()
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised if final
            verdict = classify(exc)
            if verdict is None:
                raise CallFailed(
                    f"{describe()}: {type(exc).__name__}: {exc}", "error", attempt + 1
                ) from exc
            reason, asked = verdict
            if attempt >= policy.retries:
                stats.exhausted += 1
                raise CallFailed(
                    f"{describe()}: gave up after {attempt + 1} attempts "
                    f"(last: {reason}, {type(exc).__name__})",
                    reason,
                    attempt + 1,
                ) from exc
            backoff = random.uniform(0, min(policy.maximum, policy.initial * 2**attempt))
            wait = max(backoff, asked or 0.0)
            if reason == "429":
                # sustained rate limiting is the server's state, not this call's: everyone
                # pauses (for the server's Retry-After when it gives one)
                gate.hold(wait)
            stats.retries += 1
            stats.by_reason[reason] += 1
            attempt += 1
            await asyncio.sleep(wait)
