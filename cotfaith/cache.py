"""The request cache: every model call is paid for once.

A small `get(key) / put(key, ...)` over SQLite in WAL mode, in the spirit of HELM's cache. The
key is the content hash of (backend identity, canonical request), see `models.base.request_key`.
Several processes of one multirun share the file safely (WAL + busy timeout); each write is
committed at once so a killed run keeps every response it received. Errors and empty outputs
are never stored (the caller decides; `CachedModel` below enforces it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cotfaith.budget import Budget
from cotfaith.errors import CacheMiss, ConfigError
from cotfaith.models.base import Model, ModelRequest, ModelResponse, ProbeStore, request_key
from cotfaith.pricing import Price


class CacheMode(str, Enum):  # noqa: UP042 - OmegaConf stores plain Enums
    read_write = "read_write"
    """Serve hits, store misses (default)."""
    replay = "replay"
    """Serve hits; a miss is an error naming the request. No network, no key needed."""
    refresh = "refresh"
    """Ignore stored responses, call the model and overwrite them."""
    off = "off"
    """Neither read nor write the file (within one run identical requests still count once)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    request    TEXT NOT NULL,   -- JSON: {"backend": identity, "request": canonical request}
    response   TEXT NOT NULL,   -- JSON: ModelResponse without the `cached` flag
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probes (
    key        TEXT PRIMARY KEY,  -- hash of (probe name, backend identity)
    name       TEXT NOT NULL,
    backend    TEXT NOT NULL,     -- JSON identity
    value      TEXT NOT NULL,     -- JSON outcome
    created_at REAL NOT NULL
);
"""


class RequestCache(ProbeStore):
    def __init__(self, path: str | Path, mode: CacheMode | str = CacheMode.read_write):
        try:
            self.mode = CacheMode(mode)
        except ValueError as e:
            known = ", ".join(m.value for m in CacheMode)
            raise ConfigError(f"cache.mode: unknown mode {mode!r}; use one of {known}") from e
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._memory: dict[str, dict[str, Any]] = {}
        if self.mode is CacheMode.off:
            return
        if self.mode is CacheMode.replay and not self.path.exists():
            raise CacheMiss(f"cache.mode=replay but the cache file {self.path} does not exist")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each put is its own durable transaction
        self._db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._enable_wal()
        # NORMAL is durable against a killed process in WAL mode (only power loss can drop the
        # last commits), and much faster than FULL.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        # SQLite's automatic checkpoints fsync the database inside a commit, stalling the event
        # loop (and every call in flight) for milliseconds; we checkpoint every
        # CHECKPOINT_EVERY writes and at close instead. Commits stay durable against a kill.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._writes = 0
        self._db.executescript(_SCHEMA)

    def _enable_wal(self) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite reports "locked" at
        # once rather than waiting out the busy timeout, so the jobs of a multirun that start
        # together would crash here. Retry with a short backoff instead.
        assert self._db is not None
        for attempt in range(300):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 299:
                    raise
                time.sleep(0.01 * (1 + attempt % 10))

    def get(self, key: str) -> dict[str, Any] | None:
        # responses this run produced are always served again within the run: in refresh and
        # off mode too, an identical request inside one run is not paid for twice
        if key in self._memory:
            return self._memory[key]
        if self._db is None or self.mode is CacheMode.refresh:
            return None
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    readonly: bool = False
    """Never write to the file (dry runs peek at what is already paid for); responses are
    kept in memory instead, so repeated requests count once, as they would in a real run."""

    def put(
        self, key: str, identity: dict[str, Any], request: dict[str, Any], response: dict[str, Any]
    ) -> None:
        if self.readonly or self._db is None or self.mode is CacheMode.refresh:
            self._memory[key] = response
        if self.readonly or self._db is None or self.mode is CacheMode.replay:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                str(identity.get("provider")),
                str(identity.get("model")),
                json.dumps({"backend": identity, "request": request}, ensure_ascii=False),
                json.dumps(response, ensure_ascii=False),
                time.time(),
            ),
        )
        self._writes += 1
        if self._writes % self.CHECKPOINT_EVERY == 0:
            self._checkpoint()  # keeps the WAL file from growing without bound

    # ---- capability probes (ProbeStore): remembered so that a replay decides the same way
    @property
    def replay(self) -> bool:  # type: ignore[override]
        return self.mode is CacheMode.replay

    @staticmethod
    def _probe_key(name: str, identity: dict[str, Any]) -> str:
        payload = json.dumps([name, identity], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def get_probe(self, name: str, identity: dict[str, Any]) -> Any | None:
        if self._db is None or self.mode is CacheMode.refresh:
            return None
        row = self._db.execute(
            "SELECT value FROM probes WHERE key = ?", (self._probe_key(name, identity),)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put_probe(self, name: str, identity: dict[str, Any], value: Any) -> None:
        if self._db is None or self.mode is CacheMode.replay:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?)",
            (
                self._probe_key(name, identity),
                name,
                json.dumps(identity, sort_keys=True),
                json.dumps(value),
                time.time(),
            ),
        )

    def __len__(self) -> int:
        if self._db is None:
            return 0
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    CHECKPOINT_EVERY = 20_000

    def _checkpoint(self) -> None:
        if self._db is not None and self.mode is not CacheMode.replay:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError:
                pass  # another process holds it; its own close will checkpoint

    def close(self) -> None:
        if self._db is not None:
            self._checkpoint()
            self._db.close()
            self._db = None


@dataclass
class CallStats:
    calls: int = 0
    """Requests answered (from the backend or the cache)."""
    cache_hits: int = 0


def _storable(response: ModelResponse) -> bool:
    """Worth keeping: any content, or an empty reply the model ended deliberately by running
    out of tokens (it will be empty again, so re-asking only pays twice). Other empty replies
    are treated like glitches and asked again next time."""
    if response.text or response.top_logprobs:
        return True
    return response.finish_reason in ("length", "max_tokens")


class CachedModel:
    """Routes every call of a backend through the cache, with a cap on calls in flight."""

    def __init__(
        self,
        model: Model,
        cache: RequestCache,
        price: Price | None = None,
        budget: Budget | None = None,
    ):
        self.model = model
        self.cache = cache
        self.identity = model.identity
        self.price = price
        self.budget = budget or Budget(None, price)
        self.stats = CallStats()
        self.spent = 0.0
        """What this client's calls cost this run (a run's roles each have one client)."""
        self._slots = asyncio.Semaphore(max(1, int(model.concurrency)))
        # identical requests in flight at once share one backend call
        self._inflight: dict[str, asyncio.Future[ModelResponse]] = {}

    async def generate(self, request: ModelRequest) -> tuple[ModelResponse, str]:
        canonical = request.to_dict()
        key = request_key(self.identity, canonical)
        self.stats.calls += 1
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return self._priced(ModelResponse.from_dict(hit, cached=True)), key
        if self.cache.mode is CacheMode.replay:
            raise CacheMiss(
                f"replay: the cache {self.cache.path} holds no response for "
                f"{self.identity.get('provider')}/{self.identity.get('model')} request "
                f"{key[:16]} ({request.describe()})"
            )
        pending = self._inflight.get(key)
        if pending is not None:
            self.stats.cache_hits += 1
            response = await asyncio.shield(pending)
            return self._priced(ModelResponse.from_dict(response.to_dict(), cached=True)), key
        future: asyncio.Future[ModelResponse] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        estimate: float | None = None
        cost: float | None = None
        try:
            async with self._slots:
                # reserve only once a slot is ours, so queued calls hold no budget
                estimate = await self.budget.reserve(request, self.price)
                response = await self.model.generate(request)
            self._priced(response)
            cost = response.cost_usd
            if _storable(response):
                self.cache.put(key, self.identity, canonical, response.to_dict())
            future.set_result(response)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            if estimate is not None:
                self.budget.settle(estimate, cost)
                self.spent += cost or 0.0
            del self._inflight[key]
        return response, key

    def _priced(self, response: ModelResponse) -> ModelResponse:
        response.cost_usd = self.price.cost(response.usage) if self.price else None
        return response
