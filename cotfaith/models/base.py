"""The one small interface every backend implements: a canonical request in, a response out.

A request is a pure description of a model call. Together with the backend's `identity`
(provider, model, base URL and every other setting that changes the output) its content hash
is the cache key, so nothing that does not change the output (timeouts, retries, concurrency,
latency) may live in either.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ModelRequest:
    """One model call, described completely and canonically."""

    messages: tuple[Message, ...]
    """Chat turns, ending with a user turn (the assistant replies next)."""
    prefill: str | None = None
    """Start of the assistant turn that the reply continues (`continuation=prefill`)."""
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0
    """How many alternatives to return for the first generated token (0: none)."""
    sample_index: int = 0
    """Tells independent samples of the same prompt apart (part of the key on purpose)."""

    def to_dict(self) -> dict[str, Any]:
        # by hand rather than dataclasses.asdict: this runs on every call (hot path)
        return {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "prefill": self.prefill,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "top_logprobs": self.top_logprobs,
            "sample_index": self.sample_index,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelRequest:
        d = dict(d)
        d["messages"] = tuple(Message(**m) for m in d["messages"])
        d["stop"] = tuple(d.get("stop", ()))
        return cls(**d)

    def describe(self, limit: int = 80) -> str:
        """A short human-readable handle for error messages."""
        last = self.messages[-1].content.replace("\n", " ") if self.messages else ""
        if len(last) > limit:
            last = last[: limit - 3] + "..."
        tail = f" | prefill={self.prefill[-40:]!r}" if self.prefill else ""
        return f"sample {self.sample_index}, last turn {last!r}{tail}"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class ModelResponse:
    text: str
    """The generated continuation (after any prefill)."""
    top_logprobs: dict[str, float] | None = None
    """Alternatives for the first generated token: token -> logprob."""
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    """Served from the request cache rather than from the backend (never stored)."""
    cost_usd: float | None = None
    """What this call costs at the configured prices (derived, never stored)."""
    retries: int = 0
    """Failed attempts before this response (this run only, never stored)."""

    def to_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "text": self.text,
            "top_logprobs": self.top_logprobs,
            "finish_reason": self.finish_reason,
            "usage": {
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cached_input_tokens": u.cached_input_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: bool = False) -> ModelResponse:
        d = dict(d)
        d["usage"] = Usage(**d.get("usage", {}))
        d.pop("cost_usd", None)
        d.pop("retries", None)
        return cls(**d, cached=cached)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; strategies are chosen from these and stored in every record."""

    prefill: bool = False
    """Accepts a partial assistant turn and continues it."""
    logprobs: bool = False
    """Returns top-k logprobs of generated tokens."""
    completion: bool = False
    """Offers a raw-text completion endpoint."""


class ProbeStore(ABC):
    """Where capability probe outcomes are remembered (the request cache implements it)."""

    @abstractmethod
    def get_probe(self, name: str, identity: dict[str, Any]) -> Any | None: ...

    @abstractmethod
    def put_probe(self, name: str, identity: dict[str, Any], value: Any) -> None: ...

    replay: bool = False
    """True when no network may be used: a missing probe outcome is then an error."""


def request_key(identity: dict[str, Any], request: ModelRequest | dict[str, Any]) -> str:
    """Content hash of (backend identity, request): the cache key."""
    if isinstance(request, ModelRequest):
        request = request.to_dict()
    payload = json.dumps(
        {"backend": identity, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Model(ABC):
    """An async backend. Subclasses live one per module under cotfaith/models/."""

    capabilities: Capabilities = Capabilities()
    continuation: str = "prefill"
    """How a partial assistant turn is continued when the request has a prefill: `prefill`
    (native), `completion` (raw text endpoint with a chat template) or `none` (cannot)."""
    concurrency: int = 8
    """Upper bound on calls in flight; does not change outputs, so not part of `identity`."""

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything about this backend that changes its outputs (provider, model, base URL...)."""

    @abstractmethod
    async def generate(self, request: ModelRequest) -> ModelResponse: ...

    async def preflight(self, probes: ProbeStore) -> None:  # noqa: B027 - optional hook
        """Check key, reachability and model before any expensive work, and settle
        capabilities that must be probed. Probe outcomes go through `probes` so that a replay
        decides exactly as the original run did, without the network."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""
