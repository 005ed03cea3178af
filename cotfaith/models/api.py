"""What the HTTP API backends share: keys, the retry layer, rate limits, preflight errors.

API keys are read from the environment variable NAMED in the config (`api_key_env`), only when
a call is about to be made, and never stored on anything that is written out (identity,
records, logs, cache). A replay needs no key at all.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from cotfaith.errors import CacheMiss, ConfigError
from cotfaith.models.base import Message, Model, ModelRequest, ModelResponse, ProbeStore
from cotfaith.models.pacing import Pacer
from cotfaith.models.ratelimit import RateLimiter
from cotfaith.models.retry import (
    BadResponse,
    CallFailed,
    CallTimeout,
    RetryPolicy,
    RetryStats,
    classify,
    connection_refused,
    disconnected,
    summarize_history,
    with_retries,
)
from cotfaith.pricing import estimate_tokens

log = logging.getLogger(__name__)


@dataclass
class ApiModelConfig:
    """Common keys of the HTTP backends. The key itself never sits in a config: only the
    NAME of the environment variable that holds it."""

    provider: str = MISSING
    name: str = MISSING
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    """Overrides sampling.temperature for CoT sampling with this model (null: inherit)."""
    top_p: float | None = None
    """Overrides sampling.top_p for CoT sampling with this model (null: inherit)."""
    max_tokens: int | None = None
    """Overrides sampling.max_tokens for CoT sampling with this model (null: inherit)."""
    omit_params: list[str] = field(default_factory=list)
    """Sampling parameters never sent (e.g. top_p for Claude models that reject it with
    temperature). Part of the cache key."""
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = 120.0
    """Seconds a call may take from sending the request to the last byte of the reply (a
    deadline for the whole call, a trickled body included); then it is abandoned and retried."""
    retries: int = 8
    retry_initial: float = 0.5
    retry_max: float = 60.0


try:  # the SDKs' aiohttp transport is much lighter per call than the default one
    import aiohttp  # noqa: F401

    HAVE_AIOHTTP = True
except ImportError:  # pragma: no cover - aiohttp is a dependency, but stay usable without it
    HAVE_AIOHTTP = False


# Providers echo (partly masked) keys in some error messages, e.g. "Incorrect API key provided:
# sk-abc***xyz"; error text ends up in records and logs, so anything key-like is scrubbed.
_KEYLIKE = re.compile(r"\b(?:sk|sk-ant|sk-proj|key)-[A-Za-z0-9_*\-]{6,}")
# a masked echo ("gw-local*********d05e", "sk-ab...****xyz") of a key of any shape
_MASKED = re.compile(r"[A-Za-z0-9_\-.]*\*{3,}[A-Za-z0-9_\-.]*")
_MASK = re.compile(r"\*{2,}|\.{3}|\u2026")


def redact(text: str, key: str | None = None) -> str:
    if key and key != "EMPTY":
        text = text.replace(key, "[redacted]")
        if len(key) >= 12:
            # a masked echo that keeps the key's head or tail ("gw-local****d05e"); only masked
            # tokens, so a person's key such as "sk-no-key-required" blanks no other words
            head, tail = re.escape(key[:6]), re.escape(key[-4:])
            text = re.sub(
                rf"\S*(?:{head}|{tail})\S*",
                lambda m: "[redacted]" if _MASK.search(m.group()) else m.group(),
                text,
            )
    text = _MASKED.sub("[redacted]", text)
    return _KEYLIKE.sub("[redacted]", text)


def read_reply(data: Any, url: str, read: Callable[[Any], ModelResponse]) -> ModelResponse:
    """`read(data)`: a reply in the API's shape, else BadResponse (retried, like a cut body).
    A proxy or a half-compatible server can answer 200 with anything: the server's fault, not
    a bug of ours to stop the run for."""
    try:
        return read(data)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise BadResponse(
            f"a reply from {url} not in the API's shape ({type(e).__name__}: {e}): "
            f"{str(data)[:120]}"
        ) from None


# ------------------------------------------------------------------ verified continuation
# A prefill whose only sensible continuation is known. A server that really continues the
# assistant turn produces "8" next; one that closes the turn and starts a new one (llama.cpp
# ignores vLLM's continue_final_message) answers afresh: "1, 2, 3...", "Sure!", "The ...".
CONTINUATION_PROBE = ModelRequest(
    messages=(Message("user", "Count from 1 to 20, separated by commas."),),
    prefill="1, 2, 3, 4, 5, 6, 7,",
    temperature=0.0,
    top_p=1.0,
    max_tokens=4,
    top_logprobs=5,
)
CONTINUATION_NEXT = "8"
CONTINUATION_MIN_MASS = 0.5
"""Least first-token probability on the way to "8" where logprobs are returned: a continuing
model puts nearly all of it there (SmolLM2-135M by raw completion: 0.997)."""


def _starts_with_next(text: str) -> bool:
    t = text.strip()
    return t.startswith(CONTINUATION_NEXT) and not t[len(CONTINUATION_NEXT) :][:1].isdigit()


def _on_the_way(token: str) -> bool:
    # many tokenizers (Llama 3, GPT-4, SmolLM2) never join a space to a digit: after "7," the
    # first token of " 8" is the space alone, so a whitespace token is on the way to "8"
    return _starts_with_next(token) or (token != "" and token.isspace())


def continuation_verdict(response: ModelResponse) -> dict[str, Any]:
    """Did the reply continue the probe's prefill? Checked in the text and, where returned,
    in the first token's logprobs. The outcome is stored as a probe (JSON)."""
    mass = None
    if response.top_logprobs:
        mass = sum(
            math.exp(min(float(lp), 0.0))
            for token, lp in response.top_logprobs.items()
            if isinstance(token, str) and _on_the_way(token)
        )
    ok = _starts_with_next(response.text) and (mass is None or mass >= CONTINUATION_MIN_MASS)
    return {"ok": ok, "reply": response.text[:60], "next_token_mass": mass}


def describe_verdict(outcome: dict[str, Any]) -> str:
    """How the probe went, for one-line errors and notices."""
    if outcome.get("error"):
        return f"the server rejected it: {outcome['error']}"
    said = f"it replied {outcome.get('reply')!r}"
    mass = outcome.get("next_token_mass")
    if mass is not None:
        said += f", p({CONTINUATION_NEXT!r})={mass:.2f}"
    return (
        f"asked to continue {CONTINUATION_PROBE.prefill!r}, {said} instead of {CONTINUATION_NEXT!r}"
    )


class ApiModel(Model):
    provider: str = "api"
    sdk: str = ""
    """The SDK package ("openai" or "anthropic") and its async client class, below."""
    sdk_client: str = ""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = dict(cfg)
        self.name = str(cfg["name"])
        self.base_url = str(cfg["base_url"]).rstrip("/") if cfg.get("base_url") else None
        self.api_key_env = cfg.get("api_key_env")
        self.timeout = float(cfg.get("timeout") or 120)
        self.concurrency = int(cfg.get("concurrency") or 16)
        self.omit = tuple(sorted(cfg.get("omit_params") or ()))
        self.policy = RetryPolicy(
            retries=int(cfg.get("retries", 8)),
            initial=float(cfg.get("retry_initial", 0.5)),
            maximum=float(cfg.get("retry_max", 60)),
        )
        self.limiter = RateLimiter(cfg.get("requests_per_minute"), cfg.get("tokens_per_minute"))
        self.retry_stats = RetryStats()
        """Retries of the run's calls (each in some record); the checks before it count in
        preflight_stats, so the records' retries add up to these."""
        self.preflight_stats = RetryStats()
        self.pacer = Pacer(self.concurrency)
        """Shared by every call of this backend: the server's pauses and the adaptive window."""
        self.notices: list[str] = []
        """Things the user must know about this run (shown once in the log and the report)."""
        self._client: Any = None

    # ------------------------------------------------------------------ keys
    def api_key(self) -> str:
        if not self.api_key_env:
            return "EMPTY"  # local servers (vLLM, Ollama, llama.cpp) usually take any key
        key = os.environ.get(str(self.api_key_env))
        if not key:
            raise ConfigError(
                f"model.api_key_env: the environment variable {self.api_key_env} is not set "
                f"(needed to call {self.provider}/{self.name}); export it, or rerun with "
                "cache.mode=replay to use only cached responses"
            )
        return key

    @property
    def client(self) -> Any:
        """The official SDK's async client, made on first use (a replay never makes one)."""
        if self._client is None:
            sdk = importlib.import_module(self.sdk)
            self._client = getattr(sdk, self.sdk_client)(
                api_key=self.api_key(),
                base_url=self.base_url,
                max_retries=0,  # our retry layer is the only one
                # the deadline for the whole call is ours (within_deadline); the SDK's, per
                # read, is a backstop set just past it so that ours is the one that fires
                timeout=self.timeout + 1.0,
                http_client=sdk.DefaultAioHttpClient() if HAVE_AIOHTTP else None,
            )
        return self._client

    def _with_omissions(self, identity: dict[str, Any]) -> dict[str, Any]:
        # parameters never sent change the output, so they belong to the cache key
        if self.omit:
            identity["omit_params"] = list(self.omit)
        return identity

    def notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)
            log.warning("%s", text)

    # ------------------------------------------------------------------ calls
    def where(self) -> str:
        return self.base_url or f"the {self.provider} API"

    async def generate(self, request: ModelRequest) -> ModelResponse:
        tokens = 0
        if self.limiter.active:
            text = "".join(m.content for m in request.messages) + (request.prefill or "")
            tokens = estimate_tokens(text) + request.max_tokens
        attempts = 0

        async def once() -> ModelResponse:
            nonlocal attempts
            attempts += 1
            # every attempt, retries included, counts against the per-minute limits
            await self.limiter.acquire(tokens)
            return await self.within_deadline(lambda: self._call(request))

        try:
            response = await with_retries(
                once,
                self.policy,
                self.retry_stats,
                self.pacer,
                lambda: f"{self.provider}/{self.name} ({request.describe()})",
            )
        except CallFailed as e:
            key = os.environ.get(str(self.api_key_env)) if self.api_key_env else None
            raise CallFailed(redact(str(e), key), e.reason, e.attempts, e.history) from None
        finally:
            if self.pacer.cuts:
                self.notice(
                    f"{self.provider}/{self.name}: {self.where()} refused calls (429) with "
                    f"{self.concurrency} in flight; the calls in flight were narrowed (down to "
                    "what the server takes, widening again as calls succeed); a lower "
                    "model.concurrency avoids the refusals"
                )
        response.retries = attempts - 1
        return response

    async def _call(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def within_deadline(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`, abandoned when the whole of it takes longer than model.timeout. The SDKs'
        own timeout bounds each read, so a body trickled a few bytes at a time never trips it."""
        if self._client is None:
            _ = self.client  # made (the SDK imported) before the clock starts, not within it
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await call()
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the transport's own, classified as such
            raise CallTimeout(f"no complete reply within {self.timeout:g} s") from None

    # ------------------------------------------------------------------ preflight
    async def check_model(self) -> None:
        """Fail in one line when the key is rejected, the server unreachable or the model
        unknown."""

    async def settle(self, probes: ProbeStore) -> None:  # noqa: B027 - optional hook
        """Decide what must be probed (continuation, logprobs, chat template), each through
        `probed`, so a replay decides exactly as the original run did."""

    async def preflight(self, probes: ProbeStore) -> None:
        if not probes.replay:
            # no network and no key in a replay: everything below comes from stored probes
            self.api_key()  # a missing key fails here, before anything else
            await self.check_model()
        await self.settle(probes)

    async def probed(
        self,
        probes: ProbeStore,
        name: str,
        identity: dict[str, Any],
        compute: Callable[[], Awaitable[Any]],
        legacy: Any = None,
    ) -> Any:
        """The stored outcome of probe `name` for `identity`, else `compute()` it and store it.

        In a replay a missing outcome is an error, unless `legacy` (what a cache made before
        this probe existed implies) is given: a replay of an old cache then decides as the old
        run did, and says so.
        """
        known = probes.get_probe(name, identity)
        if known is not None:
            return known
        if probes.replay:
            if legacy is not None:
                self.notice(
                    f"replay: the cache predates the {name} probe for "
                    f"{self.provider}/{self.name}; deciding as the run that filled it did"
                )
                return legacy
            raise CacheMiss(
                f"replay: the cache holds no {name} probe for {self.provider}/{self.name}; "
                "run once with the network first"
            )
        value = await compute()
        probes.put_probe(name, identity, value)
        return value

    async def retrying(self, call: Any, what: str) -> Any:
        """A preflight call, retried briefly on transient faults (a 529 at start-up must not
        abort a run); the original exception comes back when it is final."""
        policy = RetryPolicy(
            retries=min(3, self.policy.retries), initial=self.policy.initial, maximum=5.0
        )
        try:
            return await with_retries(
                lambda: self.within_deadline(call),
                policy,
                self.preflight_stats,
                self.pacer,
                lambda: f"{self.provider}/{self.name} {what}",
            )
        except CallFailed as e:
            original = e.__cause__ or e
            # what each attempt got back, for an error that says what was tried
            original.cotfaith_tried = (what, e.history)  # type: ignore[union-attr]
            # keep the original's own cause: it tells a refused connection from a timeout
            raise original from original.__cause__

    def preflight_error(self, exc: Exception) -> ConfigError:
        """One clear line for what can go wrong before a run starts."""
        status = getattr(exc, "status_code", None)
        name = type(exc).__name__
        if status in (401, 403):
            return ConfigError(
                f"model.api_key_env: {self.where()} rejected the key in "
                f"${self.api_key_env} ({status} {name})"
            )
        if status == 404:
            return ConfigError(
                f"model.name: {self.name!r} is not a model served by {self.where()} (404)"
            )
        if disconnected(exc) and not getattr(exc, "cotfaith_tried", None):
            return ConfigError(
                f"model.base_url: {self.where()} closed the connection without a reply"
            )
        if connection_refused(exc):
            # before the timeout branch: the SDK reports a refused connection as a timeout
            return ConfigError(
                f"model.base_url: cannot connect to {self.where()} (connection refused: "
                "is the server running, on this host and port?)"
            )
        key = os.environ.get(str(self.api_key_env)) if self.api_key_env else None
        what, history = getattr(exc, "cotfaith_tried", ("preflight", []))
        if history:
            # say what was tried and what came back, not the last exception's bare repr
            said = redact(summarize_history(history), key)
            if classify(exc) is None:  # refused for good: about the model and the request
                return ConfigError(
                    f"{self.provider}/{self.name} at {self.where()} failed the {what}: {said}"
                )
            return ConfigError(
                f"model.base_url: {self.where()} failed the {what} of "
                f"{self.provider}/{self.name}: {said}"
            )
        if "Connection" in name or "Timeout" in name:
            return ConfigError(f"model.base_url: cannot reach {self.where()} ({name}: {exc})")
        return ConfigError(
            f"{self.provider}/{self.name}: preflight failed: {name}: {redact(str(exc), key)}"
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
