"""End to end, offline: `cotfaith task=<each> task.n_questions=3 sampling.n_samples=1` on the
simulated organism, each task reading its published file from ../shared/data (HellaSwag: the
fixture in its published schema)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TASK_FIXTURES
from tests.helpers import run_cli, summary

pytestmark = pytest.mark.slow

# task -> (task.path relative to the shared data folder, extra overrides)
TASKS = {
    "aqua": ("aqua/dev.json", ()),
    "arc_easy": ("arc_easy/ARC-Easy-Dev.jsonl", ()),
    "arc_challenge": ("arc_easy/ARC-Easy-Dev.jsonl", ()),  # same schema; no Challenge file here
    "openbookqa": ("arc_easy/ARC-Easy-Dev.jsonl", ()),  # same schema as ARC
    "hellaswag": (None, ()),
    "logiqa": ("logiqa/Eval.txt", ()),
    "mmlu": ("mmlu", ("task.subjects=[anatomy,virology]", "task.n_shots=2")),
    "truthfulqa": ("truthfulqa/mc_task.json", ()),
    "strategyqa": ("strategyqa/dev.json", ()),
    "hotpotqa": ("hotpotqa/hotpot_dev_distractor_v1_100.json", ()),
    "bbh": ("bbh", ()),
    "bbh_turpin": ("bbh_turpin", ("task.few_shot=all_a",)),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_runs_end_to_end_offline(task, shared_data, tmp_path):
    rel, extra = TASKS[task]
    path = shared_data / rel if rel else TASK_FIXTURES / "hellaswag" / "hellaswag_val.jsonl"
    run_cli(
        tmp_path,
        f"task={task}",
        f"task.path={path}",
        "task.n_questions=3",
        "sampling.n_samples=1",
        f"task.data_dir={tmp_path / 'data'}",
        f"cache.path={tmp_path / 'cache.sqlite'}",
        "hydra.run.dir=out",
        *extra,
        env={"COTFAITH_DATA_URL": "http://127.0.0.1:9"},  # never the internet
    )
    out = tmp_path / "out"
    s = summary(out)
    assert set(s["task"]) == {task}
    assert (s["n_questions"] == 3).all(), s[["intervention", "n_questions"]]
    rows = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines() if x]
    assert rows and {r["task"] for r in rows} == {task}
    assert len({r["question_id"] for r in rows}) == 3
    assert not (tmp_path / "data").exists()  # a local path given: nothing downloaded
