"""The one retry layer: exponential backoff with full jitter, honouring Retry-After.

The SDKs' own retries are switched off (max_retries=0) so that retries are not stacked and every
one is counted. Retried: 429, 408, 409, 5xx (529 included), timeouts, connection errors (a
refused connection is named as such, never as a timeout), and bodies that do not parse. Not
retried: other 4xx (bad request, auth, not found), which no amount of waiting fixes. Under
429s the backend's Pacer (pacing.py) pauses every caller for the server's Retry-After and
narrows the window of attempts in flight, so a rate-limited run backs off as a whole instead of
hammering.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cotfaith.models.pacing import Pacer

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

    def __init__(self, message: str, reason: str, attempts: int, history: list[str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts
        self.history = list(history or ())
        """What came back at each attempt (describe_failure), for errors that say what was
        tried."""


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


def _in_chain(exc: BaseException, found: Callable[[BaseException], bool]) -> bool:
    """Whether `exc` or anything in its cause chain (aiohttp's `os_error` too) is `found`."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if found(cur):
            return True
        seen.add(id(cur))
        # aiohttp keeps the OSError on `os_error` as well as in the chain
        nested = getattr(cur, "os_error", None)
        if isinstance(nested, BaseException) and found(nested):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def connection_refused(exc: BaseException) -> bool:
    """Whether `exc` comes from a refused TCP connection (nothing listens on the port).

    The SDKs' aiohttp transport reports a refused connection as a *connect timeout*
    (APITimeoutError caused by ConnectTimeout caused by ConnectionRefusedError), which would
    send a user looking for a slow server instead of a wrong port; the cause chain tells.
    """
    return _in_chain(exc, lambda e: isinstance(e, ConnectionRefusedError))


_DISCONNECTS = ("ServerDisconnectedError", "RemoteProtocolError", "ClientPayloadError")


def disconnected(exc: BaseException) -> bool:
    """Whether the server closed the connection without a (whole) reply: aiohttp's
    ServerDisconnectedError or a reset, which the SDKs also report as a timeout."""
    return _in_chain(
        exc,
        lambda e: isinstance(e, ConnectionResetError) or type(e).__name__ in _DISCONNECTS,
    )


def classify(exc: BaseException) -> tuple[str, float | None] | None:
    """(reason, server-requested wait) for a retryable error, None for a final one.

    Works on both SDKs' exception hierarchies by their shared shape (status_code, response).
    """
    name = type(exc).__name__
    # a body that does not parse comes with a 2xx status: check it before the status codes
    if isinstance(exc, json.JSONDecodeError | BadResponse) or "ResponseValidation" in name:
        return "bad_body", None
    if isinstance(exc, CallTimeout):
        return "timeout", None
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
    if disconnected(exc):
        return "disconnected", None
    if "Timeout" in name:
        return "timeout", None
    if "Connection" in name:
        return "connection", None
    return None


def describe_failure(exc: BaseException) -> str:
    """What came back, in a few words, for a one-line error: "<kind> (<detail>)", the kind the
    same for the same fault (so repeats group), the detail the status's message or the start
    of a body that did not parse."""
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg}, char {exc.pos}: {exc.doc[:60]!r})"
    if isinstance(exc, CallTimeout):
        return str(exc)
    if isinstance(exc, BadResponse):
        return f"a reply not in the API's shape ({' '.join(str(exc).split())[:100]})"
    status = getattr(exc, "status_code", None)
    text = " ".join(str(exc).split())
    if isinstance(status, int):
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message") or message
        if isinstance(body, str) and body.strip():  # a proxy's HTML page: its words
            message = " ".join(re.sub(r"<[^>]*>", " ", body).split()) or None
        return f"HTTP {status} ({(message or text)[:80]})"
    if connection_refused(exc):
        return "connection refused"
    if disconnected(exc):
        return "the server closed the connection"
    return f"{type(exc).__name__} ({text[:100]})" if text else type(exc).__name__


def summarize_history(history: list[str]) -> str:
    """'invalid JSON 4 times (last: ...)', or the last attempts in order when they differ."""
    if not history:
        return "nothing came back"
    if len(history) == 1:
        return history[0]
    head = history[-1].partition(" (")[0]
    if all(h.partition(" (")[0] == head for h in history):
        detail = history[-1][len(head) :].strip()
        return f"{head} {len(history)} times" + (f" (last: {detail[1:-1]})" if detail else "")
    shown = ", then ".join(history[-3:])
    return shown if len(history) <= 3 else f"{len(history)} attempts, the last: {shown}"


class CallTimeout(TimeoutError):
    """No complete reply within model.timeout: the whole call, from sending the request to the
    last byte of the body (a server trickling its body is cut off too, not only a silent one)."""


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    stats: RetryStats,
    pacer: Pacer,
    describe: Callable[[], str],
) -> T:
    """`call()` until it succeeds, retrying what waiting can fix.

    Each attempt takes a place in the backend's window (pacing.py) and gives it back before any
    wait, so a call sleeping off its backoff holds nothing. Waits: a 429 with Retry-After waits
    what the server asked, and so does every other caller (the pause); a 429 without it steps
    aside briefly while the window narrows (exponential backoff only once the window is down
    to one); other faults wait their own backoff (or the server's Retry-After, for this call
    only).
    """
    attempt = 0
    history: list[str] = []
    while True:
        epoch = await pacer.acquire()
        released = False
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised if final
            verdict = classify(exc)
            pacer.release(epoch, rate_limited=verdict is not None and verdict[0] == "429")
            released = True
            history.append(describe_failure(exc))
            if verdict is None:
                raise CallFailed(
                    f"{describe()}: {type(exc).__name__}: {exc}", "error", attempt + 1, history
                ) from exc
            reason, asked = verdict
            if attempt >= policy.retries:
                stats.exhausted += 1
                raise CallFailed(
                    f"{describe()}: gave up after {attempt + 1} attempts "
                    f"(last: {reason}, {type(exc).__name__})",
                    reason,
                    attempt + 1,
                    history,
                ) from exc
            backoff = random.uniform(0, min(policy.maximum, policy.initial * 2**attempt))
            if reason == "429" and asked is not None:
                # the server said when: everybody waits exactly that (Retry-After: 0 = now)
                pacer.hold(asked)
                wait = asked
            elif reason == "429":
                # no word from the server: the window (narrowed above when refusals mount)
                # paces the run, so this call only steps aside briefly; once the window is down
                # to one call, time is all that is left to give, and the backoff grows
                wait = backoff if pacer.limit <= 1 else random.uniform(0, policy.initial)
            else:
                wait = max(backoff, asked or 0.0)
            stats.retries += 1
            stats.by_reason[reason] += 1
            attempt += 1
            await asyncio.sleep(wait)
        else:
            return result
        finally:
            if not released:  # success, cancellation, or anything else: the place goes back
                pacer.release(epoch)
