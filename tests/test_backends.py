"""Real backends end to end: the real openai and anthropic SDKs, through the real `cotfaith`
command, against loopback servers that speak each API's wire format (tests/fakeapi). The
servers answer with the simulated organism at its default knobs, so a run through any backend
must reproduce the answers of the built-in simulated model: the backend is transparent."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakeapi import (
    Faults,
    ServerProcess,
    ServerThread,
    make_anthropic_app,
    make_openai_app,
)
from tests.helpers import load_records, run_cli, summary

KEY = "sk-test-THIS-KEY-MUST-NEVER-BE-WRITTEN-0123456789"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
SMALL = ("task.n_questions=10", "sampling.n_samples=2", "report.n_bootstrap=50")
# what a backend must not change: the model's answers at every condition point
ANSWER_FIELDS = (
    "task",
    "question_id",
    "sample",
    "intervention",
    "condition",
    "n_steps",
    "k",
    "answer",
    "original_answer",
    "same_answer",
    "correct",
    "parse_status",
)


def answers(run_dir: Path) -> list[tuple]:
    rows = [
        tuple(r[f] for f in ANSWER_FIELDS)
        for r in load_records(run_dir)
        if r["parse_status"] != "call_failed"
    ]
    return sorted(rows, key=repr)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The same experiment on the built-in simulated model."""
    cwd = tmp_path_factory.mktemp("reference")
    run_cli(cwd, *SMALL, "hydra.run.dir=out")
    return answers(cwd / "out")


@pytest.fixture()
def openai_server():
    with ServerThread(
        make_openai_app(key=KEY, models=("fake-gpt",), no_logprobs_models=("o-reasoner",))
    ) as srv:
        yield srv


@pytest.fixture()
def anthropic_server():
    with ServerThread(
        make_anthropic_app(key=KEY, models=("claude-fake",), no_prefill_models=("claude-new",))
    ) as srv:
        yield srv


def openai_args(srv, *extra: str, model: str = "openai") -> tuple[str, ...]:
    return (
        f"model={model}",
        f"model.base_url={srv.base_url}",
        "model.name=fake-gpt",
        "model.api_key_env=OPENAI_API_KEY",
        "model.retry_initial=0.01",
        *extra,
    )


def anthropic_args(srv, name: str = "claude-fake") -> tuple[str, ...]:
    return (
        "model=anthropic",
        f"model.base_url={srv.root_url}",
        f"model.name={name}",
        "model.retry_initial=0.01",
    )


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


# ------------------------------------------------------------------ each wire format
def test_openai_chat_with_logprobs_reproduces_the_simulated_answers(
    tmp_path, openai_server, reference
):
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), "hydra.run.dir=out", env=ENV)
    run = run_json(tmp_path / "out")
    assert run["answer_strategy"] == "logprobs" and run["cot_prompt"] == "instructed"
    assert answers(tmp_path / "out") == reference
    rec = load_records(tmp_path / "out")[0]
    assert rec["provider"] == "openai" and rec["continuation_strategy"] == "none"
    assert rec["answer_probs"] is not None  # read from the first token's logprobs


def test_openai_model_without_logprobs_falls_back_to_parse(tmp_path, openai_server, reference):
    args = [
        a if a != "model.name=fake-gpt" else "model.name=o-reasoner"
        for a in openai_args(openai_server)
    ]
    run_cli(tmp_path, *SMALL, *args, "hydra.run.dir=out", env=ENV)
    run = run_json(tmp_path / "out")
    assert run["answer_strategy"] == "parse"
    assert any("no logprobs" in n for n in run["notices"])
    assert [a[7] for a in answers(tmp_path / "out")] == [a[7] for a in reference]
    assert "no logprobs" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("continuation", ["prefill", "completion"])
def test_openai_compatible_continuation(tmp_path, openai_server, reference, continuation):
    run_cli(
        tmp_path,
        *SMALL,
        *openai_args(
            openai_server, f"model.continuation={continuation}", model="openai_compatible"
        ),
        "hydra.run.dir=out",
        env=ENV,
    )
    run = run_json(tmp_path / "out")
    assert run["cot_prompt"] == "prefill" and run["continuation"] == continuation
    assert answers(tmp_path / "out") == reference
    assert run["backend"]["endpoint"] == ("completions" if continuation == "completion" else "chat")


def test_anthropic_prefill(tmp_path, anthropic_server, reference):
    run_cli(tmp_path, *SMALL, *anthropic_args(anthropic_server), "hydra.run.dir=out", env=ENV)
    run = run_json(tmp_path / "out")
    assert run["answer_strategy"] == "prefill" and run["cot_prompt"] == "prefill"
    assert answers(tmp_path / "out") == reference


def test_anthropic_prefill_refusal_falls_back_to_parse_and_says_so(
    tmp_path, anthropic_server, reference
):
    proc = run_cli(
        tmp_path,
        *SMALL,
        *anthropic_args(anthropic_server, "claude-new"),
        "hydra.run.dir=out",
        env=ENV,
    )
    run = run_json(tmp_path / "out")
    assert run["answer_strategy"] == "parse" and run["cot_prompt"] == "instructed"
    assert (proc.stdout + proc.stderr).count("refuses assistant prefill") == 1  # said once
    assert "refuses assistant prefill" in (tmp_path / "out" / "report.html").read_text()
    assert [a[7] for a in answers(tmp_path / "out")] == [a[7] for a in reference]


# ------------------------------------------------------------------ faults
def test_faults_are_retried_and_every_record_is_right(tmp_path, openai_server):
    size = ("task.n_questions=30", "sampling.n_samples=2", "report.n_bootstrap=50")
    run_cli(tmp_path, *size, "hydra.run.dir=simulated", "cache.path=sim.sqlite")
    kinds = ("429_retry_after", "429", "500", "stall", "truncated")
    openai_server.state.faults = Faults(rate=0.3, kinds=kinds, seed=7, stall_seconds=4)
    run_cli(
        tmp_path,
        *size,
        # the timeout is a deadline for the whole call: well above a loaded machine's slowest
        # healthy reply (so only the stalls time out), well below the stall
        *openai_args(openai_server, "model.timeout=1.5", "model.retries=12"),
        "hydra.run.dir=out",
        env=ENV,
    )
    stats = openai_server.stats()
    assert stats["ok"] >= 200, stats
    assert set(stats["faults"]) == set(kinds), stats["faults"]
    run = run_json(tmp_path / "out")
    assert run["failed_calls"] == 0
    # every fault was retried once: the run's calls' retries, and the probes' before the run
    assert run["retries"] + run["preflight_retries"] == sum(stats["faults"].values())
    assert set(run["retry_reasons"]) == {"429", "500", "timeout", "bad_body"}
    # ...and the summary counts them where they happened
    assert summary(tmp_path / "out")["retries"].sum() == run["retries"]
    # every record present and right
    assert answers(tmp_path / "out") == answers(tmp_path / "simulated")
    # a completed request is never sent again within the run
    assert max(stats["completed_keys"].values()) == 1


def test_calls_that_exhaust_retries_are_reported_not_cached_and_retried_later(
    tmp_path, openai_server, reference
):
    openai_server.state.faults = Faults(rate=0.5, kinds=("500",), seed=3)
    proc = run_cli(
        tmp_path,
        *SMALL,
        *openai_args(openai_server, "model.retries=0"),
        "hydra.run.dir=first",
        check=False,
        env=ENV,
    )
    # half the calls failing for good: the run keeps what it got but says it did not measure
    # what it was asked to (exit code 4)
    assert proc.returncode == 4 and "model calls failed for good" in proc.stderr, proc.stderr
    run = run_json(tmp_path / "first")
    assert run["failed_calls"] > 0
    failed = [r for r in load_records(tmp_path / "first") if r["parse_status"] == "call_failed"]
    assert len(failed) >= 1 and all("gave up" in r["extra"]["error"] for r in failed)
    with sqlite3.connect(tmp_path / "outputs" / "cache.sqlite") as db:
        stored = {k for (k,) in db.execute("SELECT key FROM responses")}
    assert not {r["request_key"] for r in failed} & stored  # never cached
    s = summary(tmp_path / "first")
    assert s["failed_calls"].sum() == run["failed_calls"]
    # the next run retries exactly those and completes the experiment
    openai_server.state.faults = Faults()
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), "hydra.run.dir=second", env=ENV)
    assert run_json(tmp_path / "second")["failed_calls"] == 0
    assert answers(tmp_path / "second") == reference


# ------------------------------------------------------------------ crash, replay, secrets
def test_sigkill_rerun_and_replay_against_a_server_process(tmp_path):
    with ServerProcess(
        "--api", "openai", "--models", "fake-gpt", "--latency", "0.05", key=KEY
    ) as srv:
        args = (*SMALL, *openai_args(srv, "model.concurrency=4"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "cotfaith", "progress=false", *args, "hydra.run.dir=killed"],
            cwd=tmp_path,
            env={**os.environ, **ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        records = tmp_path / "killed" / "records.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if records.exists() and records.read_text().count("\n") >= 30:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "killed" / "summary.csv").exists(), "killed too late"
        with sqlite3.connect(tmp_path / "outputs" / "cache.sqlite") as db:
            stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        run_cli(tmp_path, *args, "hydra.run.dir=resumed", env=ENV)
        stats = srv.stats()
    resumed = run_json(tmp_path / "resumed")
    with sqlite3.connect(tmp_path / "outputs" / "cache.sqlite") as db:
        total = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 0 < stored < total
    # nothing the killed run had received is sent again: the rerun makes exactly the rest
    assert resumed["calls"] - resumed["cache_hits"] == total - stored
    # the server may have answered a few requests whose replies the killed process never got
    # (at most the calls in flight, model.concurrency=4); those, and only those, came twice
    repeats = sum(n - 1 for n in stats["completed_keys"].values())
    assert repeats <= 4, repeats
    # the server is gone: replay needs neither network nor key
    no_key = {k: "" for k in ENV}
    run_cli(tmp_path, *args, "cache.mode=replay", "hydra.run.dir=replayed", env=no_key)
    assert answers(tmp_path / "replayed") == answers(tmp_path / "resumed")
    # and an uninterrupted run gives the same records
    run_cli(tmp_path, *SMALL, "hydra.run.dir=simulated")
    assert answers(tmp_path / "resumed") == answers(tmp_path / "simulated")


def test_the_key_is_never_written_anywhere(tmp_path, openai_server):
    openai_server.state.faults = Faults(rate=0.2, kinds=("500", "429"), seed=1)
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), "hydra.run.dir=out", env=ENV)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and any(p.name == "cli.log" for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in (tmp_path / "out" / ".hydra" / "config.yaml").read_text()


# ------------------------------------------------------------------ preflight errors
def _one_clear_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("cotfaith: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in proc.stderr


def test_missing_key_fails_in_one_line_before_any_work(tmp_path, openai_server):
    proc = run_cli(
        tmp_path, *SMALL, *openai_args(openai_server), check=False, env={"OPENAI_API_KEY": ""}
    )
    _one_clear_line(proc, "OPENAI_API_KEY", "not set")
    assert openai_server.stats()["requests"] == 0


def test_refused_connection_fails_in_one_line_that_says_so(tmp_path):
    proc = run_cli(
        tmp_path,
        *SMALL,
        "model=openai",
        "model.base_url=http://127.0.0.1:9/v1",
        "model.name=fake-gpt",
        "model.timeout=2",
        check=False,
        env=ENV,
    )
    # the SDK reports a refused connection as a timeout; the user must hear what happened
    _one_clear_line(proc, "model.base_url", "cannot connect to", "(connection refused")
    assert "timed out" not in proc.stderr.lower()


def test_anthropic_prefill_true_on_a_model_that_refuses_it_fails_in_one_line(
    tmp_path, anthropic_server
):
    proc = run_cli(
        tmp_path,
        *SMALL,
        *anthropic_args(anthropic_server, "claude-new"),
        "model.prefill=true",
        check=False,
        env=ENV,
    )
    _one_clear_line(proc, "model.prefill=true", "refuses assistant prefill", "auto")


def test_unknown_model_fails_in_one_line(tmp_path, openai_server, anthropic_server):
    proc = run_cli(
        tmp_path,
        *SMALL,
        *openai_args(openai_server)[:1],
        f"model.base_url={openai_server.base_url}",
        "model.name=no-such-model",
        check=False,
        env=ENV,
    )
    _one_clear_line(proc, "model.name", "no-such-model")
    proc = run_cli(
        tmp_path,
        *SMALL,
        "model=anthropic",
        f"model.base_url={anthropic_server.root_url}",
        "model.name=claude-nope",
        check=False,
        env=ENV,
    )
    _one_clear_line(proc, "model.name", "claude-nope")
    assert openai_server.stats()["requests"] == anthropic_server.stats()["requests"] == 0


def test_rejected_key_fails_in_one_line(tmp_path, openai_server):
    proc = run_cli(
        tmp_path,
        *SMALL,
        *openai_args(openai_server),
        check=False,
        env={"OPENAI_API_KEY": "sk-wrong"},
    )
    _one_clear_line(proc, "rejected the key", "OPENAI_API_KEY")


# ------------------------------------------------------------------ money
PRICE = "+prices.fake-gpt={input: 100.0, output: 200.0}"  # USD per million tokens


def test_budget_stops_cleanly_and_keeps_finished_records(tmp_path, openai_server):
    # a CoT call costs at most ~$0.03 here, an answer ~$0.02; the whole run ~$14
    proc = run_cli(
        tmp_path,
        *SMALL,
        *openai_args(openai_server),
        PRICE,
        "budget.max_usd=1",
        "sampling.max_tokens=100",
        "hydra.run.dir=out",
        check=False,
        env=ENV,
    )
    assert proc.returncode == 3, proc.stderr
    assert "budget.max_usd=1 reached" in proc.stderr
    records = load_records(tmp_path / "out")
    assert records, "finished records are kept"
    run = run_json(tmp_path / "out")
    assert 0 < run["spent_usd"] <= 1 and "budget.max_usd" in run["stopped_by"]
    assert (tmp_path / "out" / "report.html").exists()
    # every record written is a real answer, and the calls behind them were cached
    assert all(r["parse_status"] == "ok" for r in records)


def test_costs_and_tokens_are_in_records_and_summary(tmp_path, openai_server):
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), PRICE, "hydra.run.dir=out", env=ENV)
    records = load_records(tmp_path / "out")
    r = next(x for x in records if x["intervention"] == "no_cot")
    expected = (r["input_tokens"] * 100.0 + r["output_tokens"] * 200.0) / 1e6
    assert r["cost_usd"] == pytest.approx(expected)
    s = summary(tmp_path / "out")
    # what the run paid, counted from the server's side of things: each distinct call once
    distinct = {c["key"]: c for x in records for c in x["call_log"]}
    paid = sum(c["cost_usd"] for c in distinct.values())
    assert run_json(tmp_path / "out")["spent_usd"] == pytest.approx(paid)
    assert s["cost_usd_this_run"].sum() == pytest.approx(paid)  # no call counted twice
    assert sum(x["spent_usd"] for x in records) == pytest.approx(paid)
    # calls shared between rows (k = n and the reference answer) are not double counted
    shared = sum(x["cost_usd"] for x in records) - paid
    assert shared > 0
    assert s["input_tokens"].sum() > 0
    # a rerun from the cache costs nothing this time but reports the same experiment cost
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), PRICE, "hydra.run.dir=again", env=ENV)
    again = summary(tmp_path / "again")
    assert again["cost_usd_this_run"].sum() == 0
    assert again["cost_usd"].sum() == pytest.approx(s["cost_usd"].sum())


def test_dry_run_calls_no_model(tmp_path):
    # nothing listens on this port: a dry run must not need it, nor a key
    proc = run_cli(
        tmp_path,
        *SMALL,
        "model=openai",
        "model.base_url=http://127.0.0.1:9/v1",
        "model.name=gpt-4o-mini",
        "dry_run=true",
        "hydra.run.dir=out",
        env={"OPENAI_API_KEY": ""},
    )
    assert "dry run:" in proc.stdout
    d = json.loads((tmp_path / "out" / "dry_run.json").read_text())["dry_run"]
    assert d["calls_to_make"] > 0 and d["est_cost_usd"] > 0
    assert d["worst_case_cost_usd"] >= d["est_cost_usd"]
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_error_text_is_scrubbed_of_anything_key_like():
    from cotfaith.models.api import redact

    # OpenAI's 401 text echoes a masked key; our records and logs must not carry even that
    text = "Incorrect API key provided: sk-proj-abcd************************wxyz. See docs."
    assert "abcd" not in redact(text) and "[redacted]" in redact(text)
    assert KEY not in redact(f"failed with {KEY}", KEY)
    assert redact("answer is (B)") == "answer is (B)"
    # a key of any shape, echoed masked, is scrubbed; its head or tail elsewhere is not touched
    gateway = "gw-local-7f3a9c2e1b44d05e"
    assert redact("bad key gw-local*************d05e", gateway) == "bad key [redacted]"
    chosen = "sk-no-key-required"  # llama.cpp's documented placeholder
    assert redact("field 'messages' is required", chosen) == "field 'messages' is required"


def test_a_transient_fault_at_start_up_is_retried(tmp_path, openai_server, anthropic_server):
    # an overloaded API at the first call must not abort the run before it starts
    openai_server.state.faults = Faults(fail_first=2)
    run_cli(tmp_path, *SMALL, *openai_args(openai_server), "hydra.run.dir=o", env=ENV)
    anthropic_server.state.faults = Faults(fail_first=2)
    run_cli(tmp_path, *SMALL, *anthropic_args(anthropic_server), "hydra.run.dir=a", env=ENV)
    assert run_json(tmp_path / "o")["failed_calls"] == run_json(tmp_path / "a")["failed_calls"] == 0


def test_a_required_key_left_unset_is_one_clear_line(tmp_path):
    proc = run_cli(tmp_path, "model=openai_compatible", check=False)
    _one_clear_line(proc, "model.name is required")
