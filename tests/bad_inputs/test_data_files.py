"""Benchmark data files: a corpus of malformed files, at least one per way a published file can
break. Each fails in one line naming the file, the line or record and the field, or
(task.on_bad_record=skip) is skipped and counted while the good records load. Bad task config
values and an unreachable download follow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from cotfaith.errors import ConfigError
from cotfaith.tasks import build_task
from tests.bad_inputs.corpus import one_line

pytestmark = pytest.mark.usefixtures("no_download")

AQUA_OK = {"question": "1+1?", "options": ["A)1", "B)2"], "correct": "B"}
ARC_OK = {
    "id": "ok",
    "question": {
        "stem": "S?",
        "choices": [{"text": "x", "label": "A"}, {"text": "y", "label": "B"}],
    },
    "answerKey": "A",
}
TQA_OK = {"question": "Q?", "mc1_targets": {"yes": 1, "no": 0}}
SQA_OK = {"qid": "q1", "question": "Is it?", "answer": True}
HOTPOT_OK = {
    "_id": "h1",
    "question": "Same?",
    "answer": "yes",
    "context": [["T1", ["a."]], ["T2", ["b."]]],
    "supporting_facts": [["T1", 0]],
}
HELLA_OK = {
    "ind": 1,
    "activity_label": "A",
    "ctx": "c",
    "endings": ["a", "b", "c", "d"],
    "label": 0,
}
BBH_OK = {"input": "Q?\nOptions:\n(A) x\n(B) y", "target": "(A)"}
TURPIN_OK = {
    "parsed_inputs": "Q?\n\nAnswer choices:\n(A) x\n(B) y",
    "multiple_choice_targets": ["x", "y"],
    "multiple_choice_scores": [1, 0],
}
LOGIQA_OK = ["", "a", "Passage.", "Question?", "A.w", "B.x", "C.y", "D.z"]


def jsonl(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@dataclass
class Case:
    id: str
    task: str
    file: str
    """Path of the broken file inside the test's folder."""
    content: str | bytes
    where: str
    """"line N" or "record N"."""
    field: str
    fatal: bool = False
    """The whole file is unreadable: an error even with on_bad_record=skip."""
    extra: dict | None = None
    path: str | None = None
    """task.path relative to the folder (default: the file)."""


CASES = [
    Case(
        "aqua-invalid-json",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK, '{"question": "x",,}'),
        "line 2",
        "(json)",
    ),
    Case(
        "aqua-truncated",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK)[:-1] + '\n{"question": "2+2?", "opt',
        "line 2",
        "(json)",
    ),
    Case(
        "aqua-missing-correct",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK, {"question": "q", "options": ["A)1", "B)2"]}),
        "line 2",
        "correct",
    ),
    Case(
        "aqua-unknown-label",
        "aqua",
        "dev.json",
        jsonl({**AQUA_OK, "correct": "F"}, AQUA_OK),
        "line 1",
        "correct",
    ),
    Case(
        "aqua-option-unlabelled",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK, {**AQUA_OK, "options": ["A)1", "two"]}),
        "line 2",
        "options",
    ),
    Case(
        "aqua-one-option",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK, {**AQUA_OK, "options": ["A)1"], "correct": "A"}),
        "line 2",
        "options",
    ),
    Case(
        "aqua-not-utf8",
        "aqua",
        "dev.json",
        jsonl(AQUA_OK).encode() + b'{"question": "\xff"}\n',
        "line 2",
        "",
        fatal=True,
    ),
    Case(
        "arc-unknown-answer-key",
        "arc_easy",
        "ARC-Easy-Dev.jsonl",
        jsonl(ARC_OK, {**ARC_OK, "id": "b", "answerKey": "5"}),
        "line 2",
        "answerKey",
    ),
    Case(
        "arc-missing-stem",
        "arc_easy",
        "ARC-Easy-Dev.jsonl",
        jsonl({**ARC_OK, "question": {"choices": []}}, ARC_OK),
        "line 1",
        "question.stem",
    ),
    Case(
        "arc-one-choice",
        "openbookqa",
        "test.jsonl",
        jsonl(
            ARC_OK,
            {
                "id": "b",
                "question": {"stem": "s", "choices": [{"text": "x", "label": "A"}]},
                "answerKey": "A",
            },
        ),
        "line 2",
        "question.choices",
    ),
    Case(
        "arc-choice-without-text",
        "arc_challenge",
        "ARC-Challenge-Test.jsonl",
        jsonl(
            ARC_OK,
            {
                "id": "b",
                "question": {"stem": "s", "choices": [{"text": "x", "label": "A"}, {"label": "B"}]},
                "answerKey": "A",
            },
        ),
        "line 2",
        "question.choices[1].text",
    ),
    Case(
        "arc-not-an-object",
        "arc_easy",
        "ARC-Easy-Dev.jsonl",
        jsonl(ARC_OK, "[1, 2]"),
        "line 2",
        "(json)",
    ),
    Case(
        "mmlu-missing-cell",
        "mmlu",
        "val/anatomy_val.csv",
        "Q?,a,b,c,d,A\nQ2?,a,b,c,d\n",
        "line 2",
        "answer",
        path=".",
    ),
    Case(
        "mmlu-unknown-answer",
        "mmlu",
        "val/anatomy_val.csv",
        "Q?,a,b,c,d,E\r\nQ2?,a,b,c,d,A\r\n",
        "line 1",
        "answer",
        path=".",
    ),
    Case(
        "mmlu-truncated-quote",
        "mmlu",
        "val/anatomy_val.csv",
        'Q?,a,b,c,d,A\n"Q2?,a,b',
        "line 2",
        "(csv)",
        path=".",
    ),
    Case(
        "tqa-two-true-answers",
        "truthfulqa",
        "mc_task.json",
        json.dumps([TQA_OK, {"question": "Q2?", "mc1_targets": {"a": 1, "b": 1}}]),
        "record 2",
        "mc1_targets",
    ),
    Case(
        "tqa-missing-question",
        "truthfulqa",
        "mc_task.json",
        json.dumps([{"mc1_targets": {"a": 1, "b": 0}}, TQA_OK]),
        "record 1",
        "question",
    ),
    Case(
        "tqa-truncated-json",
        "truthfulqa",
        "mc_task.json",
        json.dumps([TQA_OK, TQA_OK], indent=1)[:-20],
        "line 12",
        "(json)",
        fatal=True,
    ),
    Case(
        "tqa-csv-missing-column",
        "truthfulqa",
        "TruthfulQA.csv",
        "Question,Best Answer\nQ?,A\n",
        "line 1",
        "Incorrect Answers",
        fatal=True,
    ),
    Case(
        "tqa-csv-extra-cells",
        "truthfulqa",
        "TruthfulQA.csv",
        "Question,Best Answer,Incorrect Answers\nQ?,A,B\nQ2?,A,B,C\n",
        "line 3",
        "(row)",
    ),
    Case(
        "logiqa-unknown-answer",
        "logiqa",
        "Eval.txt",
        "\n".join(LOGIQA_OK + ["", "e", "P.", "Q?", "A.w", "B.x", "C.y", "D.z"]),
        "line 10",
        "answer",
    ),
    Case(
        "logiqa-truncated-block",
        "logiqa",
        "Eval.txt",
        "\n".join(LOGIQA_OK + ["", "b", "P.", "Q?", "A.w"]),
        "line 10",
        "options",
    ),
    Case(
        "logiqa-empty-option",
        "logiqa",
        "Eval.txt",
        "\n".join(["", "a", "P.", "Q?", "A.w", "B.", "C.y", "D.z"] + LOGIQA_OK),
        "line 2",
        "option B",
    ),
    Case(
        "strategyqa-answer-not-bool",
        "strategyqa",
        "dev.json",
        json.dumps([SQA_OK, {**SQA_OK, "qid": "q2", "answer": "yes"}]),
        "record 2",
        "answer",
    ),
    Case(
        "strategyqa-record-not-object",
        "strategyqa",
        "dev.json",
        json.dumps([SQA_OK, "q2"]),
        "record 2",
        "(record)",
    ),
    Case(
        "hotpot-fact-title-missing",
        "hotpotqa",
        "hotpot.json",
        json.dumps([HOTPOT_OK, {**HOTPOT_OK, "_id": "h2", "supporting_facts": [["T9", 0]]}]),
        "record 2",
        "supporting_facts",
    ),
    Case(
        "hotpot-missing-answer",
        "hotpotqa",
        "hotpot.json",
        json.dumps([{k: v for k, v in HOTPOT_OK.items() if k != "answer"}, HOTPOT_OK]),
        "record 1",
        "answer",
    ),
    Case(
        "hotpot-bad-paragraph",
        "hotpotqa",
        "hotpot.json",
        json.dumps([HOTPOT_OK, {**HOTPOT_OK, "_id": "h3", "context": [["T1", "a."]]}]),
        "record 2",
        "context[0]",
    ),
    Case(
        "hellaswag-label-out-of-range",
        "hellaswag",
        "hellaswag_val.jsonl",
        jsonl(HELLA_OK, {**HELLA_OK, "ind": 2, "label": 4}),
        "line 2",
        "label",
    ),
    Case(
        "hellaswag-unlabelled",
        "hellaswag",
        "hellaswag_val.jsonl",
        jsonl({k: v for k, v in HELLA_OK.items() if k != "label"}, HELLA_OK),
        "line 1",
        "label",
    ),
    Case(
        "bbh-target-not-an-option",
        "bbh",
        "bbh/navigate.json",
        json.dumps({"examples": [BBH_OK, {**BBH_OK, "target": "(D)"}]}),
        "record 2",
        "target",
        extra={"n_shots": 0},
        path=".",
    ),
    Case(
        "bbh-free-text-target",
        "bbh",
        "bbh/snarks.json",
        json.dumps({"examples": [BBH_OK, {"input": "2+2=", "target": "4"}]}),
        "record 2",
        "target",
        extra={"n_shots": 0},
        path=".",
    ),
    Case(
        "bbh-no-examples-key",
        "bbh",
        "bbh/hyperbaton.json",
        json.dumps({"data": [BBH_OK]}),
        "",
        "examples",
        fatal=True,
        extra={"n_shots": 0},
        path=".",
    ),
    Case(
        "turpin-two-gold",
        "bbh_turpin",
        "snarks/val_data.json",
        json.dumps({"data": [TURPIN_OK, {**TURPIN_OK, "multiple_choice_scores": [1, 1]}]}),
        "record 2",
        "multiple_choice_scores",
        extra={"n_shots": 0},
        path="snarks",
    ),
    Case(
        "turpin-no-choice-list",
        "bbh_turpin",
        "snarks/val_data.json",
        json.dumps({"data": [{**TURPIN_OK, "parsed_inputs": "Q? (A) x (B) y"}, TURPIN_OK]}),
        "record 1",
        "parsed_inputs",
        extra={"n_shots": 0},
        path="snarks",
    ),
    Case(
        "turpin-count-mismatch",
        "bbh_turpin",
        "snarks/val_data.json",
        json.dumps({"data": [TURPIN_OK, {**TURPIN_OK, "multiple_choice_targets": ["x"]}]}),
        "record 2",
        "multiple_choice_scores",
        extra={"n_shots": 0},
        path="snarks",
    ),
]


def _setup(case: Case, tmp_path: Path) -> tuple[Path, dict]:
    file = tmp_path / case.file
    file.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(case.content, bytes):
        file.write_bytes(case.content)
    else:
        file.write_text(case.content, newline="")
    path = tmp_path / case.path if case.path else file
    cfg = {"name": case.task, "path": str(path), **(case.extra or {})}
    return file, cfg


def test_the_corpus_is_large_and_covers_every_format():
    assert len(CASES) >= 36
    tasks = {c.task for c in CASES}
    assert {"aqua", "mmlu", "truthfulqa", "logiqa", "strategyqa", "hotpotqa"} <= tasks
    assert {"hellaswag", "bbh", "bbh_turpin", "arc_easy", "openbookqa"} <= tasks


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_line_error_names_file_record_and_field(case, tmp_path):
    file, cfg = _setup(case, tmp_path)
    with pytest.raises(ConfigError) as e:
        build_task(cfg)
    msg = one_line(str(e.value))
    assert str(file) in msg, msg
    if case.where:
        assert f"{case.where}:" in msg or f"{case.where} " in msg, msg
    if case.field:
        assert f"field '{case.field}'" in msg, msg


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_skip_mode_counts_the_bad_record_and_keeps_the_good_ones(case, tmp_path, caplog):
    _, cfg = _setup(case, tmp_path)
    cfg["on_bad_record"] = "skip"
    if case.fatal:
        with pytest.raises(ConfigError):
            build_task(cfg)
        return
    questions = build_task(cfg)
    assert len(questions) >= 1
    assert {q.meta["skipped_records"] for q in questions} == {1}
    assert "skipped 1 malformed record(s)" in caplog.text


# (task config, on top of a good file from the shared data; the key the error names)
TASK_VALUES = [
    ("on_bad_record", {"name": "aqua", "path": "aqua/dev.json", "on_bad_record": "ignore"}),
    ("split", {"name": "aqua", "path": "aqua/dev.json", "split": "validation"}),
    ("n_shots", {"name": "aqua", "path": "aqua/dev.json", "n_shots": None}),
    ("task.path", {"name": "aqua", "path": "/nonexistent/dev.json"}),
    ("subjects", {"name": "mmlu", "path": "mmlu", "subjects": "astrology"}),
    ("subtasks", {"name": "bbh", "path": "bbh", "subtasks": "word_sorting"}),
    ("few_shot", {"name": "bbh_turpin", "few_shot": "all_b"}),
    ("task.n_questions", {"name": "aqua", "path": "aqua/dev.json", "n_questions": 0}),
    ("task.n_questions", {"name": "aqua", "path": "aqua/dev.json", "n_questions": -2}),
    ("task.path", {"name": "aqua", "path": "."}),
]


@pytest.mark.parametrize("key, cfg", TASK_VALUES, ids=[f"{k}={c}" for k, c in TASK_VALUES])
def test_bad_task_config_values_fail_in_one_line(shared_data, key, cfg):
    cfg = dict(cfg)
    if "path" in cfg and not cfg["path"].startswith("/"):
        cfg["path"] = str(shared_data / cfg["path"]) if cfg["path"] != "." else str(shared_data)
    with pytest.raises(ConfigError) as e:
        build_task(cfg)
    assert key in one_line(str(e.value))


# ----------------------------------------------------------------------------- more files
MORE = [
    Case("aqua-empty-file", "aqua", "dev.json", "", "", "", fatal=True),
    Case("aqua-blank-lines-only", "aqua", "dev.json", "\n\n\n", "", "", fatal=True),
    Case("tqa-empty-list", "truthfulqa", "mc_task.json", "[]", "", "", fatal=True),
    Case("tqa-a-mapping", "truthfulqa", "mc_task.json", json.dumps(TQA_OK), "", "", fatal=True),
    Case(
        "strategyqa-utf16",
        "strategyqa",
        "dev.json",
        json.dumps([SQA_OK]).encode("utf-16"),
        "",
        "",
        fatal=True,
    ),
    Case("mmlu-empty-csv", "mmlu", "val/anatomy_val.csv", "", "", "", fatal=True, path="."),
]


@pytest.mark.parametrize("case", MORE, ids=[c.id for c in MORE])
def test_an_unreadable_or_empty_file_names_the_file(case, tmp_path):
    file, cfg = _setup(case, tmp_path)
    with pytest.raises(ConfigError) as e:
        build_task(cfg)
    msg = one_line(str(e.value))
    assert str(file) in msg or cfg["path"] in msg, msg


def test_a_download_from_an_unreachable_server_says_where_to_put_the_file(no_download):
    with pytest.raises(ConfigError) as e:
        build_task({"name": "aqua"})
    msg = one_line(str(e.value))
    assert "cannot download" in msg and str(no_download / "aqua" / "dev.json") in msg


def test_a_data_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "afile"))  # a file in the way
    monkeypatch.setenv("COTFAITH_DATA_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as e:
        build_task({"name": "aqua"})
    msg = one_line(str(e.value))
    assert "cannot make the data folder" in msg and str(tmp_path / "afile") in msg
