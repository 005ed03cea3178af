"""The request cache: every model call is paid for once.

A small `get(key) / put(key, ...)` over SQLite in WAL mode, in the spirit of HELM's cache. The
key is the content hash of (backend identity, canonical request), see `models.base.request_key`.
Several processes of one multirun share the file safely (WAL + busy timeout); each write is
committed at once so a killed run keeps every response it received. Errors and empty outputs
are never stored (the caller decides; `CachedModel` below enforces it).

Across processes of one machine, identical requests in flight are paid for once: before calling
the backend a process takes a *claim* on the request key (table `claims`: key, holder, expires_at);
another process that needs the same key finds the live claim and polls until the response is
stored or the claim expires (a killed holder stops renewing it), then takes it over; a process
that opens the cache frees at once the claims of this machine's processes that no longer run.
Claims are released on success and on failure (a failure is never stored, so the next one calls
itself).

Across machines, SQLite on a network filesystem is not safe to share: `cache.mode=shard` writes
each job's responses to its own file next to its output (`cache_shard.sqlite`) and reads the
shared cache read-only; `cotfaith-cache merge` folds the shards in afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cotfaith.budget import Budget
from cotfaith.errors import CacheMiss, ConfigError, CotfaithError
from cotfaith.models.base import Model, ModelRequest, ModelResponse, ProbeStore, request_key
from cotfaith.pricing import Price


class CacheError(CotfaithError):
    """The cache file failed under a running experiment (disk full, file lost)."""


def _errorname(e: sqlite3.Error) -> str:
    return str(getattr(e, "sqlite_errorname", "") or "")


_HINT = {
    "SQLITE_FULL": ": the disk is full",
    "SQLITE_READONLY": ": the file or its folder is read-only",
}
for _name in ("SQLITE_IOERR", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"):
    _HINT[_name] = ": the disk may be full or the file lost"


def _not_the_file(e: sqlite3.Error) -> bool:
    """An error of the place (folder, disk), not of the file's content."""
    return _errorname(e).startswith(
        ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PERM")
    )


class CacheMode(str, Enum):  # noqa: UP042 - OmegaConf stores plain Enums
    read_write = "read_write"
    """Serve hits, store misses (default)."""
    replay = "replay"
    """Serve hits; a miss is an error naming the request. No network, no key needed."""
    refresh = "refresh"
    """Ignore stored responses, call the model and overwrite them."""
    off = "off"
    """Neither read nor write the file (within one run identical requests still count once)."""
    shard = "shard"
    """Several machines: write this job's responses to its own shard file next to its output
    (`cache_shard.sqlite`), read the shared cache at `cache.path` read-only; merge the shards
    afterwards with `cotfaith-cache merge`. No lock is shared between machines."""


log = logging.getLogger(__name__)

SHARD_NAME = "cache_shard.sqlite"
"""A shard's file name inside the job's output folder (cache.mode=shard)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    request    TEXT NOT NULL,   -- JSON: {"backend": identity, "request": canonical request}
    response   TEXT NOT NULL,   -- JSON: ModelResponse without the `cached` flag
    created_at REAL NOT NULL,
    cost_usd   REAL             -- what the call cost when it was paid (NULL: unpriced / older)
);
CREATE TABLE IF NOT EXISTS probes (
    key        TEXT PRIMARY KEY,  -- hash of (probe name, backend identity)
    name       TEXT NOT NULL,
    backend    TEXT NOT NULL,     -- JSON identity
    value      TEXT NOT NULL,     -- JSON outcome
    created_at REAL NOT NULL
);
"""
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,  -- request key (or "probe:" + probe key) being computed
    holder     TEXT NOT NULL,     -- host:pid:random of the process computing it
    expires_at REAL NOT NULL      -- unix time; renewed while the call is in flight
);
"""
SCHEMA_VERSION = 2
"""PRAGMA user_version of a migrated file. 0/1: responses + probes; 2: `claims` table and the
`responses.cost_usd` column (added in place: files made before still open, nothing is lost)."""


def migrate(db: sqlite3.Connection) -> None:
    """Bring a cache file to SCHEMA_VERSION in place (idempotent, safe if several processes
    race to do it)."""
    db.executescript(_SCHEMA)
    db.executescript(_CLAIMS)
    columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
    if "cost_usd" not in columns:
        try:
            db.execute("ALTER TABLE responses ADD COLUMN cost_usd REAL")
        except sqlite3.OperationalError as e:  # another process added it first
            if "duplicate column" not in str(e):
                raise
    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (signal 0 checks without sending anything)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process (EPERM): alive
    return True


def default_shard_path(cache_path: Path) -> Path:
    """Where this job's shard goes: next to its output (the Hydra job folder), else beside the
    shared cache, named by host and process."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir) / SHARD_NAME
    except Exception:  # noqa: BLE001 - no Hydra: fall back to a unique name
        pass
    return cache_path.parent / "shards" / f"{socket.gethostname()}-{os.getpid()}.sqlite"


def _connect(path: Path | str, **kw: Any) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False, **kw)


class RequestCache(ProbeStore):
    CLAIM_TTL = 30.0
    """Seconds a claim lives unless renewed; a killed holder blocks the others at most this."""
    POLL_MAX = 0.5
    """Longest pause between two looks for a response another process is computing."""

    def __init__(
        self,
        path: str | Path,
        mode: CacheMode | str = CacheMode.read_write,
        shard: str | Path | None = None,
    ):
        # a corrupt, truncated, read-only, locked or misplaced cache file is one line naming
        # the file, never a traceback
        if Path(path).is_dir():
            raise ConfigError(f"cache.path: {path} is a folder, not a cache file")
        try:
            self._open(path, mode, shard)
        except sqlite3.Error as e:
            if _not_the_file(e):  # the file may be fine: the folder or the disk is not
                raise ConfigError(
                    f"cache.path: cannot open or write {path} ({e}: a read-only folder, a full "
                    "disk or a missing folder); point cache.path at a writable folder"
                ) from e
            raise ConfigError(
                f"cache.path: {path} is not a usable SQLite cache ({e}); move it aside or point "
                "cache.path at another file"
            ) from e
        except IsADirectoryError as e:
            raise ConfigError(f"cache.path: {path} is a folder, not a cache file") from e
        except OSError as e:
            raise ConfigError(f"cache.path: cannot open {path} ({e.strerror})") from e
        if (
            self.mode is CacheMode.read_write
            and self.path.exists()
            and not os.access(self.path, os.W_OK)
        ):
            raise ConfigError(
                f"cache.path: {self.path} is read-only; make it writable, or use "
                "cache.mode=replay to only read it"
            )

    def _open(self, path: str | Path, mode: CacheMode | str, shard: str | Path | None) -> None:
        try:
            self.mode = CacheMode(mode)
        except ValueError as e:
            known = ", ".join(m.value for m in CacheMode)
            raise ConfigError(f"cache.mode: unknown mode {mode!r}; use one of {known}") from e
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._base: sqlite3.Connection | None = None
        """shard mode: the shared cache, read-only."""
        self.shard_path: Path | None = None
        self._memory: dict[str, dict[str, Any]] = {}
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._claimed: set[str] = set()
        self._writes = 0
        if self.mode is CacheMode.off:
            return
        if self.mode is CacheMode.replay and not self.path.exists():
            raise CacheMiss(f"cache.mode=replay but the cache file {self.path} does not exist")
        if self.mode is CacheMode.shard:
            self._open_shard(Path(shard) if shard else default_shard_path(self.path))
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each put is its own durable transaction
        self._db = _connect(self.path)
        self._enable_wal()
        # NORMAL is durable against a killed process in WAL mode (only power loss can drop the
        # last commits), and much faster than FULL.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        # SQLite's automatic checkpoints fsync the database inside a commit, stalling the event
        # loop (and every call in flight) for milliseconds; we checkpoint every
        # CHECKPOINT_EVERY writes and at close instead. Commits stay durable against a kill.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        if self.mode is CacheMode.replay:
            self._db.executescript(_SCHEMA)  # a replay migrates nothing (it never writes)
        else:
            migrate(self._db)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        lacking = sorted({"key", "provider", "model", "request", "response"} - columns)
        if lacking:  # an SQLite file of another program that happens to have the table name
            raise ConfigError(
                f"cache.path: {self.path} is not a cotfaith cache (its responses table has no "
                f"{', '.join(lacking)}); point cache.path at another file"
            )
        if self.shares_claims:
            self._reap_dead_claims()

    def _reap_dead_claims(self) -> None:
        """Free the claims of processes of this machine that no longer run (a killed run), so
        its rerun does not wait CLAIM_TTL for them to expire. Another machine's claims, and a
        live or unknowable process's, are left to expire as before."""
        assert self._db is not None
        host = socket.gethostname()
        holders = [row[0] for row in self._db.execute("SELECT DISTINCT holder FROM claims")]
        for holder in holders:
            their_host, _, rest = holder.partition(":")
            pid = rest.partition(":")[0]
            if their_host == host and pid.isdigit() and not process_alive(int(pid)):
                with self._failing("free a dead run's claims"):
                    self._db.execute("DELETE FROM claims WHERE holder = ?", (holder,))

    def _open_shard(self, shard: Path) -> None:
        """shard mode: our own file, written by this process only (exclusive locking: no shared
        memory, so it is safe on a network filesystem), and the shared cache read-only."""
        self.shard_path = shard
        shard.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(shard)
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db)
        if self.path.exists() and self.path.resolve() != shard.resolve():
            wal = Path(str(self.path) + "-wal")
            if wal.exists() and wal.stat().st_size:
                log.warning(
                    "cache.mode=shard: %s has un-checkpointed writes (%s) that this job will not "
                    "see; close every process writing it first",
                    self.path,
                    wal.name,
                )
            # immutable: no locks, no shared memory; the shared file must not change meanwhile
            self._base = _connect(f"file:{self.path.resolve()}?immutable=1", uri=True)

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
        with self._failing("read a response"):
            row = self._db.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
            if row is None and self._base is not None:
                row = self._base.execute(
                    "SELECT response FROM responses WHERE key = ?", (key,)
                ).fetchone()
        return self._decode(row[0], f"the response {key[:16]}") if row else None

    def _decode(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as e:  # a row written by something else, or damaged
            raise CacheError(
                f"cache.path: {self.path}: {what} is not valid JSON ({e}); the file is damaged: "
                "move it aside or point cache.path at another file"
            ) from e

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """An SQLite error under a running experiment (a full disk, a lost file) as one line
        naming the cache file; the run stops cleanly and keeps its finished records."""
        try:
            yield
        except sqlite3.Error as e:
            raise CacheError(
                f"cache.path: {self.path}: cannot {what} ({e}{_HINT.get(_errorname(e), '')}); "
                "the run stops here, every finished record is kept"
            ) from e

    readonly: bool = False
    """Never write to the file (dry runs peek at what is already paid for); responses are
    kept in memory instead, so repeated requests count once, as they would in a real run."""

    def put(
        self,
        key: str,
        identity: dict[str, Any],
        request: dict[str, Any],
        response: dict[str, Any],
        cost_usd: float | None = None,
    ) -> None:
        """Store a response; `cost_usd` (what the call cost at the prices of the day) is kept
        beside it for `cotfaith-cache stats`, outside the key and the stored response."""
        if self.readonly or self._db is None or self.mode is CacheMode.refresh:
            self._memory[key] = response
        if self.readonly or self._db is None or self.mode is CacheMode.replay:
            return
        # the response is still used for this run's record; the run stops cleanly
        with self._failing("store a response"):
            self._insert(key, identity, request, response, cost_usd)

    def _insert(
        self,
        key: str,
        identity: dict[str, Any],
        request: dict[str, Any],
        response: dict[str, Any],
        cost_usd: float | None,
    ) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO responses "
            "(key, provider, model, request, response, created_at, cost_usd) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                str(identity.get("provider")),
                str(identity.get("model")),
                json.dumps({"backend": identity, "request": request}, ensure_ascii=False),
                json.dumps(response, ensure_ascii=False),
                time.time(),
                cost_usd,
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

    def _read_probe(self, key: str) -> Any | None:
        assert self._db is not None
        row = self._db.execute("SELECT value FROM probes WHERE key = ?", (key,)).fetchone()
        if row is None and self._base is not None:
            row = self._base.execute("SELECT value FROM probes WHERE key = ?", (key,)).fetchone()
        return self._decode(row[0], f"the probe {key[:16]}") if row else None

    def get_probe(self, name: str, identity: dict[str, Any]) -> Any | None:
        if self._db is None or self.mode is CacheMode.refresh:
            return None
        key = self._probe_key(name, identity)
        value = self._read_probe(key)
        if value is not None or not self.shares_claims:
            return value
        # another process probing the same backend right now: wait for its outcome rather than
        # probing again (runs only at start-up, before any call is in flight, so a blocking
        # wait is harmless); None means the probe is ours to make, and put_probe releases it
        delay = 0.01
        while not self.claim("probe:" + key):
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, self.POLL_MAX)
            value = self._read_probe(key)
            if value is not None:
                return value
        value = self._read_probe(key)
        if value is not None:
            self.release("probe:" + key)
        return value

    def put_probe(self, name: str, identity: dict[str, Any], value: Any) -> None:
        if self._db is None or self.mode is CacheMode.replay:
            return
        with self._failing("store a capability probe"):
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
        if self.shares_claims:
            self.release("probe:" + self._probe_key(name, identity))

    # ---- claims: one machine, several processes, each request computed once
    @property
    def shares_claims(self) -> bool:
        """Whether calls are coordinated with other processes through `claims`: a shared file
        read and written (read_write); not in refresh (it ignores what others store), replay,
        off, shard (no lock across machines) or a read-only dry run."""
        return self._db is not None and self.mode is CacheMode.read_write and not self.readonly

    def claim(self, key: str) -> bool:
        """Take the claim on `key` unless another holder has a live one. True: ours now."""
        if self._db is None:
            return True
        now = time.time()
        with self._failing("claim a request"):
            cur = self._db.execute(
                "INSERT INTO claims (key, holder, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at "
                "WHERE claims.holder = excluded.holder OR claims.expires_at < ?",
                (key, self.holder, now + self.CLAIM_TTL, now),
            )
        if cur.rowcount == 1:
            self._claimed.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        self._claimed.discard(key)
        if self._db is not None:
            with self._failing("release a claim"):
                self._db.execute(
                    "DELETE FROM claims WHERE key = ? AND holder = ?", (key, self.holder)
                )

    def renew(self) -> int:
        """Push the expiry of every claim we hold; returns how many we hold."""
        if self._db is not None and self._claimed:
            # only those: one we failed to free (the disk was full) is left to expire
            expires = time.time() + self.CLAIM_TTL
            self._db.executemany(
                "UPDATE claims SET expires_at = ? WHERE key = ? AND holder = ?",
                [(expires, key, self.holder) for key in self._claimed],
            )
        return len(self._claimed)

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
            if self.shares_claims:
                try:  # whatever we still hold (a cancelled run): free it for the others now
                    self._db.execute("DELETE FROM claims WHERE holder = ?", (self.holder,))
                except sqlite3.OperationalError:
                    pass  # they expire anyway
            self._claimed.clear()
            self._checkpoint()
            self._db.close()
            self._db = None
        if self._base is not None:
            self._base.close()
            self._base = None


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
        self._heartbeat: asyncio.Task[None] | None = None

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
        claimed = False
        stopping = False  # an interruption or a failure is on its way out (see finally)
        try:
            if self.cache.shares_claims:
                # another process may be computing the same request: wait for it instead
                shared = await self._claim_or_wait(key)
                if shared is not None:
                    self.stats.cache_hits += 1
                    response = self._priced(ModelResponse.from_dict(shared, cached=True))
                    future.set_result(response)
                    return response, key
                claimed = True
            async with self._slots:
                # reserve only once a slot is ours, so queued calls hold no budget
                estimate = await self.budget.reserve(request, self.price)
                response = await self.model.generate(request)
            self._priced(response)
            cost = response.cost_usd
            if _storable(response):
                self.cache.put(key, self.identity, canonical, response.to_dict(), cost_usd=cost)
            future.set_result(response)
        except asyncio.CancelledError:
            stopping = True
            future.cancel()
            raise
        except Exception as e:
            stopping = True
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        except BaseException:  # a second Ctrl-C: asyncio raises KeyboardInterrupt itself
            stopping = True
            future.cancel()
            raise
        finally:
            if claimed:  # after the put: a waiter that then takes the claim finds the response
                # on the way out of Ctrl-C or a failure, a claim the cache cannot free (the disk
                # just filled) expires by itself within CLAIM_TTL: the first cause is the story
                with contextlib.suppress(CacheError) if stopping else contextlib.nullcontext():
                    self.cache.release(key)
            if estimate is not None:
                self.budget.settle(estimate, cost)
                self.spent += cost or 0.0
            del self._inflight[key]
        return response, key

    async def _claim_or_wait(self, key: str) -> dict[str, Any] | None:
        """Take the claim on `key` (None: the call is ours to make), or, while another process
        holds a live claim, poll with backoff until its response is stored (returned) or the
        claim is released or expires (then it is ours)."""
        delay = 0.01
        while True:
            if self.cache.claim(key):
                # the holder may have stored it and let go between our miss and our claim
                stored = self.cache.get(key)
                if stored is not None:
                    self.cache.release(key)
                    return stored
                self._keep_claims_alive()
                return None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, self.cache.POLL_MAX)
            stored = self.cache.get(key)
            if stored is not None:
                return stored

    def _keep_claims_alive(self) -> None:
        """One task renews all our claims every CLAIM_TTL / 3 while any is held, so a long call
        (or one queued for a slot) keeps its claim and a killed process loses its claims."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.cache.CLAIM_TTL / 3)
                try:
                    if not self.cache.renew():
                        return
                except sqlite3.Error as e:  # a missed renewal costs at most a duplicate call
                    log.debug("cache: renewing claims failed: %s", e)

        self._heartbeat = asyncio.get_running_loop().create_task(beat())

    def _priced(self, response: ModelResponse) -> ModelResponse:
        response.cost_usd = self.price.cost(response.usage) if self.price else None
        return response
