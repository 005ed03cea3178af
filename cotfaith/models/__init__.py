"""Backends behind one async interface (`base.Model`), built by provider name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models.base import Model


def _simulated(cfg: Mapping[str, Any]) -> Model:
    from cotfaith.models.simulated import Knobs, SimulatedModel

    try:
        knobs = Knobs(
            faithfulness=float(cfg["faithfulness"]),
            accuracy_cot=float(cfg["accuracy_cot"]),
            accuracy_no_cot=float(cfg["accuracy_no_cot"]),
            verify_rate=float(cfg["verify_rate"]),
            seed=int(cfg["seed"]),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return SimulatedModel(
        knobs, name=cfg["name"], latency=float(cfg["latency"]), concurrency=int(cfg["concurrency"])
    )


def _openai(cfg: Mapping[str, Any]) -> Model:
    from cotfaith.models.openai_chat import OpenAIChat

    return OpenAIChat(cfg, provider=str(cfg.get("provider", "openai")))


def _anthropic(cfg: Mapping[str, Any]) -> Model:
    from cotfaith.models.anthropic_messages import AnthropicMessages

    return AnthropicMessages(cfg)


PROVIDERS: dict[str, Callable[[Mapping[str, Any]], Model]] = {
    "simulated": _simulated,
    "openai": _openai,
    "openai_compatible": _openai,
    "anthropic": _anthropic,
}


def build_model(cfg: Mapping[str, Any]) -> Model:
    provider = cfg.get("provider")
    if provider not in PROVIDERS:
        raise ConfigError(
            f"model.provider: unknown provider {provider!r}; known: {sorted(PROVIDERS)}"
        )
    return PROVIDERS[provider](cfg)
