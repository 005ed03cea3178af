"""A corpus of bad inputs, each answered by its one-line error (never a traceback, never a
silently accepted value): command-line credentials, config values, prompt files, cache files,
organism knobs, intervention settings, overrides. Task data files have their own corpus
(tests/test_tasks_bad.py); garbled model replies are recorded as statuses (tests/test_answers.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from cotfaith.cache import RequestCache
from cotfaith.cli import CONFIG_DIR, check_overrides
from cotfaith.errors import ConfigError, CotfaithError
from cotfaith.interventions.base import build_interventions
from cotfaith.models import build_model
from cotfaith.prompts import load_templates
from cotfaith.validate import credential_error, validate
from tests.helpers import run_cli


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _one_line(text: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text


# ----------------------------------------------------------------------------- credentials
CREDENTIALS = [
    "+model.api_key=sk-abc123def456ghi789jkl0mno",
    "+model.api_key=hunter2",
    "++model.token=abc",
    "+model.password=p",
    "+secret=xyz",
    "model.name=sk-proj-abcdefghijklmnop1234",
    "model.api_key_env=sk-ant-api03-abcdefghij1234567890",
    "mistake_model.api_key_env=sk-abc123def456ghi789jkl",
    "+model.headers.x-api-key=k",
    "prompts.path=/tmp/sk-abc123def456ghi789jkl0.yaml",
    "+hf_token=hf_abcdefghij0123456789xyz",
    "task.name=ghp_abcdefghij0123456789xyzw",
    "+model.default_headers.Authorization=Bearer gsk_abcdefghijklmnopqrstuvwxyz012345",
    "model.base_url=http://localhost:8000/v1?token=abc123def456ghi",
    "model.base_url=https://user:hunter2@example.org/v1",
]


@pytest.mark.parametrize("override", CREDENTIALS)
def test_credentials_on_the_command_line_are_refused(override):
    error = credential_error([override])
    assert error is not None
    _one_line(error)
    assert "environment variable" in error or "NAME of an environment variable" in error


@pytest.mark.parametrize(
    "override",
    [
        "model.api_key_env=OPENAI_API_KEY",
        "task.n_questions=5",
        "model.name=gpt-4o-mini",
        "cache.path=outputs/key_cache.sqlite",
        "+experiment=lanham2023_smoke",
    ],
)
def test_ordinary_overrides_are_not_mistaken_for_credentials(override):
    assert credential_error([override]) is None


# ----------------------------------------------------------------------------- config values
VALUES = [
    (("sampling.temperature=-1",), "sampling.temperature"),
    (("sampling.top_p=0",), "sampling.top_p"),
    (("sampling.top_p=1.5",), "sampling.top_p"),
    (("sampling.max_tokens=0",), "sampling.max_tokens"),
    (("model=openai", "model.name=x", "model.timeout=0"), "model.timeout"),
    (("model=openai", "model.name=x", "model.timeout=-3"), "model.timeout"),
    (("model=openai", "model.name=x", "model.requests_per_minute=0"), "requests_per_minute"),
    (("model=openai", "model.name=x", "model.tokens_per_minute=-5"), "tokens_per_minute"),
    (("model=openai", "model.name=x", "model.concurrency=0"), "model.concurrency"),
    (("model=openai", "model.name=x", "model.retries=-1"), "model.retries"),
    (("model=openai", "model.name=x", "model.temperature=-0.5"), "model.temperature"),
    (("model=openai", "model.name=x", "model.top_p=2"), "model.top_p"),
    (("model=openai", "model.name=x", "model.max_tokens=0"), "model.max_tokens"),
    (("model=openai", "model.name=x", "model.base_url=ftp://host/v1"), "model.base_url"),
    (("model=openai", "model.name=x", "model.base_url=localhost:8000"), "model.base_url"),
    (("model=anthropic", "model.timeout=0"), "model.timeout"),
    (
        ("mistake_model=openai", "mistake_model.name=x", "mistake_model.timeout=0"),
        "mistake_model.timeout",
    ),
    (("paraphrase_model=anthropic", "paraphrase_model.top_p=2"), "paraphrase_model.top_p"),
    (("budget.max_usd=-1",), "budget.max_usd"),
    (("report.ci=2",), "report.ci"),
    (("report.ci=0",), "report.ci"),
    (("report.n_bootstrap=-1",), "report.n_bootstrap"),
    (("report.ci_method=studentized",), "report.ci_method"),
    (("report.unparseable=maybe",), "report.unparseable"),
    (("max_failed_share=1.5",), "max_failed_share"),
    (("cache.path=''",), "cache.path"),
    (("cache.path=' '",), "cache.path"),
]


@pytest.mark.parametrize("overrides, key", VALUES, ids=[" ".join(o) for o, _ in VALUES])
def test_bad_values_fail_at_start_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        validate(_compose(*overrides))
    _one_line(str(e.value))
    assert key in str(e.value)


# ----------------------------------------------------------------------------- organism knobs
KNOBS = [
    ("faithfulness=1.5", "faithfulness"),
    ("faithfulness=-0.1", "faithfulness"),
    ("accuracy_cot=2", "accuracy_cot"),
    ("accuracy_no_cot=-1", "accuracy_no_cot"),
    ("verify_rate=1.1", "verify_rate"),
    ("commitment_gamma=0", "commitment_gamma"),
    ("commitment_gamma=-1", "commitment_gamma"),
    ("filler_use=2", "filler_use"),
    ("mistake_invalid_rate=1.5", "mistake_invalid_rate"),
]


@pytest.mark.parametrize("override, key", KNOBS)
def test_bad_organism_knobs_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        build_model(_compose(f"model.{override}").model)
    _one_line(str(e.value))
    assert key in str(e.value)


# ----------------------------------------------------------------------------- interventions
INTERVENTIONS = [
    (
        ("intervention=[adding_mistakes]", "intervention.adding_mistakes.positions=some"),
        "positions",
    ),
    (("intervention=[filler_tokens]", "intervention.filler_tokens.step=0"), "step"),
    (("intervention=[filler_tokens]", "intervention.filler_tokens.step=-5"), "step"),
]


@pytest.mark.parametrize("overrides, key", INTERVENTIONS)
def test_bad_intervention_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        build_interventions(_compose(*overrides).intervention)
    _one_line(str(e.value))
    assert key in str(e.value)


def test_an_intervention_name_that_is_not_registered_names_the_known_ones():
    with pytest.raises(ConfigError) as e:
        build_interventions({"x": {"name": "early_answring"}})
    assert "early_answring" in str(e.value) and "truncation" in str(e.value)


# ----------------------------------------------------------------------------- prompt files
PROMPT_FILES = [
    ("folder", None, "is a folder"),
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
]


@pytest.mark.parametrize("name, content, expected", PROMPT_FILES, ids=[p[0] for p in PROMPT_FILES])
def test_bad_prompt_files_are_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_templates(path)
    _one_line(str(e.value))
    assert expected in str(e.value)


# ----------------------------------------------------------------------------- cache files
def _truncated_sqlite(path):
    good = path.with_suffix(".good")
    RequestCache(good).close()
    path.write_bytes(good.read_bytes()[:1000])


CACHE_FILES = [
    ("random bytes", lambda p: p.write_bytes(os.urandom(4096))),
    ("text file", lambda p: p.write_text("not a database\n" * 50)),
    ("truncated", _truncated_sqlite),
    ("a folder", lambda p: p.mkdir()),
]


@pytest.mark.parametrize("what, make", CACHE_FILES, ids=[c[0] for c in CACHE_FILES])
def test_bad_cache_files_are_one_line(tmp_path, what, make):
    path = tmp_path / "cache.sqlite"
    make(path)
    with pytest.raises(ConfigError) as e:
        cache = RequestCache(path)
        cache.get("0" * 64)  # a truncated file may open and fail at the first read
    _one_line(str(e.value))
    assert "cache.path" in str(e.value) and str(path) in str(e.value)


def test_a_locked_cache_fails_in_one_line_rather_than_hanging(tmp_path):
    path = tmp_path / "cache.sqlite"
    RequestCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        cache = RequestCache(path)
        cache._db.execute("PRAGMA busy_timeout=200")  # the test's patience, not the default
        started = time.monotonic()
        with pytest.raises(CotfaithError) as e:
            cache.put("k" * 64, {"provider": "p", "model": "m"}, {"messages": []}, {"text": "x"})
        assert time.monotonic() - started < 5
        _one_line(str(e.value))
        assert "cannot store a response" in str(e.value) and "locked" in str(e.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ----------------------------------------------------------------------------- overrides
OVERRIDES = [
    ("+model.faithfulnes=0.3", "faithfulnes"),
    ("+experiment=nope", "lanham2023"),
    ("experiment=lanham2023_smoke", "+experiment"),
    ("task=nope", "available"),
    ("model=gpt4", "available"),
    ("mistake_model=gpt", "available"),
    ("+sampling.n_sample=3", "n_sample"),
]


@pytest.mark.parametrize("override, expected", OVERRIDES)
def test_bad_overrides_are_one_line(override, expected):
    with pytest.raises(ConfigError) as e:
        check_overrides([override])
    _one_line(str(e.value))
    assert expected in str(e.value)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_key_on_the_command_line_never_reaches_the_disk(tmp_path):
    secret = "sk-abcdefghijklmnopqrstuvwxyz0123"
    proc = run_cli(tmp_path, f"+model.api_key={secret}", "hydra.run.dir=out", check=False)
    assert proc.returncode == 2
    _one_line(proc.stderr)
    assert secret not in proc.stderr + proc.stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(secret not in p.read_text(errors="ignore") for p in written)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_runs_started_at_once_from_one_folder_get_two_folders(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "cotfaith",
        "progress=false",
        "task.n_questions=4",
        "sampling.n_samples=1",
    ]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    folders = sorted((tmp_path / "outputs").glob("*/*/records.jsonl"))
    assert len(folders) == 2
    for f in folders:
        assert len(f.read_text().splitlines()) > 0


@pytest.mark.slow
def test_a_folder_holding_records_is_not_reused_without_resume(tmp_path):
    run_cli(tmp_path, "task.n_questions=3", "sampling.n_samples=1", "hydra.run.dir=out")
    before = (tmp_path / "out" / "records.jsonl").read_text()
    proc = run_cli(
        tmp_path, "task.n_questions=3", "sampling.n_samples=1", "hydra.run.dir=out", check=False
    )
    assert proc.returncode == 2 and "resume=true" in proc.stderr
    assert (tmp_path / "out" / "records.jsonl").read_text() == before  # untouched
    run_cli(
        tmp_path, "task.n_questions=3", "sampling.n_samples=1", "hydra.run.dir=out", "resume=true"
    )


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_sweep_but_the_exit_code_says_so(tmp_path):
    proc = run_cli(
        tmp_path,
        "-m",
        "model.faithfulness=2,0.5",
        "task.n_questions=3",
        "sampling.n_samples=1",
        "hydra.sweep.dir=sweep",
        check=False,
    )
    assert proc.returncode == 2
    assert (tmp_path / "sweep" / "1" / "records.jsonl").is_file()  # the next job still ran
    assert "1 job(s) of the sweep failed" in proc.stderr and "faithfulness" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_records_writes_the_report_and_says_how_to_resume(tmp_path):
    import json
    import signal

    cmd = [
        sys.executable,
        "-m",
        "cotfaith",
        "progress=false",
        "task.n_questions=40",
        "sampling.n_samples=2",
        "model.latency=0.05",
        "model.concurrency=2",
        "hydra.run.dir=out",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    records = tmp_path / "out" / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (records.exists() and records.stat().st_size > 2000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err.strip().splitlines()[-1] and "resume" in err
    kept = [line for line in records.read_text().splitlines() if line]
    assert kept and all(json.loads(line) for line in kept)  # every kept row is whole
    assert (tmp_path / "out" / "report.html").is_file()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "interrupted"
