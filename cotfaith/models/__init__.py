"""Backends behind one async interface (`base.Model`), built by provider name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cotfaith import registry
from cotfaith.errors import ConfigError
from cotfaith.models.base import Model


def _openai(cfg: Mapping[str, Any]) -> Model:
    from cotfaith.models.openai_chat import OpenAIChat

    return OpenAIChat(cfg, provider=str(cfg.get("provider", "openai")))


def _anthropic(cfg: Mapping[str, Any]) -> Model:
    from cotfaith.models.anthropic_messages import AnthropicMessages

    return AnthropicMessages(cfg)


PROVIDERS: dict[str, Callable[[Mapping[str, Any]], Model]] = {
    "simulated": lambda cfg: registry.lookup("backend", "simulated").obj(cfg),
    "openai": _openai,
    "openai_compatible": _openai,
    "anthropic": _anthropic,
}


def build_model(cfg: Mapping[str, Any]) -> Model:
    """The backend named by `model.provider`: a registered component (cotfaith.registry, e.g.
    the simulated organism) first, then the built-in HTTP backends."""
    provider = cfg.get("provider")
    entry = registry.maybe("backend", str(provider)) if provider is not None else None
    if entry is not None:
        return entry.obj(cfg)
    if provider not in PROVIDERS:
        known = sorted(set(PROVIDERS) | set(registry.names("backend")))
        raise ConfigError(f"model.provider: unknown provider {provider!r}; known: {known}")
    return PROVIDERS[provider](cfg)
