"""Bad overrides and config values: each fails in one line naming the key or override (never a
traceback, never a silently accepted value), before anything is spent.

Applied in-process where a function owns the check (check_overrides, check_composition,
validate, the component builders, the runner's start), and through the command line only for
what is about the exit code and the run folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cotfaith.cli import check_composition, check_output_folder, check_overrides
from cotfaith.errors import ConfigError, CotfaithError
from cotfaith.interventions.base import build_interventions
from cotfaith.models import build_model
from cotfaith.validate import validate
from tests.bad_inputs.corpus import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    TINY,
    Cli,
    compose,
    is_root,
    one_line,
    params,
    pool_fixture,
    run_case,
    unwritable_system_folder,
)

# ----------------------------------------------------------------------------- overrides
# (override, applied with check_overrides, substring of the one-line error)
OVERRIDES = [
    ("+model.faithfulnes=0.3", "faithfulnes"),
    ("+experiment=nope", "lanham2023"),
    ("experiment=lanham2023_smoke", "+experiment"),
    ("task=nope", "available"),
    ("model=gpt4", "available"),
    ("mistake_model=gpt", "available"),
    ("+sampling.n_sample=3", "n_sample"),
    ("intervention=[bogus]", "no intervention option 'bogus'"),
    ("intervention=[truncation,early_answering]", "early_answering"),
    ("reasoning=nope", "no reasoning option 'nope'"),
    ("+report.cii=0.9", "'report' has no key 'cii'"),
]


@pytest.mark.parametrize("override, expected", OVERRIDES, ids=[o for o, _ in OVERRIDES])
def test_bad_overrides_are_one_line(override, expected):
    with pytest.raises(ConfigError) as e:
        check_overrides([override])
    assert expected in one_line(str(e.value))


# ----------------------------------------------------------------------------- composition
# (overrides, multirun, substrings): what Hydra would refuse in several lines with exit code 1
COMPOSITION = [
    (("task.n_questions=abc",), False, ("task.n_questions=abc", "key task.n_questions")),
    (("sampling.temperature=[1,2]",), False, ("list", "key sampling.temperature")),
    (("sampling.temperature=null",), False, ("not Optional", "key sampling.temperature")),
    (
        ("intervention=[filler_tokens]", "intervention.filler_tokens.stepp=3"),
        False,
        ("'stepp' not in 'FillerTokensConfig'", "key intervention.filler_tokens.stepp"),
    ),
    (("task.n_question=3",), False, ("'n_question'", "key task.n_question")),
    (("cache.mode=bogus",), False, ("expected one of", "key cache.mode")),
    (("report.seed=1.5",), False, ("Integer", "key report.seed")),
    (("model.faithfulness=high",), False, ("Float", "key model.faithfulness")),
    (("model={a:1}",), False, ("'a' not in 'SimulatedModelConfig'", "key model.a")),
    (("hydra.run.dir=[a]",), False, ("key hydra.run.dir",)),
    (("task.n_questions=[1,",), False, ("task.n_questions=[1,", "cannot parse")),
    (("+sampling=3",), False, ("sampling",)),
    (("model.faithfulness=0,1",), False, ("model.faithfulness=0,1", "--multirun")),
    (("task.n_questions=2,abc",), True, ("task.n_questions=abc", "key task.n_questions")),
    (("model=simulated,openai", "model.faithfulnes=1"), True, ("faithfulnes",)),
]


@pytest.mark.parametrize(
    "overrides, multirun, expected", COMPOSITION, ids=[" ".join(c[0]) for c in COMPOSITION]
)
def test_a_config_that_does_not_compose_is_one_line(overrides, multirun, expected):
    with pytest.raises(ConfigError) as e:
        check_composition(list(overrides), multirun=multirun, output=False)
    for text in expected:
        assert text in one_line(str(e.value))


def test_a_config_that_composes_passes(tmp_path):
    check_composition(["task.n_questions=3", f"hydra.run.dir={tmp_path}/out"])
    check_composition(["task.n_questions=2,3", f"hydra.sweep.dir={tmp_path}/s"], multirun=True)


# ----------------------------------------------------------------------------- run folder
def _file_in_the_way(tmp: Path) -> tuple[Path, str]:
    (tmp / "afile").write_text("x")
    return tmp / "afile", "is a file, not a folder"


def _under_a_file(tmp: Path) -> tuple[Path, str]:
    (tmp / "afile").write_text("x")
    return tmp / "afile" / "out", "(in hydra.run.dir="


def _read_only(tmp: Path) -> tuple[Path, str]:
    if is_root():
        pytest.skip("root writes in a read-only folder")
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o500)
    return tmp / "ro" / "out", "cannot write in"


def _system_folder(tmp: Path) -> tuple[Path, str]:
    folder = unwritable_system_folder()
    if folder is None:
        pytest.skip("no folder here that even root cannot write in")
    return folder / "cotfaith_out", "cannot write in"


RUN_FOLDERS = [
    ("a file", _file_in_the_way),
    ("under a file", _under_a_file),
    ("read-only (chmod)", _read_only),
    ("read-only file system (/sys)", _system_folder),
]


@pytest.mark.parametrize("what, make", RUN_FOLDERS, ids=[w for w, _ in RUN_FOLDERS])
def test_an_unusable_run_folder_is_one_line(tmp_path, what, make):
    folder, expected = make(tmp_path)
    try:
        with pytest.raises(ConfigError) as e:
            check_output_folder(folder)
        assert expected in one_line(str(e.value)) and "hydra.run.dir" in str(e.value)
    finally:
        (tmp_path / "ro").exists() and (tmp_path / "ro").chmod(0o700)


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
    (("max_failed_share=-0.1",), "max_failed_share"),
    (("report.min_cots_per_length=-1",), "report.min_cots_per_length"),
    (("report.n_examples=-2",), "report.n_examples"),
    (("progress_every=-1",), "progress_every"),
    (("intervention.truncation=5",), "intervention.truncation"),
    (("intervention.no_cot=null",), "intervention.no_cot"),
]


@pytest.mark.parametrize("overrides, key", VALUES, ids=[" ".join(o) for o, _ in VALUES])
def test_bad_values_fail_at_start_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        validate(compose(*overrides))
    assert key in one_line(str(e.value))


def test_the_default_config_is_valid():
    validate(compose())


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


@pytest.mark.parametrize("override, key", KNOBS, ids=[k for k, _ in KNOBS])
def test_bad_organism_knobs_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        build_model(compose(f"model.{override}").model)
    assert key in one_line(str(e.value))


# ----------------------------------------------------------------------------- interventions
INTERVENTIONS = [
    (
        ("intervention=[adding_mistakes]", "intervention.adding_mistakes.positions=some"),
        "positions",
    ),
    (("intervention=[filler_tokens]", "intervention.filler_tokens.step=0"), "step"),
    (("intervention=[filler_tokens]", "intervention.filler_tokens.step=-5"), "step"),
]


@pytest.mark.parametrize("overrides, key", INTERVENTIONS, ids=[i[0][1] for i in INTERVENTIONS])
def test_bad_intervention_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        build_interventions(compose(*overrides).intervention)
    assert key in one_line(str(e.value))


def test_an_intervention_name_that_is_not_registered_names_the_known_ones():
    with pytest.raises(ConfigError) as e:
        build_interventions({"x": {"name": "early_answring"}})
    assert "early_answring" in one_line(str(e.value)) and "truncation" in str(e.value)


LEFT = [
    (
        ("intervention=[adding_mistakes]", "intervention.adding_mistakes.n_random=-2"),
        "n_random",
    ),
    (("intervention=[filler_tokens]", "intervention.filler_tokens.max_filler=-1"), "max_filler"),
]


@pytest.mark.parametrize("overrides, key", LEFT, ids=[i[0][1] for i in LEFT])
def test_negative_intervention_counts_name_the_key(overrides, key):
    cfg = compose(*overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
        build_interventions(cfg.intervention)
    assert key in one_line(str(e.value))


# ----------------------------------------------------------------------------- run start
# (overrides, substring): values only the runner's start can judge, applied with run_async
RUN_START = [
    (("sampling.n_samples=0",), "sampling.n_samples"),
    (("sampling.n_samples=-3",), "sampling.n_samples"),
    (("task.n_questions=0",), "task.n_questions=0"),
    (("task.n_questions=-1",), "task.n_questions=-1"),
    (("segmentation.method=words",), "segmentation.method"),
    (("answer.strategy=guess",), "answer.strategy"),
    (("continuation.strategy=magic",), "continuation.strategy"),
    (("answer.min_letter_mass=2",), "answer.min_letter_mass"),
    (("cache.mode=replay", "cache.path=nothing.sqlite"), "nothing.sqlite"),
    (("cache.path=.",), "is a folder"),
    (("prompts.path=nope.yaml",), "prompts.path"),
    (("model=openai", "model.api_key_env=COTFAITH_TEST_UNSET"), "COTFAITH_TEST_UNSET"),
    (("budget.max_usd=1", "model.name=unpriced-organism"), "no price"),
]


def _run_start(tmp_path: Path, *overrides: str):
    from cotfaith.runner import run_async

    cfg = compose(*overrides)
    return asyncio.run(run_async(cfg, tmp_path / "out", tmp_path))


@pytest.mark.parametrize("overrides, expected", RUN_START, ids=[" ".join(o) for o, _ in RUN_START])
def test_bad_values_stop_the_run_at_start(tmp_path, monkeypatch, overrides, expected):
    monkeypatch.delenv("COTFAITH_TEST_UNSET", raising=False)
    with pytest.raises(CotfaithError) as e:
        _run_start(tmp_path, "progress=false", *overrides)
    assert expected in one_line(str(e.value))
    assert not (tmp_path / "out" / "records.jsonl").exists()  # nothing ran


def test_resume_on_a_folder_that_does_not_exist_just_runs(tmp_path):
    result = _run_start(tmp_path, *TINY, "resume=true")
    assert result.status == "ok" and (tmp_path / "out" / "records.jsonl").stat().st_size


# ----------------------------------------------------------------------------- command line
def _afile(tmp: Path) -> None:
    (tmp / "afile").write_text("x")


def _records_folder(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "records.jsonl").write_text('{"a": 1}\n')


def _untouched(tmp: Path, proc) -> None:
    assert (tmp / "out" / "records.jsonl").read_text() == '{"a": 1}\n'


def _next_job_ran(tmp: Path, proc) -> None:
    assert (tmp / "sweep" / "1" / "records.jsonl").is_file()  # the next job still ran
    assert "model.faithfulness must be" in proc.stderr  # the bad job's own line names the key


CLI = [
    Cli("type error", (*TINY, "task.n_questions=abc", "hydra.run.dir=out"), 2, ("n_questions",)),
    Cli("report.ci=2", (*TINY, "report.ci=2", "hydra.run.dir=out"), 2, ("report.ci",)),
    Cli("n_samples=0", (*TINY, "sampling.n_samples=0", "hydra.run.dir=out"), 2, ("n_samples",)),
    Cli(
        "run dir is a file",
        (*TINY, "hydra.run.dir=afile"),
        2,
        ("hydra.run.dir", "afile", "not a folder"),
        {},
        _afile,
    ),
    Cli(
        "sweep dir under a file",
        ("-m", *TINY, "task.seed=1,2", "hydra.sweep.dir=afile/sweep"),
        2,
        ("hydra.sweep.dir", "afile"),
        {},
        _afile,
    ),
    Cli(
        "a folder holding records without resume",
        (*TINY, "hydra.run.dir=out"),
        2,
        ("resume=true", "records.jsonl"),
        {},
        _records_folder,
        after=_untouched,
    ),
    Cli(
        "a sweep with one bad job",
        ("-m", *TINY, "model.faithfulness=2,0.5", "hydra.sweep.dir=sweep"),
        2,
        ("1 job(s) of the sweep failed",),
        after=lambda tmp, proc: _next_job_ran(tmp, proc),
        lines=2,
    ),
]
cli_pool = pool_fixture(CLI, "test_command_line_exit_codes")


@pytest.mark.slow
@pytest.mark.parametrize("case", params(CLI))
def test_command_line_exit_codes(case, cli_pool):
    run_case(case, cli_pool)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_two_runs_started_at_once_from_one_folder_get_two_folders(tmp_path):
    cmd = [sys.executable, "-m", "cotfaith", *TINY]
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == EXIT_OK, err
    folders = sorted((tmp_path / "outputs").glob("*/*/records.jsonl"))
    assert len(folders) == 2
    for f in folders:
        assert len(f.read_text().splitlines()) > 0


def test_a_folder_holding_records_is_not_reused_without_resume(tmp_path):
    _run_start(tmp_path, *TINY)
    before = (tmp_path / "out" / "records.jsonl").read_text()
    with pytest.raises(ConfigError) as e:
        _run_start(tmp_path, *TINY)
    assert "resume=true" in one_line(str(e.value)) and str(tmp_path / "out") in str(e.value)
    assert (tmp_path / "out" / "records.jsonl").read_text() == before  # untouched
    assert _run_start(tmp_path, *TINY, "resume=true").status == "ok"


@pytest.mark.slow
def test_ctrl_c_keeps_records_writes_the_report_and_says_how_to_resume(tmp_path):
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
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as in a terminal: a suite started in the background by a non-interactive shell (CI
        # scripts run with `&`) ignores SIGINT, and its children would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = tmp_path / "out" / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (records.exists() and records.stat().st_size > 2000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert "interrupted" in err.strip().splitlines()[-1] and "resume" in err
    kept = [line for line in records.read_text().splitlines() if line]
    assert kept and all(json.loads(line) for line in kept)  # every kept row is whole
    assert (tmp_path / "out" / "report.html").is_file()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "interrupted"


def test_ctrl_c_while_starting_is_one_line_and_130(tmp_path):
    """Ctrl-C while cotfaith imports its libraries (0.3 s), composes and checks the config, or
    instantiates Hydra's callbacks (later; where each moment falls depends on the machine):
    exit 130 and no traceback every time; one line and nothing written while starting. A
    KeyboardInterrupt there used to be caught by a library mid-import (Hydra: "Error locating
    target", exit 1) or marked unhandled by CPython (the process died by SIGINT)."""
    procs = []
    # a run long enough that every moment falls before its end, on any machine
    long_run = ["model.latency=0.05", "task.n_questions=40", "progress=false"]
    for delay in (0.3, 1.0, 1.7, 2.4):
        folder = tmp_path / str(delay)
        folder.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cotfaith", *long_run, "hydra.run.dir=out"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        procs.append((delay, folder, proc, time.monotonic()))
    try:
        for delay, _, proc, started in procs:
            time.sleep(max(0.0, started + delay - time.monotonic()))
            proc.send_signal(signal.SIGINT)
        starting = 0
        for delay, folder, proc, _ in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == EXIT_INTERRUPTED, (delay, err)
            assert "Traceback" not in err, (delay, err)
            assert "interrupted" in err.strip().splitlines()[-1], (delay, err)
            if "interrupted while starting" in err:
                starting += 1
                assert err.strip().splitlines() == [err.strip()], (delay, err)
                assert not (folder / "out" / "records.jsonl").exists()
        assert starting  # (importing alone takes over a second)
    finally:
        for _, _, proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
