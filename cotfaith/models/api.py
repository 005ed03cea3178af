"""What the HTTP API backends share: keys, the retry layer, rate limits, preflight errors.

API keys are read from the environment variable NAMED in the config (`api_key_env`), only when
a call is about to be made, and never stored on anything that is written out (identity,
records, logs, cache). A replay needs no key at all.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from cotfaith.errors import CacheMiss, ConfigError
from cotfaith.models.base import Model, ModelRequest, ModelResponse, ProbeStore
from cotfaith.models.ratelimit import RateLimiter
from cotfaith.models.retry import CallFailed, Gate, RetryPolicy, RetryStats, with_retries
from cotfaith.pricing import estimate_tokens

log = logging.getLogger(__name__)

try:  # the SDKs' aiohttp transport is much lighter per call than the default one
    import aiohttp  # noqa: F401

    HAVE_AIOHTTP = True
except ImportError:  # pragma: no cover - aiohttp is a dependency, but stay usable without it
    HAVE_AIOHTTP = False


# Providers echo (partly masked) keys in some error messages, e.g. "Incorrect API key provided:
# sk-abc***xyz"; error text ends up in records and logs, so anything key-like is scrubbed.
_KEYLIKE = re.compile(r"\b(?:sk|sk-ant|sk-proj|key)-[A-Za-z0-9_*\-]{6,}")


def redact(text: str, key: str | None = None) -> str:
    if key and key != "EMPTY":
        text = text.replace(key, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


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
        self.gate = Gate()
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
                timeout=self.timeout,
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
            return await self._call(request)

        try:
            response = await with_retries(
                once,
                self.policy,
                self.retry_stats,
                self.gate,
                lambda: f"{self.provider}/{self.name} ({request.describe()})",
            )
        except CallFailed as e:
            key = os.environ.get(str(self.api_key_env)) if self.api_key_env else None
            raise CallFailed(redact(str(e), key), e.reason, e.attempts) from None
        response.retries = attempts - 1
        return response

    async def _call(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    # ------------------------------------------------------------------ preflight
    probe_name: str = ""
    """The capability settled by a one-off probe call (logprobs, prefill)."""

    @property
    def probe_wanted(self) -> bool:
        return False

    async def check_model(self) -> None:
        """Fail in one line when the key is rejected, the server unreachable or the model
        unknown."""

    async def _probe(self) -> bool:
        raise NotImplementedError

    def _settle(self, ok: bool | None) -> None:
        """Adopt a probe outcome (None: not probed, keep the configured capabilities)."""

    async def preflight(self, probes: ProbeStore) -> None:
        known = probes.get_probe(self.probe_name, self.identity) if self.probe_wanted else None
        if probes.replay:
            # no network and no key: decide exactly as the run that filled the cache did
            if self.probe_wanted and known is None:
                raise CacheMiss(
                    f"replay: the cache holds no {self.probe_name} probe for "
                    f"{self.provider}/{self.name}; run once with the network first"
                )
            self._settle(known)
            return
        self.api_key()  # a missing key fails here, before anything else
        await self.check_model()
        if self.probe_wanted:
            if known is None:
                known = await self._probe()
                probes.put_probe(self.probe_name, self.identity, known)
            self._settle(known)

    async def retrying(self, call: Any, what: str) -> Any:
        """A preflight call, retried briefly on transient faults (a 529 at start-up must not
        abort a run); the original exception comes back when it is final."""
        policy = RetryPolicy(
            retries=min(3, self.policy.retries), initial=self.policy.initial, maximum=5.0
        )
        try:
            return await with_retries(
                call,
                policy,
                self.retry_stats,
                self.gate,
                lambda: f"{self.provider}/{self.name} {what}",
            )
        except CallFailed as e:
            raise (e.__cause__ or e) from None

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
        if "Connection" in name or "Timeout" in name:
            return ConfigError(f"model.base_url: cannot reach {self.where()} ({name}: {exc})")
        key = os.environ.get(str(self.api_key_env)) if self.api_key_env else None
        return ConfigError(
            f"{self.provider}/{self.name}: preflight failed: {name}: {redact(str(exc), key)}"
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
