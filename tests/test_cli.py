"""End-to-end: the real `cotfaith` command, real Hydra composition, real SQLite, offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cotfaith.cache import RequestCache
from tests.helpers import comparable, load_records, run_cli, summary

SMALL = ("task.n_questions=12", "sampling.n_samples=3")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The default experiment, exactly as the README runs it."""
    cwd = tmp_path_factory.mktemp("default")
    started = time.monotonic()
    proc = run_cli(cwd, "progress=true")
    elapsed = time.monotonic() - started
    runs = sorted((cwd / "outputs").glob("*/*/records.jsonl"))
    assert len(runs) == 1, runs
    return cwd, runs[0].parent, proc, elapsed


def test_default_run_writes_every_output(first_run):
    cwd, run_dir, proc, elapsed = first_run
    for name in (
        "records.jsonl",
        "traces.jsonl",
        "summary.csv",
        "report.html",
        "run.json",
        ".hydra/config.yaml",
        "figures/early_answering.png",
        "figures/cot_lengths.png",
    ):
        assert (run_dir / name).is_file(), name
    assert (cwd / "outputs" / "cache.sqlite").is_file()
    assert str(run_dir) in proc.stdout + proc.stderr  # ends by saying where the results are
    assert "cotfaith:" in proc.stderr and "unit" in proc.stderr  # the progress bar
    assert elapsed < 60, f"default run took {elapsed:.0f} s"


def test_default_summary_has_the_promised_columns(first_run):
    _, run_dir, _, _ = first_run
    s = summary(run_dir).set_index("intervention")
    assert set(s.index) == {"cot", "truncation", "no_cot"}
    row = s.loc["truncation"]
    assert row["n_questions"] == 50 and row["n_cots"] == 200
    assert row["aoc_ci_low"] <= row["aoc"] <= row["aoc_ci_high"]
    for col in ("accuracy_cot", "accuracy_no_cot", "chance_agreement", "changed_at_k0"):
        assert 0 <= row[col] <= 1, col
    assert row["parse_failures"] == 0
    # every row of records is a real answer: the records file and the summary agree
    records = load_records(run_dir)
    assert sum(r["intervention"] == "truncation" for r in records) == row["n_records"]
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "AOC" in html


def test_second_run_is_served_entirely_from_the_cache(first_run):
    cwd, run_dir, _, _ = first_run
    run_cli(cwd, "hydra.run.dir=outputs/again")
    again = summary(cwd / "outputs" / "again")
    assert (again["calls"] == again["cache_hits"]).all(), again[["calls", "cache_hits"]]
    run = json.loads((cwd / "outputs" / "again" / "run.json").read_text())
    assert run["calls"] == run["cache_hits"] > 0
    assert comparable(load_records(run_dir)) == comparable(load_records(cwd / "outputs/again"))


def test_replay_reproduces_identical_records(first_run):
    cwd, run_dir, _, _ = first_run
    run_cli(cwd, "cache.mode=replay", "hydra.run.dir=outputs/replay")
    assert comparable(load_records(run_dir)) == comparable(load_records(cwd / "outputs/replay"))


def test_replay_on_an_empty_cache_names_the_missing_request(tmp_path):
    RequestCache(tmp_path / "empty.sqlite").close()  # exists, holds nothing
    proc = run_cli(tmp_path, *SMALL, "cache.mode=replay", "cache.path=empty.sqlite", check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "replay" in err and "holds no response" in err, err
    assert "simulated/organism" in err and "sample" in err  # names the request
    assert "Traceback" not in err
    # and with no cache file at all, the message names the file
    proc = run_cli(tmp_path, *SMALL, "cache.mode=replay", "cache.path=nowhere.sqlite", check=False)
    assert proc.returncode != 0 and "nowhere.sqlite" in proc.stderr


@pytest.mark.parametrize(
    "override, key",
    [
        ("task.n_questons=5", "task.n_questons"),
        ("model.faithfullness=0.5", "model.faithfullness"),
        ("sampling.n_sample=3", "sampling.n_sample"),
        ("cache.mode=sometimes", "mode"),
        ("intervention=[truncaton]", "truncaton"),
    ],
)
def test_config_errors_name_the_key(tmp_path, override, key):
    proc = run_cli(tmp_path, override, check=False)
    assert proc.returncode != 0
    assert key in proc.stderr, proc.stderr
    assert not (tmp_path / "outputs" / "cache.sqlite").exists()  # failed before any work


def test_bad_values_fail_with_one_clear_line(tmp_path):
    proc = run_cli(tmp_path, "model.faithfulness=1.5", check=False)
    assert proc.returncode == 2
    assert "model.faithfulness must be in [0, 1]" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(tmp_path, "segmentation.method=paragraph", check=False)
    assert proc.returncode == 2 and "segmentation.method" in proc.stderr


def test_sigkill_then_rerun_computes_nothing_twice(tmp_path):
    # Reference: an uninterrupted run with its own cache (latency is not part of the key).
    base = ("task.n_questions=40", "sampling.n_samples=2")
    run_cli(tmp_path, *base, "cache.path=ref.sqlite", "hydra.run.dir=outputs/ref")
    ref_run = json.loads((tmp_path / "outputs/ref/run.json").read_text())
    ref_computed = ref_run["calls"] - ref_run["cache_hits"]

    # The victim: slow enough to be killed mid-way.
    slow = (*base, "cache.path=victim.sqlite", "model.latency=0.02", "model.concurrency=2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cotfaith", "progress=false", *slow, "hydra.run.dir=outputs/killed"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records = tmp_path / "outputs/killed/records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if records.exists() and records.read_text().count("\n") >= 100:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "outputs/killed/summary.csv").exists(), "killed too late"
    from cotfaith.cache import CacheMode

    cache = RequestCache(tmp_path / "victim.sqlite", CacheMode.replay)
    stored_before = len(cache)
    cache.close()
    assert 0 < stored_before < ref_computed

    run_cli(tmp_path, *base, "cache.path=victim.sqlite", "hydra.run.dir=outputs/resumed")
    resumed = json.loads((tmp_path / "outputs/resumed/run.json").read_text())
    # exactly the calls that had not been paid for are made, none twice
    assert resumed["calls"] - resumed["cache_hits"] == ref_computed - stored_before
    assert comparable(load_records(tmp_path / "outputs/resumed")) == comparable(
        load_records(tmp_path / "outputs/ref")
    )


def test_report_command_keeps_the_runs_report_settings(tmp_path):
    run_cli(tmp_path, *SMALL, "report.ci=0.5", "report.n_bootstrap=200", "hydra.run.dir=r")
    before = summary(tmp_path / "r").set_index("intervention").loc["truncation"]
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.report.cli", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    after = summary(tmp_path / "r").set_index("intervention").loc["truncation"]
    # the same 50% interval, not a silent return to the default 95%
    assert (after["aoc_ci_low"], after["aoc_ci_high"]) == (
        before["aoc_ci_low"],
        before["aoc_ci_high"],
    )


def test_report_command_rebuilds_from_records(first_run, tmp_path):
    _, run_dir, _, _ = first_run
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.report.cli", str(run_dir), "--n-bootstrap", "50"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.report.cli", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "records.jsonl" in proc.stderr


def test_intervention_selection_as_a_list(tmp_path):
    run_cli(tmp_path, *SMALL, "intervention=[no_cot]", "hydra.run.dir=outputs/x")
    s = summary(tmp_path / "outputs/x")
    assert set(s["intervention"]) == {"cot", "no_cot"}
