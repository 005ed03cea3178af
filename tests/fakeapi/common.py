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
import time
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

FAULT_KINDS = (
    "429_retry_after",
    "429",
    "500",
    "529",
    "stall",
    "truncated",
    # what real servers, proxies and load balancers also send
    "429_retry_after_0",
    "html_502",
    "html_503",
    "html_200",
    "error_200",
    "empty",
    "missing_fields",
    "trickle",
    "reset",
    "disconnect",
    "400",
    "401",
)
"""Every fault kind; "529" (overloaded) exists only on the Anthropic fake, as in the real APIs.

- "429_retry_after" / "429_retry_after_0": a 429 asking for `Faults.retry_after` / 0 seconds
  (retry-after and retry-after-ms); "429": a 429 with no advice; "500"; "529" (Anthropic);
- "html_502" / "html_503": a proxy's or load balancer's HTML error page with that status;
- "html_200": a 200 whose body is an HTML page (a captive portal, a proxy's login page);
- "error_200": a 200 whose JSON body is an error envelope (some gateways do this);
- "empty": a 200 with `choices: []` (OpenAI) / `content: []` (Anthropic), `data: []` on the
  models list;
- "missing_fields": a 200 whose JSON lacks the required fields (no choices / content / id);
- "stall": the answer after `Faults.stall_seconds` (headers included);
- "trickle": headers at once, then the real body a few bytes at a time over
  `Faults.trickle_seconds` (every read is quick, the whole call is slow);
- "truncated": a 200 that stops half-way through its JSON (content-length says so);
- "reset": headers and half the body, then the connection is closed;
- "disconnect": the connection closed before any byte of a response;
- "400" / "401": final errors (a rejected request, a rejected key), never worth a retry.
"""

PHASES = ("models", "logprobs_probe", "continuation_probe", "generation")
"""What a request is for, as the fakes tell it: the model check (GET /v1/models[/id]), the
logprobs probe ("Reply with the letter A."), the continuation probe ("Count from 1 to 20...")
and everything else (CoTs, answers, mistakes, paraphrases)."""

try:  # the probes' own texts, so the fakes follow cotfaith if they change
    from cotfaith.models.api import CONTINUATION_PROBE as _CP

    CONTINUATION_PROBE_TEXT = _CP.messages[-1].content
except (ImportError, AttributeError, IndexError):  # pragma: no cover
    CONTINUATION_PROBE_TEXT = "Count from 1 to 20, separated by commas."
try:
    from cotfaith.models.openai_chat import _LOGPROBS_PROBE as _LP

    LOGPROBS_PROBE_TEXT = _LP.messages[-1].content
except (ImportError, AttributeError, IndexError):  # pragma: no cover
    LOGPROBS_PROBE_TEXT = "Reply with the letter A."

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


def is_answer_request(request: ModelRequest) -> bool:
    """Whether `request` asks for the answer (after a CoT, or without one) rather than for a
    CoT, a continuation or a helper's rewrite: the answer phrase is in its last turns."""
    last = request.messages[-1].content if request.messages else ""
    return "most likely answer" in (request.prefill or "") or "most likely answer" in last[-300:]


Script = Callable[[ModelRequest], "ModelResponse | str | None"]


def scripted_responder(script: Script, inner: Responder | None = None) -> Responder:
    """Every reply decided by `script(request)`: a ModelResponse, a text (finish "stop"), or
    None for `inner` (the organism by default) to answer. A count is still carried on (the
    continuation probe), so a scripted model passes the preflight as a real one would."""
    fallback = inner or default_responder()

    async def respond(request: ModelRequest) -> ModelResponse:
        out = script(request)
        if out is None:
            return await fallback(request)
        if isinstance(out, str):
            return ModelResponse(
                text=out, finish_reason="stop", usage=Usage(10, max(1, len(out) // 4))
            )
        return out

    return counting(respond)


def fixed_responder(
    text: str,
    *,
    top_logprobs: Mapping[str, float] | None = None,
    finish_reason: str = "stop",
    when: Callable[[ModelRequest], bool] | None = None,
    inner: Responder | None = None,
) -> Responder:
    """The same reply (`text`, and `top_logprobs` where the request asks for logprobs) to every
    request `when` selects (all by default; e.g. `when=is_answer_request`), the rest from
    `inner`."""

    def script(request: ModelRequest) -> ModelResponse | None:
        if when is not None and not when(request):
            return None
        lps = dict(top_logprobs) if top_logprobs and request.top_logprobs else None
        usage = Usage(10, max(1, len(text) // 4)) if text else Usage(10, request.max_tokens)
        return ModelResponse(text=text, top_logprobs=lps, finish_reason=finish_reason, usage=usage)

    return scripted_responder(script, inner)


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
    trickle_seconds: float = 5.0
    """How long a "trickle" body takes to arrive, in small pieces (longer than any client
    timeout the tests use; every piece comes well within it)."""
    phases: Sequence[str] = ()
    """Which requests may get a fault (see PHASES). Empty: every POST to a generation endpoint,
    the probes included (the model check never). Arrivals are counted among these only."""
    sequence: Sequence[str | None] = ()
    """Scripted faults: eligible arrival n < len(sequence) gets sequence[n] (None: no fault),
    whatever the rate; later arrivals draw as usual."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Faults.rate must be in [0, 1], got {self.rate}")
        unknown = [
            k for k in (*self.kinds, *self.sequence) if k is not None and k not in FAULT_KINDS
        ]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("Faults.rate > 0 needs at least one fault kind")
        bad = [p for p in self.phases if p not in PHASES]
        if bad:
            raise ValueError(f"unknown phases {bad}; known: {', '.join(PHASES)}")

    def applies(self, phase: str) -> bool:
        """Whether a request of `phase` is eligible for faults."""
        if self.phases:
            return phase in self.phases
        return phase != "models"

    @property
    def active(self) -> bool:
        return bool(self.rate > 0 or self.fail_first or self.sequence)

    def draw(self, n: int) -> str | None:
        """The fault for the n-th eligible request (0-based), or None."""
        if n < len(self.sequence):
            return self.sequence[n]
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
    phases: Counter[str] = field(default_factory=Counter)
    """Requests per phase (PHASES), model checks included; listed once it counts something."""
    in_flight: int = 0
    max_in_flight: int = 0
    """Generation requests being handled now, and the most at once (listed once non-zero)."""
    arrivals: int = 0
    """Requests eligible for faults so far (the n of Faults.draw); not listed."""
    streams: list[float] = field(default_factory=list)
    """Seconds each "trickle" / "reset" reply kept its client (until the last byte, or until the
    client left): how long a client waits for a slow body. Listed once non-empty."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "requests": self.requests,
            "ok": self.ok,
            "faults": dict(self.faults),
            "completed_keys": dict(self.completed_keys),
            "cap_fields": dict(self.cap_fields),
            "system_turns": dict(self.system_turns),
        }
        if self.phases:
            out["phases"] = dict(self.phases)
        if self.streams:
            out["streams"] = [round(x, 3) for x in self.streams]
        if self.max_in_flight:
            out["in_flight"] = self.in_flight
            out["max_in_flight"] = self.max_in_flight
        return out

    def reset(self) -> None:
        self.requests = self.ok = self.arrivals = self.max_in_flight = 0
        self.faults.clear()
        self.completed_keys.clear()
        self.cap_fields.clear()
        self.system_turns.clear()
        self.phases.clear()
        self.streams.clear()


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
    echo_key: str | None = None
    """None, "masked" or "full": error messages quote the key the client sent (as OpenAI's
    401 does, masked; some proxies and self-hosted gateways quote it whole)."""
    stats: Stats = field(default_factory=Stats)

    def draw(self, phase: str) -> str | None:
        """Count a request of `phase` and decide its fault (None: answer normally)."""
        self.stats.phases[phase] += 1
        faults = self.faults
        if not faults.applies(phase):
            return None
        n = self.stats.arrivals
        self.stats.arrivals += 1
        fault = faults.draw(n) if faults.active else None
        if fault is not None:
            self.stats.faults[fault] += 1
        return fault


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
FaultRenderer = Callable[[str, ServerState, web.Request], web.Response]
"""Renders a fault that is an HTTP error in the API's own shape (429, 500, 529, 400, 401)."""
Malformer = Callable[[str, Any], Any]
"""(kind, the real payload) -> the payload a bogus 200 carries ("empty", "missing_fields",
"error_200")."""


def phase_of(body: Mapping[str, Any]) -> str:
    """What a generation request is for: a probe of cotfaith's, or real work ("generation")."""
    texts: list[str] = []
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(p for p in prompt if isinstance(p, str))
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(str(b.get("text", "")) for b in content if isinstance(b, dict))
    for text in texts:
        if LOGPROBS_PROBE_TEXT in text:
            return "logprobs_probe"
        if CONTINUATION_PROBE_TEXT in text:
            return "continuation_probe"
    return "generation"


def sent_key(request: web.Request) -> str:
    """The key the client sent (Authorization: Bearer, else x-api-key), "" if none."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "")


def quoted_key(request: web.Request, state: ServerState) -> str:
    """The key as an echoing server quotes it in error text ("" when the server does not)."""
    key = sent_key(request)
    if state.echo_key is None or not key:
        return ""
    if state.echo_key == "full":
        return key
    # OpenAI's 401: "Incorrect API key provided: sk-proj-********...wxyz"
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:]


def with_key(message: str, request: web.Request, state: ServerState) -> str:
    """`message`, quoting the client's key where the server is one that echoes keys."""
    shown = quoted_key(request, state)
    return f"{message} (request made with API key {shown})" if shown else message


HTML_PAGES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    200: "Sign in to continue",
}


def html_page(status: int) -> web.Response:
    """What nginx, a cloud load balancer or a captive portal sends: a page, not JSON."""
    title = HTML_PAGES[status]
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(body=body.encode(), status=status, content_type="text/html")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


async def _stream(
    request: web.Request, data: bytes, *, seconds: float, cut: bool, stats: Stats
) -> tuple[web.StreamResponse, bool]:
    """Send `data` as a 200 JSON body: over `seconds` in small pieces (trickle), or half of it
    and then close the connection (cut). Returns (response, whether all of it was sent)."""
    started = time.monotonic()
    try:
        return await _send_stream(request, data, seconds=seconds, cut=cut)
    finally:
        # also when the handler is cancelled because the client left
        stats.streams.append(time.monotonic() - started)


async def _send_stream(
    request: web.Request, data: bytes, *, seconds: float, cut: bool
) -> tuple[web.StreamResponse, bool]:
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.content_length = len(data)
    await resp.prepare(request)
    try:
        if cut:
            await resp.write(data[: len(data) // 2])
            await asyncio.sleep(0.01)  # let the half body leave before the connection goes
            if request.transport is not None:
                request.transport.close()
            return resp, False
        interval = 0.1
        steps = max(1, int(seconds / interval))
        size = max(1, -(-len(data) // steps))
        for i in range(0, len(data), size):
            await resp.write(data[i : i + size])
            if i + size < len(data):
                await asyncio.sleep(interval)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        return resp, False  # the client left
    transport = request.transport
    return resp, transport is not None and not transport.is_closing()


async def serve_reply(
    request: web.Request,
    state: ServerState,
    *,
    phase: str,
    key: str | None,
    compute: Callable[[], Awaitable[Any]],
    render_error: ErrorRenderer,
    render_fault: FaultRenderer,
    malformed: Malformer,
) -> web.StreamResponse:
    """The flow every endpoint shares: count, maybe fault, answer, count success.

    `compute` validates the request and builds the real payload; it raises ApiError for 4xx.
    `key` is None for the model check (it is not counted as a completed request).
    """
    stats = state.stats
    if key is not None:
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        fault = state.draw(phase)
        return await _reply(
            request, state, fault, key, compute, render_error, render_fault, malformed
        )
    finally:
        if key is not None:
            stats.in_flight -= 1


async def _reply(
    request: web.Request,
    state: ServerState,
    fault: str | None,
    key: str | None,
    compute: Callable[[], Awaitable[Any]],
    render_error: ErrorRenderer,
    render_fault: FaultRenderer,
    malformed: Malformer,
) -> web.StreamResponse:
    stats = state.stats
    if state.latency:
        await asyncio.sleep(state.latency)
    if fault == "stall":
        await asyncio.sleep(state.faults.stall_seconds)
    elif fault in ("html_502", "html_503"):
        return html_page(int(fault[5:]))
    elif fault == "html_200":
        return html_page(200)
    elif fault == "disconnect":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
    elif fault == "error_200":
        return json_response(malformed(fault, None))
    elif fault in ("429", "429_retry_after", "429_retry_after_0", "500", "529", "400", "401"):
        return render_fault(fault, state, request)
    try:
        payload = await compute()
    except ApiError as e:
        return render_error(e)
    if fault in ("empty", "missing_fields"):
        return json_response(malformed(fault, payload))
    data = _dumps(payload)
    if fault == "truncated":
        # a 200 that claims JSON but stops mid-object, as when a proxy cuts the stream
        return web.Response(body=data[: len(data) // 2], content_type="application/json")
    if fault in ("trickle", "reset"):
        resp, whole = await _stream(
            request,
            data,
            seconds=state.faults.trickle_seconds,
            cut=fault == "reset",
            stats=stats,
        )
        if whole and key is not None:
            stats.ok += 1  # the client waited for all of it: it has the answer
            stats.completed_keys[key] += 1
        return resp
    transport = request.transport
    if transport is None or transport.is_closing():
        # the client gave up (timed out on a stall, or was killed): what we would send is never
        # read, so it must not count as completed, or its retry would look like a duplicate
        return web.Response(status=499)
    if key is not None:
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
