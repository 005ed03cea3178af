"""The sweep report: one report over the jobs of a multirun (cotfaith.report.sweep)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from cotfaith.report.sweep import (
    is_multirun,
    load_sizes,
    pareto_front,
    parse_overrides,
    parse_size,
    size_from_name,
)
from tests.helpers import run_cli

SWEEP = (
    "task.n_questions=8",
    "sampling.n_samples=2",
    "report.n_bootstrap=50",
    "hydra.sweep.dir=sweep",
)
LEAD = ["job", "label", "status"]


def test_overrides_become_typed_columns():
    got = parse_overrides(["model.faithfulness=0.5", "task=aqua", "+extra=x", "~gone", "a=[1,2]"])
    assert got == {
        "model.faithfulness": 0.5,
        "task": "aqua",
        "extra": "x",
        "gone": None,
        "a": "[1,2]",
    }


def test_sizes_from_values_names_and_mappings(tmp_path):
    assert [parse_size(v) for v in (7, "7B", "350M", "1.5b", "x", None)] == pytest.approx(
        [
            7.0,
            7.0,
            0.35,
            1.5,
            None,
            None,
        ]
    )
    assert size_from_name("Qwen/Qwen2.5-7B-Instruct") == 7.0
    assert size_from_name("llama-3.1-70b") == 70.0
    assert size_from_name("pythia-410m") == pytest.approx(0.41)
    assert size_from_name("gpt-4o-mini") is None and size_from_name("organism") is None
    (tmp_path / "s.yaml").write_text("small: 1B\nbig: 70\n")
    assert load_sizes(tmp_path / "s.yaml") == {"small": 1.0, "big": 70.0}
    assert load_sizes("a=7B,b=13B") == {"a": 7.0, "b": 13.0}
    with pytest.raises(ValueError, match="not name=size"):
        load_sizes("nonsense")


def test_pareto_front_keeps_the_undominated_points():
    pts = np.array([[0.9, 0.1], [0.5, 0.5], [0.4, 0.4], [0.1, 0.9], [0.5, 0.2]])
    assert pareto_front(pts).tolist() == [3, 1, 0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A three-job multirun; its report is written by the Hydra callback."""
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli(cwd, "-m", *SWEEP, "model.faithfulness=0,0.5,1")
    return cwd / "sweep", proc


@pytest.mark.slow
def test_the_multirun_ends_with_one_report_over_all_jobs(sweep):
    sweep_dir, proc = sweep
    assert "sweep report over" in proc.stdout + proc.stderr
    assert is_multirun(sweep_dir) and not is_multirun(sweep_dir / "0")
    for name in ("sweep_summary.csv", "sweep_jobs.csv", "sweep_comparisons.csv", "report.html"):
        assert (sweep_dir / name).is_file(), name
    assert (sweep_dir / "figures" / "aoc_by_job.png").is_file()
    assert (sweep_dir / "figures" / "pareto.png").is_file()
    jobs = pd.read_csv(sweep_dir / "sweep_jobs.csv")
    assert jobs["status"].tolist() == ["ok"] * 3
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert set(table["model.faithfulness"]) == {0, 0.5, 1}
    assert len(table) == 3 * 3  # job x task x method x intervention (cot, no_cot, truncation)
    html = (sweep_dir / "report.html").read_text()
    assert "Paired comparisons" in html and "data:image/png;base64," in html
    assert "model.faithfulness=0.5" in html


@pytest.mark.slow
def test_each_jobs_rows_equal_its_own_summary(sweep):
    sweep_dir, _ = sweep
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    keys = parse_overrides(
        yaml.safe_load((sweep_dir / "0" / ".hydra" / "overrides.yaml").read_text())
    )
    overrides = list(keys)
    assert "model.faithfulness" in overrides and "progress" in overrides
    for job in ("0", "1", "2"):
        own = pd.read_csv(sweep_dir / job / "summary.csv")
        mine = table[table["job"].astype(str) == job].drop(columns=LEAD + overrides)
        mine = mine[list(own.columns)].reset_index(drop=True)
        assert mine.columns.tolist() == own.columns.tolist()
        pd.testing.assert_frame_equal(mine, own, check_dtype=False)
        extra = set(table.columns) - set(own.columns) - set(LEAD) - set(overrides)
        assert table.loc[table["job"].astype(str) == job, list(extra)].isna().all().all()


@pytest.mark.slow
def test_paired_comparisons_between_jobs(sweep):
    sweep_dir, _ = sweep
    cmp = pd.read_csv(sweep_dir / "sweep_comparisons.csv")
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    aoc = cmp[cmp["statistic"] == "aoc"]
    assert sorted(zip(aoc["job_a"], aoc["job_b"], strict=True)) == [(0, 1), (0, 2), (1, 2)]
    trunc = table[table["intervention"] == "truncation"].set_index("job")
    for row in aoc.itertuples():
        assert row.n_shared == 8
        # every question is shared: the paired estimates are the jobs' own AOCs
        assert row.estimate_a == pytest.approx(trunc.loc[row.job_a, "aoc"])
        assert row.estimate_b == pytest.approx(trunc.loc[row.job_b, "aoc"])
        assert row.diff == pytest.approx(row.estimate_a - row.estimate_b)
        assert row.diff_ci_low <= row.diff <= row.diff_ci_high
    assert (cmp["p_holm"] >= cmp["p"] - 1e-12).all() and (cmp["p_holm"] <= 1).all()
    assert {"aoc", "accuracy_cot", "accuracy_no_cot"} <= set(cmp["statistic"])
    # faithfulness 0 vs 1: the less faithful organism has the lower AOC
    row = aoc[(aoc["job_a"] == 0) & (aoc["job_b"] == 2)].iloc[0]
    assert row["diff"] < 0


@pytest.mark.slow
def test_failed_and_stopped_jobs_are_listed_and_sizes_plot(sweep, tmp_path):
    src, _ = sweep
    sweep_dir = tmp_path / "copy"
    shutil.copytree(src, sweep_dir)
    for name in ("report.html", "sweep_summary.csv"):
        (sweep_dir / name).unlink()
    (sweep_dir / "2" / "records.jsonl").write_text("")  # failed: no records
    run = json.loads((sweep_dir / "1" / "run.json").read_text())
    run["stopped_by"] = "budget.max_usd reached"
    (sweep_dir / "1" / "run.json").write_text(json.dumps(run))
    (sweep_dir / "3" / ".hydra").mkdir(parents=True)  # a job that never wrote anything
    (sweep_dir / "3" / ".hydra" / "overrides.yaml").write_text("- model.faithfulness=2\n")
    for job, size in (("0", "1B"), ("1", "7B")):
        cfg_path = sweep_dir / job / ".hydra" / "config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["model"]["size"] = size
        cfg_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.report.cli", str(sweep_dir), "--adjust", "bh"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    jobs = pd.read_csv(sweep_dir / "sweep_jobs.csv").set_index("job")
    assert jobs.loc[0, "status"] == "ok" and jobs.loc[0, "size_b"] == 1.0
    assert jobs.loc[1, "status"] == "stopped" and "budget" in jobs.loc[1, "reason"]
    assert jobs.loc[2, "status"] == "failed" and jobs.loc[3, "status"] == "failed"
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert set(table["job"]) == {0, 1}  # the stopped job's rows are kept, flagged
    assert set(table.loc[table["job"] == 1, "status"]) == {"stopped"}
    html = (sweep_dir / "report.html").read_text()
    assert "stopped early: budget.max_usd reached" in html and "no records" in html
    assert (sweep_dir / "figures" / "aoc_vs_size.png").is_file()
    # comparisons use finished jobs only: one is left, nothing to compare
    assert pd.read_csv(sweep_dir / "sweep_comparisons.csv").empty


def test_a_folder_without_jobs_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.report.cli", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "records.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
