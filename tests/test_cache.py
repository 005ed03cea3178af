"""Tests for the SQLite request cache (`cotfaith.cache`) and the request key.

The backend is a small counting fake (a test double for the *backend*); the cache, the key and
SQLite are real. Cross-process safety is checked with real 'spawn' processes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cotfaith.cache import CachedModel, CacheMode, RequestCache
from cotfaith.errors import CacheMiss, ConfigError
from cotfaith.models.base import Message, Model, ModelRequest, ModelResponse, request_key


class BackendError(RuntimeError):
    pass


class CountingBackend(Model):
    """Echoes the last turn; counts calls; can fail, return nothing, or be slow."""

    def __init__(
        self,
        name: str = "fake-1",
        base_url: str | None = "http://a.example/v1",
        knob: float = 0.5,
        *,
        fail: bool = False,
        empty: bool = False,
        latency: float = 0.0,
        tag: str = "",
    ):
        self.name = name
        self.base_url = base_url
        self.knob = knob
        self.fail = fail
        self.empty = empty
        self.latency = latency
        self.tag = tag  # lets a test tell two "versions" of the backend's output apart
        self.calls = 0
        self.concurrency = 8

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "provider": "fake",
            "model": self.name,
            "base_url": self.base_url,
            "knob": self.knob,
        }

    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail:
            raise BackendError("backend exploded")
        if self.empty:
            return ModelResponse(text="", top_logprobs=None, finish_reason="stop")
        last = request.messages[-1].content
        return ModelResponse(
            text=f"{self.tag}echo[{request.sample_index}]:{last}", finish_reason="stop"
        )


def req(text: str = "What is 2 + 2?", **kw: Any) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), **kw)


def run(coro):
    return asyncio.run(coro)


def rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        sql = "SELECT key, provider, model, request, response FROM responses ORDER BY key"
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- read_write


def test_read_write_miss_computes_and_stores_then_hit_is_served(tmp_path):
    path = tmp_path / "cache.sqlite"
    backend = CountingBackend()
    cm = CachedModel(backend, RequestCache(path))
    r = req("hello there")

    first, key1 = run(cm.generate(r))
    assert first.text == "echo[0]:hello there"
    assert first.cached is False
    assert backend.calls == 1
    assert len(cm.cache) == 1

    second, key2 = run(cm.generate(r))
    assert second.cached is True
    assert second.text == first.text
    assert second.finish_reason == "stop"
    assert backend.calls == 1, "a hit must not call the backend again"
    assert key1 == key2 == request_key(backend.identity, r)
    assert cm.stats.calls == 2 and cm.stats.cache_hits == 1
    cm.cache.close()


def test_hit_survives_reopening_the_file(tmp_path):
    path = tmp_path / "sub" / "dir" / "cache.sqlite"  # parent folders are created
    b1 = CountingBackend()
    c1 = RequestCache(path)
    run(CachedModel(b1, c1).generate(req("persist me")))
    c1.close()

    b2 = CountingBackend()
    c2 = RequestCache(path)
    resp, _ = run(CachedModel(b2, c2).generate(req("persist me")))
    assert resp.cached is True and resp.text == "echo[0]:persist me"
    assert b2.calls == 0
    c2.close()


def test_file_is_in_wal_mode(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    cache.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        con.close()


def test_stored_row_has_readable_json_columns(tmp_path):
    path = tmp_path / "cache.sqlite"
    backend = CountingBackend(name="fake-json")
    cache = RequestCache(path)
    r = req(
        "Grüße, 東京",
        temperature=0.8,
        top_p=0.95,
        max_tokens=7,
        sample_index=3,
        prefill="Let's think",
    )
    resp, key = run(CachedModel(backend, cache).generate(r))
    cache.close()

    (row,) = rows(path)
    k, provider, model, request_json, response_json = row
    assert k == key
    assert (provider, model) == ("fake", "fake-json")
    stored_req = json.loads(request_json)
    assert stored_req["backend"] == backend.identity
    assert stored_req["request"]["messages"] == [{"role": "user", "content": "Grüße, 東京"}]
    assert stored_req["request"]["temperature"] == 0.8
    assert stored_req["request"]["sample_index"] == 3
    assert ModelRequest.from_dict(stored_req["request"]) == r
    assert "東京" in request_json, "JSON should be human-readable (not \\u-escaped)"
    stored_resp = json.loads(response_json)
    assert stored_resp["text"] == resp.text
    assert "cached" not in stored_resp


# --------------------------------------------------------------------------- replay


def _fill(path: Path, *requests: ModelRequest) -> CountingBackend:
    backend = CountingBackend()
    cache = RequestCache(path)
    cm = CachedModel(backend, cache)
    for r in requests:
        run(cm.generate(r))
    cache.close()
    return backend


def test_replay_serves_hits(tmp_path):
    path = tmp_path / "cache.sqlite"
    _fill(path, req("stored"))
    backend = CountingBackend()
    cache = RequestCache(path, "replay")
    resp, _ = run(CachedModel(backend, cache).generate(req("stored")))
    assert resp.cached is True and resp.text == "echo[0]:stored"
    assert backend.calls == 0
    cache.close()


def test_replay_miss_raises_naming_the_request(tmp_path):
    path = tmp_path / "cache.sqlite"
    _fill(path, req("stored"))
    backend = CountingBackend(name="fake-replay")
    cache = RequestCache(path, CacheMode.replay)
    missing = req("How many marbles does Maya have now?", sample_index=4)
    with pytest.raises(CacheMiss) as ei:
        run(CachedModel(backend, cache).generate(missing))
    msg = str(ei.value)
    assert "fake/fake-replay" in msg
    assert request_key(backend.identity, missing)[:16] in msg
    assert "How many marbles" in msg
    assert backend.calls == 0, "replay must never call the backend"
    cache.close()


def test_replay_on_missing_file_raises_naming_the_path(tmp_path):
    path = tmp_path / "nope" / "cache.sqlite"
    with pytest.raises(CacheMiss) as ei:
        RequestCache(path, "replay")
    assert str(path) in str(ei.value)
    assert not path.exists()
    assert not path.parent.exists()


def test_replay_never_writes(tmp_path):
    path = tmp_path / "cache.sqlite"
    _fill(path, req("stored"))
    before_rows = rows(path)
    before_bytes = path.read_bytes()

    cache = RequestCache(path, "replay")
    cm = CachedModel(CountingBackend(), cache)
    run(cm.generate(req("stored")))
    with pytest.raises(CacheMiss):
        run(cm.generate(req("not stored")))
    # a direct put is ignored too
    cache.put(
        "k" * 64,
        {"provider": "x", "model": "y"},
        req("x").to_dict(),
        ModelResponse(text="zzz").to_dict(),
    )
    assert len(cache) == 1
    cache.close()

    assert rows(path) == before_rows
    assert path.read_bytes() == before_bytes


# --------------------------------------------------------------------------- refresh


def test_refresh_ignores_stored_value_calls_backend_and_overwrites(tmp_path):
    path = tmp_path / "cache.sqlite"
    r = req("refresh me")
    old = CountingBackend(tag="v1:")
    c = RequestCache(path)
    run(CachedModel(old, c).generate(r))
    c.close()

    new = CountingBackend(tag="v2:")
    c = RequestCache(path, "refresh")
    refreshing = CachedModel(new, c)
    resp, key = run(refreshing.generate(r))
    assert new.calls == 1
    assert resp.cached is False
    # within the refreshing run, the same request is refreshed once, not paid for again
    again, _ = run(refreshing.generate(r))
    assert new.calls == 1 and again.cached is True
    assert resp.text == "v2:echo[0]:refresh me"
    assert len(c) == 1
    c.close()

    (row,) = rows(path)
    assert row[0] == key
    assert json.loads(row[4])["text"] == "v2:echo[0]:refresh me"

    # and a later read_write run is served the refreshed value
    later = CountingBackend(tag="v3:")
    c = RequestCache(path)
    resp, _ = run(CachedModel(later, c).generate(r))
    assert resp.cached is True and resp.text == "v2:echo[0]:refresh me"
    assert later.calls == 0
    c.close()


# --------------------------------------------------------------------------- off


def test_off_persists_nothing_and_creates_no_file(tmp_path):
    path = tmp_path / "cache.sqlite"
    backend = CountingBackend()
    cache = RequestCache(path, "off")
    cm = CachedModel(backend, cache)
    a, _ = run(cm.generate(req("x")))
    b, _ = run(cm.generate(req("x")))
    # within one run an identical request is still paid for once...
    assert backend.calls == 1
    assert a.cached is False and b.cached is True
    assert len(cache) == 0
    assert not path.exists()
    # ...but nothing outlives the run
    again = CachedModel(backend, RequestCache(path, "off"))
    c, _ = run(again.generate(req("x")))
    assert backend.calls == 2 and c.cached is False
    assert list(tmp_path.iterdir()) == []


def test_off_does_not_read_an_existing_file(tmp_path):
    path = tmp_path / "cache.sqlite"
    _fill(path, req("stored"))
    backend = CountingBackend()
    resp, _ = run(CachedModel(backend, RequestCache(path, "off")).generate(req("stored")))
    assert backend.calls == 1 and resp.cached is False


def test_unknown_mode_raises_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as ei:
        RequestCache(tmp_path / "c.sqlite", "readwrite")
    msg = str(ei.value)
    assert "cache.mode" in msg and "readwrite" in msg
    assert not (tmp_path / "c.sqlite").exists()


# --------------------------------------------------------------------------- what is stored


def test_backend_errors_propagate_and_are_not_cached(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    failing = CountingBackend(fail=True)
    with pytest.raises(BackendError, match="exploded"):
        run(CachedModel(failing, cache).generate(req("boom")))
    assert len(cache) == 0

    ok = CountingBackend()
    resp, _ = run(CachedModel(ok, cache).generate(req("boom")))
    assert ok.calls == 1 and resp.cached is False
    assert len(cache) == 1
    cache.close()


def test_empty_outputs_are_not_cached(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    empty = CountingBackend(empty=True)
    cm = CachedModel(empty, cache)
    r1, _ = run(cm.generate(req("silence")))
    r2, _ = run(cm.generate(req("silence")))
    assert r1.text == "" and r2.text == ""
    assert r2.cached is False
    assert empty.calls == 2, "an empty output must be asked for again"
    assert len(cache) == 0
    cache.close()


class OutOfTokens(CountingBackend):
    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return ModelResponse(text="", finish_reason="length")


def test_an_empty_reply_cut_by_max_tokens_is_kept(tmp_path):
    # e.g. a reasoning model that spends max_tokens=1 thinking: it will be empty again, so
    # asking again would only pay twice, and a replay must be able to reproduce it
    cache = RequestCache(tmp_path / "cache.sqlite")
    backend = OutOfTokens()
    run(CachedModel(backend, cache).generate(req("think")))
    again, _ = run(CachedModel(backend, cache).generate(req("think")))
    assert backend.calls == 1 and again.cached is True and again.finish_reason == "length"
    cache.close()


def test_logprobs_only_output_is_cached(tmp_path):
    class LogprobsOnly(CountingBackend):
        async def generate(self, request):
            self.calls += 1
            return ModelResponse(text="", top_logprobs={"A": -0.1, "B": -2.5})

    cache = RequestCache(tmp_path / "cache.sqlite")
    backend = LogprobsOnly()
    cm = CachedModel(backend, cache)
    run(cm.generate(req("q")))
    resp, _ = run(cm.generate(req("q")))
    assert backend.calls == 1
    assert resp.cached and resp.top_logprobs == {"A": -0.1, "B": -2.5}
    cache.close()


# --------------------------------------------------------------------------- the key

BASE = ModelRequest(
    messages=(Message("system", "Be brief."), Message("user", "Question: 1+1?")),
    prefill="Let's think step by step:",
    temperature=0.8,
    top_p=0.95,
    max_tokens=256,
    sample_index=0,
)
BASE_ID = {"provider": "fake", "model": "m-1", "base_url": "http://a.example/v1", "knob": 0.5}

REQUEST_VARIANTS = {
    "messages": replace(
        BASE, messages=(Message("system", "Be brief."), Message("user", "Question: 1+2?"))
    ),
    "role": replace(
        BASE, messages=(Message("user", "Be brief."), Message("user", "Question: 1+1?"))
    ),
    "prefill": replace(BASE, prefill="Let's think:"),
    "no_prefill": replace(BASE, prefill=None),
    "temperature": replace(BASE, temperature=0.7),
    "top_p": replace(BASE, top_p=1.0),
    "max_tokens": replace(BASE, max_tokens=257),
    "sample_index": replace(BASE, sample_index=1),
    "stop": replace(BASE, stop=("\n",)),
    "top_logprobs": replace(BASE, top_logprobs=5),
}
IDENTITY_VARIANTS = {
    "model": {**BASE_ID, "model": "m-2"},
    "base_url": {**BASE_ID, "base_url": "http://b.example/v1"},
    "knob": {**BASE_ID, "knob": 0.6},
    "provider": {**BASE_ID, "provider": "other"},
}


def test_key_is_stable_and_hex():
    k = request_key(BASE_ID, BASE)
    assert k == request_key(dict(reversed(list(BASE_ID.items()))), replace(BASE))
    assert len(k) == 64 and int(k, 16) >= 0


@pytest.mark.parametrize("field", sorted(REQUEST_VARIANTS))
def test_key_changes_with_every_request_field_that_changes_output(field):
    assert request_key(BASE_ID, REQUEST_VARIANTS[field]) != request_key(BASE_ID, BASE)


@pytest.mark.parametrize("field", sorted(IDENTITY_VARIANTS))
def test_key_changes_with_backend_identity(field):
    assert request_key(IDENTITY_VARIANTS[field], BASE) != request_key(BASE_ID, BASE)


def test_all_key_variants_are_pairwise_distinct():
    keys = [request_key(BASE_ID, BASE)]
    keys += [request_key(BASE_ID, r) for r in REQUEST_VARIANTS.values()]
    keys += [request_key(i, BASE) for i in IDENTITY_VARIANTS.values()]
    assert len(set(keys)) == len(keys)


def test_key_excludes_concurrency_of_the_backend(tmp_path):
    """Concurrency does not change outputs: two backends differing only in it share entries."""
    cache = RequestCache(tmp_path / "cache.sqlite")
    a = CountingBackend()
    a.concurrency = 1
    b = CountingBackend()
    b.concurrency = 32
    run(CachedModel(a, cache).generate(req("shared")))
    resp, _ = run(CachedModel(b, cache).generate(req("shared")))
    assert resp.cached and b.calls == 0
    cache.close()


def test_different_models_do_not_share_entries(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    a = CountingBackend(name="m-a")
    b = CountingBackend(name="m-b")
    run(CachedModel(a, cache).generate(req("same prompt")))
    resp, _ = run(CachedModel(b, cache).generate(req("same prompt")))
    assert b.calls == 1 and resp.cached is False
    assert len(cache) == 2
    cache.close()


# --------------------------------------------------------------------------- concurrency


def test_identical_concurrent_requests_call_the_backend_once(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    backend = CountingBackend(latency=0.05)
    cm = CachedModel(backend, cache)

    async def main():
        return await asyncio.gather(
            *(cm.generate(req("same")) for _ in range(10)), cm.generate(req("other"))
        )

    results = run(main())
    assert backend.calls == 2
    texts = [r.text for r, _ in results]
    assert texts[:10] == ["echo[0]:same"] * 10
    assert texts[10] == "echo[0]:other"
    assert sum(not r.cached for r, _ in results[:10]) == 1
    assert len(cache) == 2
    cache.close()


def test_concurrent_identical_requests_all_see_a_backend_error(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    backend = CountingBackend(latency=0.02, fail=True)
    cm = CachedModel(backend, cache)

    async def main():
        return await asyncio.gather(
            *(cm.generate(req("same")) for _ in range(4)), return_exceptions=True
        )

    results = run(main())
    assert backend.calls == 1
    assert all(isinstance(r, BackendError) for r in results)
    assert len(cache) == 0
    cache.close()


N_PROCS = 3
PUTS = 200
STRIDE = 100  # process i writes keys [i*STRIDE, i*STRIDE + PUTS): neighbours overlap by 100


def _writer(path: str, index: int, barrier) -> None:
    # runs in a fresh 'spawn' process
    try:
        barrier.wait(timeout=60)
        cache = RequestCache(path)
        for j in range(index * STRIDE, index * STRIDE + PUTS):
            key = f"key-{j:05d}"
            cache.put(
                key,
                {"provider": "fake", "model": "m"},
                req(f"prompt {j}").to_dict(),
                ModelResponse(text=f"from {index}: {j}").to_dict(),
            )
        cache.close()
    except Exception as e:  # report the error text through the exit status
        sys.exit(f"{type(e).__name__}: {e}")


def _run_procs(target, args_for) -> list[int | None]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    procs = [ctx.Process(target=target, args=(*args_for(i), barrier)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    return [p.exitcode for p in procs]


def test_several_processes_write_one_file_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    # The file exists already (the first job of a multirun created it); concurrent *creation*
    # of a new file is covered separately below.
    RequestCache(path).close()
    codes = _run_procs(_writer, lambda i: (str(path), i))
    assert codes == [0] * N_PROCS, f"writer processes failed (exit codes {codes}, see stderr)"

    expected = {f"key-{j:05d}" for j in range((N_PROCS - 1) * STRIDE + PUTS)}
    got = rows(path)
    assert {r[0] for r in got} == expected
    assert len(got) == len(expected)
    for key, _, _, _, response in got:
        j = int(key.split("-")[1])
        assert json.loads(response)["text"].endswith(f": {j}")


OPEN_ROUNDS = 150


def _opener(folder: str, barrier) -> None:
    # every round, all processes open the same brand-new cache file at the same instant
    errors = []
    for r in range(OPEN_ROUNDS):
        barrier.wait(timeout=60)
        try:
            RequestCache(Path(folder) / f"c{r}.sqlite").close()
        except Exception as e:
            errors.append(f"round {r}: {type(e).__name__}: {e}")
    if errors:
        sys.exit(f"{len(errors)} failed opens, first: {errors[0]}")


def test_several_processes_create_one_new_file_at_once(tmp_path):
    codes = _run_procs(_opener, lambda i: (str(tmp_path),))
    assert codes == [0] * N_PROCS, f"opening processes failed (exit codes {codes}, see stderr)"
