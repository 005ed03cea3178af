"""How a partial CoT is carried on by the model under test (adding mistakes, paraphrase).

- `prefill`: the backend continues a prefilled assistant turn (Anthropic models that allow it,
  vLLM `continue_final_message`, the organism);
- `completion`: a raw completion endpoint continues the conversation rendered with the model's
  chat template;
- `scaffold`: the partial reasoning is handed back in a user turn with a request to continue it.
  A different manipulation (the model reads the reasoning as given to it, not as its own), so
  it is never chosen silently: only with `continuation.allow_scaffold=true` or
  `continuation.strategy=scaffold`, and every record says which strategy produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models.base import Model

STRATEGIES = ("auto", "prefill", "completion", "scaffold")


@dataclass
class ContinuationConfig:
    strategy: str = "auto"
    """auto (the backend's own way: prefill or completion; else scaffold if allowed) | prefill
    | completion | scaffold. Recorded in every row as continuation_strategy."""
    allow_scaffold: bool = False
    """With strategy=auto: fall back to `scaffold` when the backend cannot continue a partial
    turn, instead of refusing to start."""


def native_continuation(model: Model) -> str | None:
    """The backend's own way of continuing a partial assistant turn, if it has one."""
    if not model.capabilities.prefill:
        return None
    return model.continuation if model.continuation in ("prefill", "completion") else None


def choose_continuation(
    cfg: Mapping[str, Any], model: Model, interventions: Sequence[Any]
) -> str | None:
    """The strategy for this run, or None when nothing selected needs one; a strategy the
    backend cannot honour is a one-line error naming the options."""
    strategy = str(cfg.get("strategy", "auto"))
    allow = bool(cfg.get("allow_scaffold", False))
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"continuation.strategy: unknown strategy {strategy!r}; use one of {STRATEGIES}"
        )
    needed = [iv.name for iv in interventions if getattr(iv, "needs_continuation", False)]
    native = native_continuation(model)
    if strategy == "scaffold":
        return "scaffold"
    if strategy in ("prefill", "completion") and native != strategy:
        raise ConfigError(
            f"continuation.strategy={strategy}: this backend continues by "
            f"{native or 'no native means'}; use continuation.strategy=auto"
            + (" or scaffold" if native is None else "")
        )
    chosen = native or ("scaffold" if allow else None)
    if chosen is None and needed:
        raise ConfigError(
            f"{', '.join(needed)} needs the model under test to continue a partial CoT, and "
            "this backend cannot (no assistant prefill, no raw completion): use a backend that "
            "can (model=openai_compatible model.continuation=prefill|completion, or an "
            "Anthropic model that accepts prefill), or allow the labelled scaffold fallback "
            "with continuation.allow_scaffold=true"
        )
    return chosen
