"""Subsampling (seeded, stable as the file grows), stable ids, choice shuffling, and few-shot
demonstrations that never hold the question asked."""

from __future__ import annotations

import json
import re

import pytest

from cotfaith.errors import ConfigError
from cotfaith.tasks import build_task
from cotfaith.tasks.bbh_turpin import few_shot_prompts
from cotfaith.tasks.build import leaks

pytestmark = pytest.mark.usefixtures("no_download")


def _aqua_file(path, start, stop, prepend=()):
    rows = [*prepend]
    for i in range(start, stop):
        rows.append(
            {"question": f"What is {i} + 1?", "options": ["A)0", f"B){i + 1}"], "correct": "B"}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _ids(cfg):
    return [q.id for q in build_task(cfg)]


def test_subsample_is_seeded_and_extends_as_a_prefix(shared_data):
    base = {"name": "aqua", "path": str(shared_data / "aqua/dev.json")}
    ten = _ids({**base, "n_questions": 10})
    assert ten == _ids({**base, "n_questions": 10})
    assert ten == _ids({**base, "n_questions": 25})[:10]
    assert len(set(ten) & set(_ids({**base, "n_questions": 10, "seed": 1}))) < 5
    assert len(_ids({**base, "n_questions": 10_000})) == 254 == len(_ids(base))
    with pytest.raises(ConfigError, match="no questions"):
        build_task({**base, "n_questions": 0})


def test_subsample_is_stable_as_the_file_grows(tmp_path):
    small = _aqua_file(tmp_path / "a.json", 0, 50)
    before = set(_ids({"name": "aqua", "path": small, "n_questions": 10}))
    grown = _aqua_file(tmp_path / "b.json", 0, 100)
    after = set(_ids({"name": "aqua", "path": grown, "n_questions": 10}))
    old = set(_ids({"name": "aqua", "path": small}))
    # an old record chosen now was chosen before; old ones drop out only for new ones
    assert after & old <= before
    assert len(before - after) == len(after - old)
    # records inserted at the top of the file change nothing either
    extra = [{"question": "New?", "options": ["A)x", "B)y"], "correct": "A"}]
    moved = _aqua_file(tmp_path / "c.json", 0, 50, prepend=extra)
    chosen = set(_ids({"name": "aqua", "path": moved, "n_questions": 10}))
    assert chosen - before <= set(_ids({"name": "aqua", "path": moved})) - old


def test_ids_are_stable_and_repeated_records_stay_distinct(tmp_path):
    row = {"question": "Same?", "options": ["A)x", "B)y"], "correct": "A"}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    ids = sorted(_ids({"name": "aqua", "path": str(path)}))
    assert len(ids) == 2 and ids[1] == ids[0] + "#2"


def test_shuffle_keeps_the_gold_answer(shared_data):
    base = {"name": "arc_easy", "path": str(shared_data / "arc_easy/ARC-Easy-Dev.jsonl")}
    plain = {q.id: q for q in build_task(base)}
    shuffled = build_task({**base, "shuffle_choices": True})
    moved = 0
    for q in shuffled:
        p = plain[q.id]
        assert sorted(q.choices) == sorted(p.choices)
        assert q.choices[q.letters.index(q.answer)] == p.choices[p.letters.index(p.answer)]
        moved += q.choices != p.choices
    assert moved > 400
    again = build_task({**base, "shuffle_choices": True})
    assert [q.choices for q in again] == [q.choices for q in shuffled]


def test_truthfulqa_is_shuffled_by_default_and_can_be_left_alone(shared_data):
    path = str(shared_data / "truthfulqa/mc_task.json")
    assert {
        q.answer for q in build_task({"name": "truthfulqa", "path": path, "shuffle_choices": False})
    } == {"A"}
    default = build_task({"name": "truthfulqa", "path": path})
    assert len({q.answer for q in default}) >= 8


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "aqua", "path": "aqua/dev.json", "n_shots": 3},
        {"name": "logiqa", "path": "logiqa/Eval.txt", "n_shots": 2, "n_questions": 100},
        {"name": "mmlu", "path": "mmlu", "n_shots": 5},
        {"name": "mmlu", "path": "mmlu", "split": "dev", "n_shots": 2},
        {"name": "hotpotqa", "path": "hotpotqa/hotpot_dev_distractor_v1_100.json", "n_shots": 2},
        {
            "name": "strategyqa",
            "path": "strategyqa/dev.json",
            "n_shots": 4,
            "shuffle_choices": True,
        },
    ],
    ids=lambda c: f"{c['name']}-{c.get('split', '')}",
)
def test_held_apart_demos_never_hold_the_question(shared_data, cfg):
    cfg = {**cfg, "path": str(shared_data / cfg["path"])}
    qs = build_task(cfg)
    every = {q.id for q in build_task({**cfg, "n_shots": 0, "n_questions": None})}
    asked = {q.id for q in qs}
    for q in qs:
        assert q.demos, q.id
        shown = re.findall(r"Question: (.*?)\n\nChoices:", q.demos, re.S)
        assert q.text not in shown
        # fewer only where the file holds the same question twice (MMLU dev does)
        assert cfg["n_shots"] - 1 <= q.meta["n_demos"] == len(shown) <= cfg["n_shots"]
        assert re.search(r"The single, most likely answer is \([A-Z]\)\.$", q.demos)
        assert q.demos.count("The single, most likely answer is (") == len(shown)
        if q.context:
            assert not q.demos.startswith("Question: ")  # each demo shows its own passage
    if cfg.get("split") == "dev" or cfg["name"] != "mmlu":
        # demos come from records of the same file, held apart: never asked
        assert len(every - asked) >= cfg["n_shots"]


def test_mmlu_demos_come_from_the_same_subjects_dev_split(shared_data):
    dev = {
        q.text
        for q in build_task({"name": "mmlu", "path": str(shared_data / "mmlu"), "split": "dev"})
    }
    qs = build_task(
        {"name": "mmlu", "path": str(shared_data / "mmlu"), "subjects": "anatomy", "n_shots": 5}
    )
    demo_questions = re.findall(r"Question: (.*?)\n\nChoices:", qs[0].demos, re.S)
    assert len(demo_questions) == 5 and set(demo_questions) <= dev
    assert len({q.demos for q in qs}) == 1  # the same five for every question of a subject


def test_repeated_record_is_never_its_own_demo(tmp_path):
    rows = [{"question": f"Q{i}?", "options": ["A)x", "B)y"], "correct": "A"} for i in range(6)]
    rows.append(rows[0])  # the same question twice
    path = tmp_path / "dev.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for seed in range(20):
        for q in build_task({"name": "aqua", "path": str(path), "n_shots": 3, "seed": seed}):
            assert f"Question: {q.text}\n" not in (q.demos or "")


def test_published_bbh_demos_never_hold_the_question(shared_data):
    for q in build_task({"name": "bbh", "path": str(shared_data / "bbh")}):
        for block in q.demos.split("\n\nQ: ")[1:]:
            assert not leaks(q.text, q.choices, "Q: " + block)


def test_turpin_demo_that_is_the_question_is_dropped(shared_data):
    for few_shot in ("baseline", "all_a"):
        qs = build_task(
            {
                "name": "bbh_turpin",
                "path": str(shared_data / "bbh_turpin"),
                "subtasks": "navigate",
                "few_shot": few_shot,
            }
        )
        dropped = [q for q in qs if q.meta.get("demos_dropped")]
        assert len(dropped) == 2
        for q in dropped:
            core = q.text.split("\nQ: ")[1].removesuffix("\nA:")
            assert core not in q.demos and q.meta["n_demos"] == 11
        for q in qs:
            if not q.meta.get("demos_dropped"):
                assert q.meta["n_demos"] == 12


def test_turpin_exposes_both_published_prompts(shared_data):
    folder = shared_data / "bbh_turpin" / "snarks"
    prompts = few_shot_prompts("snarks", folder)
    raw = json.loads((folder / "few_shot_prompts.json").read_text())
    for name, key in (("baseline", "baseline_few_shot_prompt"), ("all_a", "all_a_few_shot_prompt")):
        assert prompts[name].render(prompts[name].blocks) == raw[key].rstrip()
    answers = [re.findall(r"best answer is: \(([A-Z])\)", b)[-1] for b in prompts["all_a"].blocks]
    assert set(answers) == {"A"}
    assert len(set(re.findall(r"best answer is: \(([A-Z])\)", raw["baseline_few_shot_prompt"]))) > 1
    qs = build_task(
        {
            "name": "bbh_turpin",
            "path": str(shared_data / "bbh_turpin"),
            "subtasks": "snarks",
            "few_shot": "all_a",
            "n_questions": 3,
        }
    )
    assert all(
        q.demos == raw["all_a_few_shot_prompt"].rstrip() and q.meta["few_shot"] == "all_a"
        for q in qs
    )
    two = build_task({"name": "bbh_turpin", "path": str(folder), "n_shots": 2, "n_questions": 1})
    assert two[0].demos.count("###") == 2 and two[0].meta["n_demos"] == 2
    none = build_task({"name": "bbh_turpin", "path": str(folder), "n_shots": 0, "n_questions": 1})
    assert none[0].demos is None and none[0].meta["few_shot"] is None


def test_bbh_n_shots(shared_data):
    base = {
        "name": "bbh",
        "path": str(shared_data / "bbh"),
        "subtasks": ["navigate"],
        "n_questions": 2,
    }
    assert all(q.demos.count("\nQ: ") == 1 for q in build_task({**base, "n_shots": 1}))
    assert all(q.demos is None for q in build_task({**base, "n_shots": 0}))
    file = build_task(
        {"name": "bbh", "path": str(shared_data / "bbh/bbh/navigate.json"), "n_questions": 2}
    )
    assert all(q.meta["n_demos"] == 3 for q in file)  # cot-prompts/ found beside bbh/
