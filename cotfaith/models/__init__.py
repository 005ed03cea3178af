"""Backends behind one async interface (`base.Model`): one module each, registered with
`@register("backend", provider, config=...)` (cotfaith.registry) and built by `model.provider`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cotfaith import registry
from cotfaith.models.base import Model


def build_model(cfg: Mapping[str, Any]) -> Model:
    """The backend named by `model.provider` (an unknown one fails naming the known ones)."""
    return registry.lookup("backend", cfg.get("provider"), where="model.provider").obj(cfg)
