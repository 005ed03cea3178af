"""cache.mode=shard: several "nodes" write their own shard files at once, sharing no lock; the
shared cache is only read; `cotfaith-cache merge` folds the shards in, and a replay of the merged
cache finds everything."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cotfaith.cache import SHARD_NAME, CacheMode, RequestCache
from cotfaith.cache_cli import merge
from cotfaith.models.base import ModelResponse
from tests.helpers import comparable, load_records, run_cli
from tests.test_cache import req

ID = {"provider": "fake", "model": "m"}
PUTS = 150
STRIDE = 100  # node i writes keys [i*STRIDE, i*STRIDE + PUTS): the two nodes overlap by 50


def _node(shared: str, shard: str, index: int, barrier) -> None:
    try:
        cache = RequestCache(shared, CacheMode.shard, shard=shard)
        assert cache.get("base-0") is not None, "the shared cache is readable"
        barrier.wait(timeout=60)
        for j in range(index * STRIDE, index * STRIDE + PUTS):
            cache.put(
                f"key-{j:05d}", ID, req(f"p {j}").to_dict(), ModelResponse(text=f"{j}").to_dict()
            )
        cache.close()
    except Exception as e:  # noqa: BLE001
        sys.exit(f"{type(e).__name__}: {e}")


def test_two_nodes_write_shards_at_once_then_merge_loses_and_duplicates_nothing(tmp_path):
    shared = tmp_path / "shared.sqlite"
    base = RequestCache(shared)
    for j in range(3):
        base.put(f"base-{j}", ID, req(f"b {j}").to_dict(), ModelResponse(text=f"b{j}").to_dict())
    base.close()
    before = shared.read_bytes()
    shards = [tmp_path / f"node{i}" / SHARD_NAME for i in range(2)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_node, args=(str(shared), str(shards[i]), i, barrier)) for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert shared.read_bytes() == before, "a shard job never writes the shared cache"
    for i, shard in enumerate(shards):
        with sqlite3.connect(shard) as db:
            assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == PUTS, i

    lines = merge(shards, shared)
    assert "50 already held" in lines[1]  # the overlap is not stored twice
    expected = {f"base-{j}" for j in range(3)} | {f"key-{j:05d}" for j in range(STRIDE + PUTS)}
    with sqlite3.connect(shared) as db:
        got = db.execute("SELECT key, json_extract(response, '$.text') FROM responses").fetchall()
    assert len(got) == len(expected) and {k for k, _ in got} == expected
    for key, text in got:
        kind, j = key.split("-")
        assert text == (f"b{j}" if kind == "base" else str(int(j)))
    # merging again adds nothing
    assert "0 new" in merge(shards, shared)[0]
    replay = RequestCache(shared, CacheMode.replay)
    assert all(replay.get(k) is not None for k in expected)
    replay.close()


def test_a_shard_reads_the_shared_cache_but_writes_its_own_file(tmp_path):
    shared = tmp_path / "shared.sqlite"
    c = RequestCache(shared)
    c.put("a", ID, req("a").to_dict(), ModelResponse(text="A").to_dict())
    c.put_probe("logprobs", ID, True)
    c.close()
    shard = tmp_path / "job" / SHARD_NAME
    s = RequestCache(shared, "shard", shard=shard)
    assert s.get("a") == ModelResponse(text="A").to_dict()
    assert s.get_probe("logprobs", ID) is True
    assert not s.shares_claims
    s.put("b", ID, req("b").to_dict(), ModelResponse(text="B").to_dict())
    s.close()
    with sqlite3.connect(shared) as db:
        assert [r[0] for r in db.execute("SELECT key FROM responses")] == ["a"]
    with sqlite3.connect(shard) as db:
        assert [r[0] for r in db.execute("SELECT key FROM responses")] == ["b"]


def test_shard_mode_without_a_shared_cache_starts_empty(tmp_path):
    s = RequestCache(tmp_path / "none.sqlite", "shard", shard=tmp_path / "s.sqlite")
    assert s.get("x") is None
    s.close()
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.slow
def test_two_shard_jobs_at_once_merge_and_replay(tmp_path):
    common = ("sampling.n_samples=2", "report.n_bootstrap=20", "cache.path=shared.sqlite")
    run_cli(tmp_path, "task.n_questions=3", *common, "hydra.run.dir=seed")  # the shared cache
    jobs = {"a": "task.n_questions=6", "b": "task.n_questions=8"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cotfaith",
                "progress=false",
                size,
                *common,
                "cache.mode=shard",
                f"hydra.run.dir={name}",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, size in jobs.items()
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    shards = [tmp_path / name / SHARD_NAME for name in jobs]
    keys: set[str] = set()
    for name, shard in zip(jobs, shards, strict=True):
        run = json.loads((tmp_path / name / "run.json").read_text())
        assert run["cache_hits"] > 0  # served from the shared cache
        with sqlite3.connect(shard) as db:
            keys |= {r[0] for r in db.execute("SELECT key FROM responses")}
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        base = {r[0] for r in db.execute("SELECT key FROM responses")}
    assert not keys & base  # shards hold only what the shared cache lacked
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.cache_cli", "merge", *map(str, shards), "--into"]
        + ["shared.sqlite"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        merged = [r[0] for r in db.execute("SELECT key FROM responses")]
    assert len(merged) == len(set(merged)) == len(base | keys)
    for name, size in jobs.items():
        run_cli(tmp_path, size, *common, "cache.mode=replay", f"hydra.run.dir={name}_replay")
        assert comparable(load_records(tmp_path / f"{name}_replay")) == comparable(
            load_records(Path(tmp_path / name))
        )
