"""What the OpenAI and Anthropic fakes share: responders, faults, counters, the request flow.

The servers are deliberately lean (stdlib json, no pydantic, no access log) because the same
code runs in a throughput benchmark: 64 requests in flight on a 2-core machine must leave the
client, not the server, as the thing being measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cotfaith.models.base import ModelRequest, ModelResponse, Usage
from cotfaith.models.simulated import Knobs, SimulatedModel

Responder = Callable[[ModelRequest], Awaitable[ModelResponse]]
"""Turns a canonical request into the model's answer; the servers only translate wire formats."""

SAMPLE_HEADER = "x-cotfaith-sample"
"""Request header carrying the sample index (the public APIs have no such field)."""

FAULT_KINDS = ("429_retry_after", "429", "500", "529", "stall", "truncated")
"""Every fault kind; "529" (overloaded) exists only on the Anthropic fake, as in the real APIs."""

ECHO_TEXT = "The single, most likely answer is (A)."


def default_responder(knobs: Knobs | None = None) -> Responder:
    """The project's model organism, so loopback runs reproduce direct simulated runs."""
    return counting(SimulatedModel(knobs or Knobs()).generate)


# ------------------------------------------------------------------ behaviours of real models
# What any real model does and the organism does not know about: continue a count. Backends
# probe prefill with "1, 2, ..., 7," (the only sensible continuation is "8"), so the fakes must
# answer that as a real model would, continued or not.
_COUNT = re.compile(r"(?:^|\s)((?:\d+,\s*)*\d+),\s*$")


def counting(inner: Responder) -> Responder:
    """`inner`, except that a count is carried on: a prefill ending "..., 6, 7," continues with
    " 8, 9, ..."; asked to count without a prefill (a fresh turn) the reply starts at 1."""

    async def respond(request: ModelRequest) -> ModelResponse:
        asked = any(
            m.role == "user" and m.content.lower().startswith("count from")
            for m in request.messages
        )
        m = _COUNT.search(request.prefill or "")
        if m and asked:
            last = int(m.group(1).replace(" ", "").split(",")[-1])
            text = "".join(f" {n}," for n in range(last + 1, last + 4)).rstrip(",")
            first = f" {last + 1}"
        elif asked and not request.prefill:
            text, first = "1, 2, 3, 4, 5", "1"
        else:
            return await inner(request)
        lps = {first: math.log(0.95), " The": math.log(0.03)} if request.top_logprobs else None
        return ModelResponse(text=text, top_logprobs=lps, finish_reason="length", usage=Usage(9, 3))

    return respond


FRESH_TURN_SHARE = 0.9
"""First-token probability a model puts on the opening word of a sentence it is about to write
("The"), leaving the letters the rest: SmolLM2 through llama.cpp put a median 3.5% (prefill
ignored) to 14% (letter-only instruction) on the letters."""


def as_sentence(resp: ModelResponse, share: float = FRESH_TURN_SHARE) -> ModelResponse:
    """The same answer given the way a model starting a fresh turn gives it: a sentence ("The
    single, most likely answer is (B).") whose first token is mostly "The", the letters sharing
    what is left in proportion to the organism's own distribution."""
    text = resp.text.strip()
    if len(text) == 1 and text.isalpha():  # a bare letter: say it as a sentence
        text = f"The single, most likely answer is ({text})."
    first = text.split()[0] if text.split() else "The"
    lps = None
    if resp.top_logprobs:
        lps = {t: lp + math.log(1 - share) for t, lp in resp.top_logprobs.items()}
        lps[first] = math.log(share)
    return ModelResponse(
        text=text, top_logprobs=lps, finish_reason=resp.finish_reason, usage=resp.usage
    )


async def echo_responder(request: ModelRequest) -> ModelResponse:
    """A fixed short answer with no model work, for throughput benchmarks of the client side."""
    text = "A" if request.prefill else ECHO_TEXT
    lps = None
    if request.top_logprobs:
        lps = {"A": math.log(0.85), "B": math.log(0.05), "C": math.log(0.05), "D": math.log(0.05)}
    return ModelResponse(text=text, top_logprobs=lps, finish_reason="stop", usage=Usage(10, 1))


@dataclass(frozen=True)
class Faults:
    """Deterministic fault injection: arrival n gets a fault drawn from an RNG seeded (seed, n).

    Faults are per arrival, not per logical request: a retry is a new arrival and draws again.
    """

    rate: float = 0.0
    kinds: Sequence[str] = ()
    seed: int = 0
    fail_first: int = 0
    """The first N generation requests fail with "500" whatever the rate (for retry tests)."""
    stall_seconds: float = 5.0
    """How long "stall" waits before answering; longer than any client timeout the tests use."""
    retry_after: float = 0.2
    """Seconds advertised by "429_retry_after" (sent as retry-after and retry-after-ms)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Faults.rate must be in [0, 1], got {self.rate}")
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("Faults.rate > 0 needs at least one fault kind")

    def draw(self, n: int) -> str | None:
        """The fault for the n-th generation request (0-based), or None."""
        if n < self.fail_first:
            return "500"
        if self.rate <= 0.0:
            return None
        # a fresh RNG per arrival: the outcome of arrival n does not depend on timing or order
        rng = random.Random(f"{self.seed}:{n}")
        if rng.random() >= self.rate:
            return None
        return self.kinds[rng.randrange(len(self.kinds))]


@dataclass
class Stats:
    """Counters served by GET /_stats and zeroed by POST /_reset."""

    requests: int = 0
    ok: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    completed_keys: Counter[str] = field(default_factory=Counter)
    cap_fields: Counter[str] = field(default_factory=Counter)
    """Which output-cap field each request carried (max_tokens, max_completion_tokens)."""
    system_turns: Counter[str] = field(default_factory=Counter)
    """System turns the requests held (first 80 characters), e.g. a chat template's default."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "faults": dict(self.faults),
            "completed_keys": dict(self.completed_keys),
            "cap_fields": dict(self.cap_fields),
            "system_turns": dict(self.system_turns),
        }

    def reset(self) -> None:
        self.requests = self.ok = 0
        self.faults.clear()
        self.completed_keys.clear()
        self.cap_fields.clear()
        self.system_turns.clear()


@dataclass
class ServerState:
    """Everything a fake server is configured with; mutable so a test can change faults live."""

    key: str
    models: frozenset[str]
    responder: Responder
    latency: float = 0.0
    faults: Faults = field(default_factory=Faults)
    no_logprobs_models: frozenset[str] = frozenset()
    no_prefill_models: frozenset[str] = frozenset()
    ignore_continue_final_message: bool = False
    """llama.cpp: `continue_final_message` is ignored; the prefilled assistant turn is closed
    as history and a new one starts (its reply begins like a fresh answer)."""
    honour_max_completion_tokens: bool = True
    """llama.cpp reads only `max_tokens`; with False, `max_completion_tokens` is ignored."""
    chatty_models: frozenset[str] = frozenset()
    """Models that answer in a sentence even when told to reply with the letter only."""
    stats: Stats = field(default_factory=Stats)


STATE = web.AppKey("state", ServerState)


class ApiError(Exception):
    """An error the API itself would return (4xx); each app renders it in its own JSON shape."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.type, self.message, self.code, self.param = (
            status,
            type_,
            message,
            code,
            param,
        )


def request_key(body: Mapping[str, Any], sample_header: str | None = None) -> str:
    """sha256 of the canonical request: the JSON body with sorted keys.

    The sample header is folded in (as "__x-cotfaith-sample") because two samples of one prompt
    differ only there; without it they would look like one request sent twice.
    """
    canon = dict(body)
    if sample_header is not None:
        canon["__" + SAMPLE_HEADER] = sample_header
    data = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def parse_sample(value: Any, where: str) -> int:
    """A sample index from a header or metadata string; a bad one is the client's error."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400, "invalid_request_error", f"{where}: not an integer: {value!r}"
        ) from None
    if n < 0:
        raise ApiError(400, "invalid_request_error", f"{where}: must be >= 0, got {n}")
    return n


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or the 400 the real APIs give for anything else."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_request_error", "The request body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request_error", "The request body must be a JSON object.")
    return body


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        status=status,
        content_type="application/json",
        headers=headers,
    )


ErrorRenderer = Callable[[ApiError], web.Response]
FaultRenderer = Callable[[str, Faults], web.Response]


async def serve_generation(
    request: web.Request,
    state: ServerState,
    key: str,
    compute: Callable[[], Awaitable[Any]],
    render_error: ErrorRenderer,
    render_fault: FaultRenderer,
) -> web.Response:
    """The flow every generation endpoint shares: count, maybe fault, answer, count success.

    `compute` validates the request and calls the responder; it raises ApiError for 4xx.
    """
    stats = state.stats
    n = stats.requests
    stats.requests += 1
    fault = state.faults.draw(n)
    if fault is not None:
        stats.faults[fault] += 1
    if state.latency:
        await asyncio.sleep(state.latency)
    if fault == "stall":
        await asyncio.sleep(state.faults.stall_seconds)
    elif fault is not None and fault != "truncated":
        return render_fault(fault, state.faults)
    try:
        payload = await compute()
    except ApiError as e:
        return render_error(e)
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    if fault == "truncated":
        # a 200 that claims JSON but stops mid-object, as when a proxy cuts the stream
        return web.Response(body=data[: len(data) // 2], content_type="application/json")
    transport = request.transport
    if transport is None or transport.is_closing():
        # the client gave up (timed out on a stall, or was killed): what we would send is never
        # read, so it must not count as completed, or its retry would look like a duplicate
        return web.Response(status=499)
    stats.ok += 1
    stats.completed_keys[key] += 1
    return web.Response(body=data, content_type="application/json")


async def stats_handler(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats.to_dict())


async def reset_handler(request: web.Request) -> web.Response:
    request.app[STATE].stats.reset()
    return json_response({"ok": True})


def add_control_routes(app: web.Application) -> None:
    """Test-harness endpoints (no auth: they reveal no secret and exist only in the fakes)."""
    app.router.add_get("/_stats", stats_handler)
    app.router.add_post("/_reset", reset_handler)


def known_models(models: Sequence[str], *restricted: Sequence[str]) -> frozenset[str]:
    """Models named in a restriction set are known too, so a test need not list them twice."""
    out = set(models)
    for r in restricted:
        out.update(r)
    return frozenset(out)


def sorted_logprobs(top: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """The n most likely tokens, most likely first (ties broken by token for determinism)."""
    return sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
