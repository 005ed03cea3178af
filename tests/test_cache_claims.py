"""Claims: identical requests in flight in several processes of one machine are paid once.

Unit tests drive two RequestCache objects on one file (two holders, as two processes would be);
the end-to-end test starts four `cotfaith` processes together on one cache against a loopback
OpenAI server and counts what the server answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from cotfaith.cache import SCHEMA_VERSION, CachedModel, CacheError, CacheMode, RequestCache
from cotfaith.models.base import ModelResponse, request_key
from cotfaith.pricing import Price
from tests.fakeapi import ServerThread, make_openai_app
from tests.test_cache import CountingBackend, req, rows


def test_a_live_claim_is_exclusive_until_released(tmp_path):
    path = tmp_path / "c.sqlite"
    a, b = RequestCache(path), RequestCache(path)
    assert a.holder != b.holder
    assert a.claim("k") is True
    assert a.claim("k") is True  # our own claim: taken again
    assert b.claim("k") is False
    a.release("k")
    assert b.claim("k") is True
    a.close()
    b.close()


def test_an_expired_claim_is_taken_over(tmp_path):
    path = tmp_path / "c.sqlite"
    a, b = RequestCache(path), RequestCache(path)
    a.CLAIM_TTL = 0.2
    assert a.claim("k") and not b.claim("k")
    time.sleep(0.3)
    assert b.claim("k")  # the holder stopped renewing it (killed)
    assert not a.claim("k")
    a.close()
    b.close()


def test_a_waiter_gets_the_other_processes_response_without_calling(tmp_path):
    path = tmp_path / "c.sqlite"
    other, mine = RequestCache(path), RequestCache(path)
    backend = CountingBackend()
    r = req("shared question")
    key = request_key(backend.identity, r)
    assert other.claim(key)

    async def main():
        task = asyncio.create_task(CachedModel(backend, mine).generate(r))
        await asyncio.sleep(0.3)
        assert not task.done()  # waiting for the holder, not calling
        other.put(key, backend.identity, r.to_dict(), ModelResponse(text="from other").to_dict())
        other.release(key)
        return await asyncio.wait_for(task, 10)

    response, _ = asyncio.run(main())
    assert response.text == "from other" and response.cached is True
    assert backend.calls == 0
    other.close()
    mine.close()


def test_a_killed_holders_claim_expires_and_the_waiter_calls(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    backend = CountingBackend()
    r = req("orphaned")
    key = request_key(backend.identity, r)
    # a holder that died mid-call: its claim lives another half second, then nobody renews it
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO claims VALUES (?, 'deadhost:1:x', ?)", (key, time.time() + 0.5))
    started = time.monotonic()
    response, _ = asyncio.run(CachedModel(backend, cache).generate(r))
    waited = time.monotonic() - started
    assert backend.calls == 1 and response.cached is False
    assert 0.4 < waited < 5
    assert len(cache) == 1
    cache.close()


def test_a_rerun_frees_at_once_the_claims_of_a_run_killed_on_this_machine(tmp_path):
    """A SIGKILLed run leaves live claims; the rerun on the same machine must not wait
    CLAIM_TTL for them. Claims of a live process, or of another machine, stay."""
    import socket

    path = tmp_path / "c.sqlite"
    RequestCache(path).close()  # the schema
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    later = time.time() + 3600
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO claims VALUES (?, ?, ?)",
            [
                ("k-dead", f"{host}:{dead.pid}:a", later),
                ("k-live", f"{host}:{os.getppid()}:b", later),
                ("k-away", f"otherhost:{dead.pid}:c", later),
            ],
        )
    cache = RequestCache(path)
    assert sorted(k for k, _ in _claims(path)) == ["k-away", "k-live"]
    assert cache.claim("k-dead") and not cache.claim("k-live") and not cache.claim("k-away")
    cache.close()


def _claims(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, holder FROM claims").fetchall()


def test_claims_are_released_on_success_and_on_failure(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    asyncio.run(CachedModel(CountingBackend(), cache).generate(req("fine")))
    assert _claims(path) == []
    with pytest.raises(RuntimeError):
        asyncio.run(CachedModel(CountingBackend(fail=True), cache).generate(req("boom")))
    assert _claims(path) == []
    assert len(cache) == 1  # the failure is not stored
    cache.close()


def test_a_failed_holder_lets_the_waiter_try_itself(tmp_path):
    path = tmp_path / "c.sqlite"
    holder_cache, waiter_cache = RequestCache(path), RequestCache(path)
    failing = CountingBackend(fail=True, latency=0.3)
    working = CountingBackend()

    async def main():
        first = asyncio.create_task(CachedModel(failing, holder_cache).generate(req("x")))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(CachedModel(working, waiter_cache).generate(req("x")))
        results = await asyncio.gather(first, second, return_exceptions=True)
        return results

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError)
    response, _ = second
    assert working.calls == 1 and failing.calls == 1 and response.cached is False
    holder_cache.close()
    waiter_cache.close()


def test_long_calls_keep_their_claim_alive(tmp_path):
    path = tmp_path / "c.sqlite"
    holder_cache, waiter_cache = RequestCache(path), RequestCache(path)
    holder_cache.CLAIM_TTL = 0.3  # renewed every 0.1 s while the 1 s call runs
    slow, eager = CountingBackend(latency=1.0), CountingBackend()

    async def main():
        first = asyncio.create_task(CachedModel(slow, holder_cache).generate(req("long")))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(CachedModel(eager, waiter_cache).generate(req("long")))
        return await asyncio.gather(first, second)

    (_, _), (waited, _) = asyncio.run(main())
    assert slow.calls == 1 and eager.calls == 0 and waited.cached is True
    holder_cache.close()
    waiter_cache.close()


def test_no_claims_outside_read_write(tmp_path):
    path = tmp_path / "c.sqlite"
    RequestCache(path).close()
    for mode in (CacheMode.refresh, CacheMode.replay, CacheMode.off):
        cache = RequestCache(path, mode)
        assert not cache.shares_claims
        cache.close()
    dry = RequestCache(path)
    dry.readonly = True
    assert not dry.shares_claims
    dry.close()


# ------------------------------------------------------------------ schema and cost


def _old_cache(path) -> None:
    """A cache file as the first version wrote it: no claims table, no cost column."""
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE responses (key TEXT PRIMARY KEY, provider TEXT NOT NULL,
              model TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,
              created_at REAL NOT NULL);
            CREATE TABLE probes (key TEXT PRIMARY KEY, name TEXT NOT NULL, backend TEXT NOT NULL,
              value TEXT NOT NULL, created_at REAL NOT NULL);
            """
        )
        backend = CountingBackend()
        r = req("old")
        db.execute(
            "INSERT INTO responses VALUES (?, 'fake', 'fake-1', ?, ?, 1.0)",
            (
                request_key(backend.identity, r),
                json.dumps({"backend": backend.identity, "request": r.to_dict()}),
                json.dumps(ModelResponse(text="old answer").to_dict()),
            ),
        )


def test_old_cache_files_open_and_are_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_cache(path)
    replay = RequestCache(path, "replay")  # a replay migrates nothing
    backend = CountingBackend()
    hit, _ = asyncio.run(CachedModel(backend, replay).generate(req("old")))
    replay.close()
    assert hit.text == "old answer"
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(responses)")}
    assert "claims" not in tables and "cost_usd" not in columns

    cache = RequestCache(path)
    hit, _ = asyncio.run(CachedModel(backend, cache).generate(req("old")))
    asyncio.run(CachedModel(backend, cache).generate(req("new")))
    cache.close()
    assert hit.text == "old answer" and backend.calls == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        got = dict(db.execute("SELECT json_extract(response, '$.text'), cost_usd FROM responses"))
    assert set(got) == {"old answer", "echo[0]:new"}
    assert got["old answer"] is None  # unknown, not invented


def test_cost_is_stored_beside_the_response_and_the_key_is_unchanged(tmp_path):
    class Priced(CountingBackend):
        async def generate(self, request):
            response = await super().generate(request)
            response.usage.input_tokens, response.usage.output_tokens = 1000, 500
            return response

    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    backend = Priced()
    price = Price(input=2.0, output=10.0)
    response, key = asyncio.run(CachedModel(backend, cache, price).generate(req("pay")))
    cache.close()
    assert key == request_key(backend.identity, req("pay"))
    with sqlite3.connect(path) as db:
        stored_key, cost, text = db.execute(
            "SELECT key, cost_usd, response FROM responses"
        ).fetchone()
    assert stored_key == key
    assert cost == pytest.approx(response.cost_usd) == pytest.approx(0.002 + 0.005)
    assert "cost" not in json.loads(text)  # the stored response itself is unchanged
    assert rows(path)[0][0] == key


# ------------------------------------------------------------------ four processes, one server

KEY = "sk-test-claims-0123456789"


@pytest.mark.slow
def test_four_processes_on_one_cache_pay_each_request_once(tmp_path):
    with ServerThread(make_openai_app(key=KEY, models=("fake-gpt",), latency=0.05)) as srv:
        args = [
            "progress=false",
            "task.n_questions=6",
            "sampling.n_samples=2",
            "report.n_bootstrap=20",
            "model=openai",
            f"model.base_url={srv.base_url}",
            "model.name=fake-gpt",
            "model.api_key_env=OPENAI_API_KEY",
            "model.retry_initial=0.01",
            "model.concurrency=4",
            "cache.path=shared.sqlite",
        ]
        env = {**os.environ, "OPENAI_API_KEY": KEY, "HYDRA_FULL_ERROR": "0"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "cotfaith", *args, f"hydra.run.dir=run{i}"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        stats = srv.stats()
    # every run finished its calls (run.json is written once they are done, before the report)
    for i in range(4):
        run_json = tmp_path / f"run{i}" / "run.json"
        assert run_json.is_file(), errors[i]
        assert "stopped_by" not in json.loads(run_json.read_text()), errors[i]
    completed = stats["completed_keys"]
    repeats = {k: n for k, n in completed.items() if n > 1}
    assert completed and not repeats, f"{len(repeats)} requests paid more than once"
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    # every distinct request was paid by exactly one of the four, all are stored
    runs = [json.loads((tmp_path / f"run{i}" / "run.json").read_text()) for i in range(4)]
    paid = sum(r["calls"] - r["cache_hits"] for r in runs)
    assert paid == stored
    records = [(tmp_path / f"run{i}" / "records.jsonl").read_text().count("\n") for i in range(4)]
    assert len(set(records)) == 1


def test_a_claim_the_cache_cannot_free_does_not_hide_an_interruption(tmp_path):
    """Ctrl-C (a cancelled call) while another connection holds the file's write lock: freeing
    the claim fails, and the interruption still comes out (exit 130), not the cache's error
    (exit 2); the claim expires by itself."""
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    slow = CountingBackend(latency=5.0)

    async def started() -> None:
        while slow.calls == 0:
            await asyncio.sleep(0.01)

    async def main():
        call = asyncio.create_task(CachedModel(slow, cache).generate(req("x")))
        await asyncio.wait_for(started(), 10)  # claimed, and the call is on its way
        assert _claims(path)
        cache._db.execute("PRAGMA busy_timeout = 50")  # (a locked file fails fast, not in 30 s)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(CacheError):  # the lock is real: a release fails now
                cache.release("another")
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    asyncio.run(main())
    assert _claims(path)  # not freed: it expires, as it is no longer renewed
    before = _expiry(path)
    cache.claim("held")
    cache.renew()
    assert _expiry(path) == before
    cache.close()


def _expiry(path) -> float:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT expires_at FROM claims WHERE key != 'held'").fetchone()[0]
