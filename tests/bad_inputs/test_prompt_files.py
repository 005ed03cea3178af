"""Prompt files (prompts.path): every way one can be unusable fails in one line naming the
file and, where there is one, the template key or the line."""

from __future__ import annotations

import json

import pytest

from cotfaith.errors import ConfigError
from cotfaith.prompts import load_templates
from tests.bad_inputs.corpus import one_line

# (file name, content: None = nothing written, "folder" = a folder; substring of the error)
PROMPT_FILES = [
    ("folder", "folder", "is a folder"),
    ("latin1.yaml", b"\xff\xfe question: x", "not UTF-8"),
    ("brace.yaml", b'question: "Question: {question\\n\\nChoices:\\n{choices}"\n', "brace"),
    ("unknown.yaml", b"qestion: x\n", "unknown template key"),
    ("null.yaml", b"question:\n", "have no value"),
    ("list.yaml", b"- a\n- b\n", "expected a mapping"),
    ("broken.yaml", b"question: [unclosed\n", "not valid YAML"),
    ("placeholder.yaml", b'question: "Question: {question}"\n', "placeholders"),
    ("mistake.yaml", b'mistake_turn: "{question}"\n', "placeholders"),
    ("missing.yaml", None, "does not exist"),
    ("key.yaml", b'cot_prefix: "Use key sk-proj-abc123def456ghi789jkl0 and think:"\n', "API key"),
    ("scalar.yaml", b"just a sentence\n", "expected a mapping"),
    ("tab.yaml", b"question:\n\t- x\n", "not valid YAML"),
    ("extra-placeholder.yaml", b'choice: " ({letter}): {text} {extra}"\n', "'choice'"),
    ("context-brace.yaml", b'context: "{context\\n"\n', "'context' cannot be formatted"),
    ("utf16.yaml", "question: x\n".encode("utf-16"), "not UTF-8"),
]


@pytest.mark.parametrize("name, content, expected", PROMPT_FILES, ids=[p[0] for p in PROMPT_FILES])
def test_bad_prompt_files_are_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_templates(path)
    message = one_line(str(e.value))
    assert expected in message and name in message


def test_a_good_prompt_file_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text('cot_prefix: "Réfléchissons étape par étape :"\n', encoding="utf-8")
    assert load_templates(path).cot_prefix.startswith("Réfléchissons")


def test_a_prompt_file_the_simulated_model_cannot_read_gets_a_warning(tmp_path, caplog):
    import asyncio

    from cotfaith.runner import run_async
    from tests.bad_inputs.corpus import TINY, compose

    path = tmp_path / "q.yaml"
    path.write_text('question: "Q: {question}\\nOptions:\\n{choices}"\n', encoding="utf-8")
    cfg = compose(*TINY, f"prompts.path={path}")
    asyncio.run(run_async(cfg, tmp_path / "out", tmp_path))
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("simulated model cannot read the CoT and answer prompts" in m for m in said)
    # the run says so where a reader looks (run.json's notices, shown in the report)...
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert any("cannot read" in n for n in run["notices"])
    # ...and the project's own wording, or a file that keeps it, is read without a word
    caplog.clear()
    kept = tmp_path / "kept.yaml"
    kept.write_text('answer_question: "So, which answer is it?"\n', encoding="utf-8")
    asyncio.run(run_async(compose(*TINY, f"prompts.path={kept}"), tmp_path / "o2", tmp_path))
    assert not [r for r in caplog.records if "cannot read" in r.getMessage()]
