"""The Python API (cotfaith.run, cotfaith.load_run): offline, in-process, small n."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

import cotfaith
from cotfaith import load_run, run
from cotfaith.errors import ConfigError
from cotfaith.notebook import to_overrides
from tests.helpers import comparable

SMALL = {"task.n_questions": 4, "sampling.n_samples": 2, "progress": False}


def _rows(frame: pd.DataFrame) -> list[dict]:
    rows = json.loads(frame.to_json(orient="records"))
    return comparable([{k: v for k, v in r.items() if k in frame.columns} for r in rows])


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    return base, run(SMALL, "first", launch_dir=base)


def test_run_returns_the_tables_and_writes_what_the_cli_writes(first):
    base, result = first
    assert result.path == (base / "first").resolve()
    assert isinstance(result.records, pd.DataFrame) and isinstance(result.summary, pd.DataFrame)
    assert set(result.summary["intervention"]) == {"cot", "truncation", "no_cot"}
    assert result.records["question_id"].nunique() == 4
    assert result.run["calls"] > 0 and result.config["task"]["n_questions"] == 4
    assert result.overrides == ["task.n_questions=4", "sampling.n_samples=2", "progress=false"]
    for name in ("records.jsonl", "traces.jsonl", "summary.csv", "run.json", "report.html"):
        assert (result.path / name).is_file(), name
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (result.path / ".hydra" / name).is_file(), name
    assert result.report == result.path / "report.html"
    assert (base / "outputs" / "cache.sqlite").is_file()  # cache.path is taken from launch_dir


def test_every_figure_is_also_written_as_a_vector_pdf(first):
    _, result = first
    pngs = sorted((result.path / "figures").glob("*.png"))
    assert pngs
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", pdf.name


def test_a_running_event_loop_is_handled_as_in_jupyter(first):
    base, result = first

    async def in_a_notebook_cell():
        asyncio.get_running_loop()  # as in Jupyter: a loop is already running
        return run(SMALL, "in_loop", launch_dir=base)

    again = asyncio.run(in_a_notebook_cell())
    assert _rows(again.records) == _rows(result.records)
    assert again.run["cache_hits"] == again.run["calls"]  # the shared cache served it all


def test_load_run_reads_a_run_folder_like_run_returned_it(first):
    _, result = first
    loaded = load_run(result.path)
    pd.testing.assert_frame_equal(loaded.records, result.records)
    pd.testing.assert_frame_equal(loaded.summary, result.summary)
    assert loaded.run == result.run and loaded.jobs is None and not loaded.is_multirun


def test_load_run_reads_a_multirun_folder_with_overrides_as_columns(first):
    base, _ = first
    for job, faithfulness in (("0", 0.0), ("1", 1.0)):
        run({**SMALL, "model.faithfulness": faithfulness}, f"sweep/{job}", launch_dir=base)
    sweep = load_run(base / "sweep")
    assert sweep.is_multirun and list(sweep.jobs["job"]) == ["0", "1"]
    assert list(sweep.jobs["model.faithfulness"]) == [0.0, 1.0]
    assert sweep.records.columns[0] == "job"
    assert {"model.faithfulness", "task.n_questions"} <= set(sweep.records.columns)
    aoc = sweep.summary.set_index(["model.faithfulness", "intervention"])["aoc"]
    assert aoc[(1.0, "truncation")] > aoc[(0.0, "truncation")]  # the organism's known truth
    assert set(sweep.run) == {"0", "1"}


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="records.jsonl"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_run(tmp_path / "nowhere")


def test_overrides_from_a_dict():
    assert to_overrides(
        {
            "task.n_questions": 6,
            "intervention": ["truncation", "no_cot"],
            "+experiment": "lanham2023_smoke",
            "model.faithfulness": 0.5,
            "dry_run": True,
            "budget.max_usd": None,
            "prompts.path": "my prompts.yaml",
        }
    ) == [
        "task.n_questions=6",
        "intervention=[truncation,no_cot]",
        "+experiment=lanham2023_smoke",
        "model.faithfulness=0.5",
        "dry_run=true",
        "budget.max_usd=null",
        "prompts.path='my prompts.yaml'",
    ]
    with pytest.raises(TypeError):
        to_overrides("task.n_questions=3")


def test_config_errors_are_one_line_as_on_the_command_line(tmp_path):
    with pytest.raises(ConfigError, match="faithfulnes.*allow_new_keys=True"):
        run({"+model.faithfulnes": 0.3}, launch_dir=tmp_path)
    with pytest.raises(ConfigError, match="cotfaith -m"):
        run(["model.faithfulness=0.1,0.9"], launch_dir=tmp_path)
    with pytest.raises(ConfigError, match="n_questons"):
        run(["task.n_questons=3"], launch_dir=tmp_path)
    assert not (tmp_path / "outputs").exists()  # nothing ran


def test_the_api_is_exported_lazily():
    assert cotfaith.run is run and cotfaith.load_run is load_run
    assert {"run", "load_run", "Result"} <= set(cotfaith.__all__)
    with pytest.raises(AttributeError):
        cotfaith.no_such_thing  # noqa: B018
