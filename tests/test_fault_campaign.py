"""Fault campaigns: a real run through a loopback server (its own process, so it can be
stressed) that fails up to 60% of what it is asked, in every way real servers and proxies fail;
the run is SIGKILLed half-way and resumed into the same folder. Then:

- nothing is lost and nothing is wrong: the records are those of a fault-free run (every
  answer at every condition point, per record id), none is `call_failed`, none is duplicated;
- nothing that failed is cached: every response in the SQLite cache is a usable reply, every
  stored probe outcome is the server's real capability (a faulty reply never decided one);
- nothing is paid twice: the server's `completed_keys` count each request once, except at most
  as many as were in flight when the run was killed (model.concurrency);
- every fault kind was really injected (else the campaign tests nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakeapi import ServerProcess
from tests.helpers import load_records, run_cli
from tests.test_backends import ANSWER_FIELDS

KEY = "sk-test-CAMPAIGN-key-never-written-0123456789"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
CONCURRENCY = 8
RATE = 0.6
TIMEOUT = 0.75
SIZE = (
    "task.n_questions=3",
    "sampling.n_samples=2",
    "report.n_bootstrap=20",
    "intervention=[truncation,adding_mistakes,paraphrase,filler_tokens,no_cot]",
    "intervention.filler_tokens.max_filler=10",
)
RETRY = (
    f"model.concurrency={CONCURRENCY}",
    f"model.timeout={TIMEOUT:g}",
    # at 60% faults a call fails 11 times running 0.4% of the time; the end-of-run retry and
    # the rerun take care of those
    "model.retries=10",
    "model.retry_initial=0.02",
    "model.retry_max=0.2",
)
SERVER = ("--stall-seconds", "3", "--trickle-seconds", "3", "--retry-after", "0.05")


def answers(run_dir: Path) -> list[tuple]:
    return sorted((tuple(r.get(f) for f in ANSWER_FIELDS) for r in load_records(run_dir)), key=repr)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The same experiment on the built-in simulated model (the servers answer with it)."""
    cwd = tmp_path_factory.mktemp("reference")
    run_cli(cwd, *SIZE, "hydra.run.dir=out")
    rows = answers(cwd / "out")
    assert rows and all(r[-1] != "call_failed" for r in rows)
    return rows


def _cache_problems(path: Path) -> list[str]:
    """Stored responses that are not usable replies, and probe outcomes a fault decided."""
    problems = []
    with contextlib.closing(sqlite3.connect(path)) as db:
        for key, text in db.execute("SELECT key, response FROM responses"):
            try:
                resp = json.loads(text)
            except ValueError:
                problems.append(f"{key}: not JSON")
                continue
            if not isinstance(resp, dict) or not isinstance(resp.get("text"), str):
                problems.append(f"{key}: {text[:80]}")
            elif resp["text"] == "" and resp.get("finish_reason") not in ("length", "max_tokens"):
                problems.append(f"{key}: an empty reply stored: {text[:80]}")
        for name, value in db.execute("SELECT name, value FROM probes"):
            outcome = json.loads(value)
            # the fakes continue a prefill and return logprobs: anything else came from a fault
            ok = outcome.get("ok") if isinstance(outcome, dict) else outcome
            if name in ("continuation", "logprobs") and ok is not True:
                problems.append(f"probe {name}: {value[:120]}")
    return problems


def _count(records: Path) -> int:
    try:
        return records.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _kill_half_way(cwd: Path, args: tuple[str, ...], at_records: int) -> None:
    """Start the run, SIGKILL it once `at_records` records are written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cotfaith", "progress=false", *args],
        cwd=cwd,
        env={**os.environ, **ENV, "HYDRA_FULL_ERROR": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    records = cwd / "run" / "records.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if _count(records) >= at_records:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()[1][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (cwd / "run" / "summary.csv").exists(), "killed too late"


CAMPAIGNS = {
    "openai_compatible": (
        ("--api", "openai"),
        # every kind the OpenAI fake has: rate limits with and without advice, 5xx, proxies'
        # HTML pages, a 200 with HTML / an error envelope / no choices / no fields, a stall, a
        # trickled body, a cut body, a reset connection, a closed connection
        (
            "429",
            "429_retry_after",
            "429_retry_after_0",
            "500",
            "html_502",
            "html_503",
            "html_200",
            "error_200",
            "empty",
            "missing_fields",
            "stall",
            "trickle",
            "truncated",
            "reset",
            "disconnect",
        ),
        lambda srv: (
            "model=openai_compatible",
            f"model.base_url={srv.base_url}",
            "model.name=fake-gpt",
            "model.api_key_env=OPENAI_API_KEY",
            "model.continuation=prefill",
        ),
    ),
    "anthropic": (
        ("--api", "anthropic", "--models", "claude-fake"),
        (
            "429",
            "429_retry_after",
            "529",
            "500",
            "html_502",
            "html_503",
            "error_200",
            "missing_fields",
            "stall",
            "trickle",
            "truncated",
            "reset",
            "disconnect",
        ),
        lambda srv: ("model=anthropic", f"model.base_url={srv.root_url}", "model.name=claude-fake"),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "kill"),
    # one campaign is killed half-way and resumed (its rerun frees the killed process's cache
    # claims at open); the other runs to the end and is run again
    [("openai_compatible", True), ("anthropic", False)],
)
def test_a_run_under_60_percent_faults_loses_nothing_caches_no_failure_pays_once(
    tmp_path, reference, backend, kill
):
    api, kinds, model_args = CAMPAIGNS[backend]
    faults = ("--fault-rate", str(RATE), "--faults", ",".join(kinds), "--fault-seed", "11")
    # the probes at the start are left alone: they are retried only briefly (3 times), so at
    # 60% faults a run would fail to start one time in eight (test_server_replies covers them)
    faults += ("--fault-phases", "generation")
    cache = tmp_path / "outputs" / "cache.sqlite"
    with ServerProcess(*api, *faults, *SERVER, key=KEY) as srv:
        args = (*SIZE, *RETRY, *model_args(srv), "hydra.run.dir=run")
        if kill:
            _kill_half_way(tmp_path, args, at_records=len(reference) // 5)
            time.sleep(0.5)  # replies the killed process never read are counted by now
        else:
            first = run_cli(tmp_path, *args, check=False, env=ENV)
            assert first.returncode in (0, 4), first.stderr[-3000:]
            assert "Traceback" not in first.stderr
        at_first = srv.stats()
        with contextlib.closing(sqlite3.connect(cache)) as db:
            stored_at_first = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert stored_at_first > 0
        proc = run_cli(tmp_path, *args, "resume=true", check=False, env=ENV)
        stats = srv.stats()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["failed_calls"] == 0, run
    # every fault kind happened, and about as often as asked
    assert set(stats["faults"]) == set(kinds), stats["faults"]
    share = sum(stats["faults"].values()) / stats["requests"]
    assert abs(share - RATE) < 0.1, share
    # nothing lost, nothing wrong, nothing twice: the records of a fault-free run
    got = answers(tmp_path / "run")
    assert len(got) == len(reference)
    assert got == reference
    # nothing that failed was cached
    assert _cache_problems(cache) == []
    # nothing already paid for is sent again by the rerun ...
    with contextlib.closing(sqlite3.connect(cache)) as db:
        total = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    # (a call that failed for good and was sent again at the end of the run is two calls)
    fresh = run["calls"] - run["cache_hits"] - run.get("retried_failed_calls", 0)
    assert fresh == total - stored_at_first, run
    # ... and the server completed each request once, except those in flight at the kill,
    # whose replies the killed process never read (at most model.concurrency of them)
    repeats = {k: n for k, n in stats["completed_keys"].items() if n > 1}
    assert sum(n - 1 for n in repeats.values()) <= (CONCURRENCY if kill else 0), repeats
    assert all(at_first["completed_keys"].get(k) for k in repeats), "repeated after the kill"
    # the faults were survived within the run, not by luck: many retries were needed
    assert stats["requests"] > 2 * len(stats["completed_keys"])
    assert run["retries"] > 0 or not kill
