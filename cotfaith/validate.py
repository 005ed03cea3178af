"""Checks of the composed config made before anything runs, each failing in one line naming the
key: a value that would be silently wrong later (a timeout of 0 meaning 120 s, a negative
budget, a confidence level of 2 found only after the run) is refused at the start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from cotfaith.bootstrap import METHODS
from cotfaith.curvestats import RULES
from cotfaith.errors import ConfigError

# The last part of a key that holds a credential (case-insensitive).
_SECRET_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "token",
        "access_token",
        "auth_token",
        "bearer",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "authorization",
    }
)
_ROLES = ("model", "mistake_model", "paraphrase_model")
# A token with a provider's key prefix and a high-entropy tail (letters AND digits), so that
# "sk-learn-baseline" or "hf_datasets_cache" are not taken for keys.
_KEY_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|sk-ant|sk-proj|gsk|rk|ghp|github_pat|hf|xox[bp]|AKIA)[-_]?"
    r"(?P<tail>[A-Za-z0-9_\-]{16,})"
)
_BEARER = re.compile(r"\bBearer\s+\S{12,}", re.IGNORECASE)
_URL_SECRET = re.compile(
    r"(?:[?&](?:token|key|api_key|apikey|access_token|secret|password)=[^&\s]+)"
    r"|(?://[^/@\s:]+:[^/@\s]+@)",
    re.IGNORECASE,
)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NULLS = ("", "null", "None", "~")


def named_secrets(cfg: Any) -> list[str]:
    """The values of the environment variables the run's roles name as their keys: what
    must never be written anywhere, whatever its shape (too short to be a key: ignored)."""
    values = []
    for role in _ROLES:
        name = (cfg.get(role) or {}).get("api_key_env") if hasattr(cfg, "get") else None
        value = os.environ.get(str(name), "") if name else ""
        if len(value) >= 8 and value != "EMPTY":
            values.append(value)
    return values


def looks_like_key(text: str) -> bool:
    """A provider key, a Bearer token or a credential in a URL, somewhere in `text`."""
    for m in _KEY_TOKEN.finditer(text):
        tail = m.group("tail")
        if sum(c.isdigit() for c in tail) >= 2 and sum(c.isalpha() for c in tail) >= 8:
            return True
    return bool(_BEARER.search(text) or _URL_SECRET.search(text))


def credential_error(overrides: list[str]) -> str | None:
    """Why an override must not reach Hydra (which writes every override to disk)."""
    for raw in overrides:
        key, sep, value = raw.lstrip("+~").partition("=")
        last = key.rsplit(".", 1)[-1].lower()
        if last == "api_key_env":
            # a sweep may list several names: each must be a variable name (or null), so a key
            # of a shape no pattern knows (a local gateway's, say) never reaches Hydra
            listed = value.strip()
            if listed.startswith("choice(") and listed.endswith(")"):
                listed = listed[len("choice(") : -1]
            names = [v.strip().strip("'\"") for v in listed.strip("[]").split(",")]
            if looks_like_key(value) or not all(_ENV_NAME.match(n) or n in _NULLS for n in names):
                return (
                    f"{key}: takes the NAME of an environment variable (letters, digits and _), "
                    "not the key itself; export the key (e.g. export OPENAI_API_KEY=...) and "
                    "pass its name"
                )
            continue
        named = (
            last in _SECRET_NAMES
            or last.endswith(("_token", "_api_key", "_secret", "_password"))
            or (last == "key" and key.split(".")[0] in _ROLES)
        )
        if (sep and named) or looks_like_key(value if sep else raw):
            return (
                f"{key or 'an argument'}: looks like a credential; cotfaith never takes keys on "
                "the command line (they would be written to .hydra/). Export it in an "
                "environment variable and name that variable in model.api_key_env"
            )
    return None


def _number(cfg: Mapping[str, Any], key: str) -> float | None:
    value = cfg.get(key) if hasattr(cfg, "get") else None
    return None if value is None else float(value)


def _check_model(where: str, m: Mapping[str, Any]) -> None:
    checks = (
        ("temperature", lambda v: v >= 0, ">= 0"),
        ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("max_tokens", lambda v: v >= 1, ">= 1"),
        ("timeout", lambda v: v > 0, "> 0 (seconds)"),
        ("requests_per_minute", lambda v: v > 0, "> 0 (or null for no limit)"),
        ("tokens_per_minute", lambda v: v > 0, "> 0 (or null for no limit)"),
        ("concurrency", lambda v: v >= 1, ">= 1"),
        ("retries", lambda v: v >= 0, ">= 0"),
    )
    for key, ok, rule in checks:
        value = _number(m, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{where}.{key} must be {rule}, got {m.get(key)}")
    base_url = m.get("base_url") if hasattr(m, "get") else None
    if base_url and not re.match(r"^https?://[^/\s]+", str(base_url)):
        raise ConfigError(f"{where}.base_url must be an http(s) URL, got {base_url!r}")


def validate(cfg: Any) -> None:
    """Every check that needs only the config, before any task is built or call is made."""
    s = cfg.sampling
    for key, ok, rule in (
        ("temperature", lambda v: v >= 0, ">= 0"),
        ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("max_tokens", lambda v: v >= 1, ">= 1"),
    ):
        if not ok(float(s[key])):
            raise ConfigError(f"sampling.{key} must be {rule}, got {s[key]}")
    for role in ("model", "mistake_model", "paraphrase_model"):
        m = cfg.get(role)
        if m is not None and m.get("provider") not in (None, "same"):
            _check_model(role, m)
    budget = cfg.get("budget") or {}
    if budget.get("max_usd") is not None and float(budget["max_usd"]) < 0:
        raise ConfigError(f"budget.max_usd must be >= 0, got {budget['max_usd']}")
    r = cfg.get("report") or {}
    if not 0 < float(r.get("ci", 0.95)) < 1:
        raise ConfigError(f"report.ci must be between 0 and 1 (e.g. 0.95), got {r.get('ci')}")
    if int(r.get("n_bootstrap", 1000)) < 0:
        raise ConfigError(f"report.n_bootstrap must be >= 0, got {r.get('n_bootstrap')}")
    if str(r.get("ci_method", "bca")) not in METHODS:
        raise ConfigError(f"report.ci_method must be one of {METHODS}, got {r.get('ci_method')!r}")
    if str(r.get("unparseable", "drop")) not in RULES:
        raise ConfigError(
            f"report.unparseable must be one of {RULES}, got {r.get('unparseable')!r}"
        )
    for key in ("min_cots_per_length", "n_examples"):
        if r.get(key) is not None and int(r[key]) < 0:
            raise ConfigError(f"report.{key} must be >= 0, got {r.get(key)}")
    mass = (cfg.get("answer") or {}).get("min_letter_mass")
    if mass is not None and not 0 <= float(mass) <= 1:
        raise ConfigError(f"answer.min_letter_mass must be between 0 and 1, got {mass}")
    every = cfg.get("progress_every")
    if every is not None and float(every) < 0:
        raise ConfigError(f"progress_every must be >= 0 seconds (0: no log lines), got {every}")
    for name, settings in (cfg.get("intervention") or {}).items():
        if not hasattr(settings, "get"):
            raise ConfigError(
                f"intervention.{name} must be the intervention's settings (a mapping), got "
                f"{settings!r}; choose interventions with intervention=[{name},...]"
            )
    share = cfg.get("max_failed_share")
    if share is not None and not 0 <= float(share) <= 1:
        raise ConfigError(f"max_failed_share must be between 0 and 1, got {share}")
    path = (cfg.get("cache") or {}).get("path")
    if path is not None and not str(path).strip():
        raise ConfigError("cache.path is empty; give a file path (default outputs/cache.sqlite)")
