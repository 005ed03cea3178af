"""A key never reaches a file, by any route it can come in: the environment variable named by
model.api_key_env, a command-line override (refused before Hydra writes anything), a prompt
file (refused), and a server that quotes the key back in its error messages (scrubbed).

Each route is driven through the real `cotfaith` command against the loopback fakes; afterwards
every file under the launch folder (the run folder, .hydra/, cli.log, records, run.json, the
report, the SQLite cache) and the command's stdout and stderr are searched for the key, and for
the masked form an echoing server shows ("sk-test-****...6789"). Two kinds of key: one that
looks like a provider's (`sk-...`), and a local gateway's that matches no pattern, so only
knowing the key itself can keep it out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fakeapi import Faults, ServerThread, make_anthropic_app, make_openai_app
from tests.helpers import load_records, run_cli

KEYS = {
    "provider": "sk-test-ROUTES-key-0123456789abcdef",
    "local": "gw-local-7f3a9c2e1b44d05e",
}
SMALL = (
    "task.n_questions=2",
    "sampling.n_samples=1",
    "report.n_bootstrap=20",
    "intervention=[no_cot]",
    "model.retries=1",
    "model.retry_initial=0.01",
    "model.retry_max=0.05",
    "model.timeout=5",
)


def masked(key: str) -> str:
    """How an echoing fake shows a key partly masked (tests/fakeapi/common.py quoted_key)."""
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:]


def where_it_leaked(key: str, cwd: Path, *procs: subprocess.CompletedProcess[str]) -> list[str]:
    """Every file under `cwd`, and the output of `procs`, that holds `key` or its masked form."""
    needles = [key.encode(), masked(key).encode()]
    found = [
        str(p.relative_to(cwd))
        for p in sorted(cwd.rglob("*"))
        if p.is_file() and any(n in p.read_bytes() for n in needles)
    ]
    for i, proc in enumerate(procs):
        for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if any(n.decode() in text for n in needles):
                found.append(f"command {i} {name}")
    return found


def openai_args(srv: ServerThread) -> tuple[str, ...]:
    return (
        "model=openai",
        f"model.base_url={srv.base_url}",
        "model.name=fake-gpt",
        "model.api_key_env=OPENAI_API_KEY",
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("cotfaith: error:")]


# ------------------------------------------------------------------ the environment
@pytest.mark.slow
# (an sk- key by this route: tests/test_backends.py::test_the_key_is_never_written_anywhere)
@pytest.mark.parametrize("kind", ["local"])
def test_a_key_from_the_environment_is_used_and_never_written(tmp_path, kind):
    key = KEYS[kind]
    # the first calls fail (retried), the rest do not: the key is sent many times
    faults = Faults(sequence=("500", "429", "truncated"))
    with ServerThread(make_openai_app(key=key, faults=faults)) as srv:
        proc = run_cli(
            tmp_path,
            *SMALL,
            *openai_args(srv),
            "model.retries=6",
            "hydra.run.dir=out",
            env={"OPENAI_API_KEY": key},
        )
        assert srv.stats()["ok"] > 0 and srv.stats()["faults"]  # the key was used, and retried
    assert any(p.suffix == ".sqlite" for p in tmp_path.rglob("*"))
    assert where_it_leaked(key, tmp_path, proc) == []


# ------------------------------------------------------------------ a server that echoes it
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "echo", "backend"),
    [
        # a full echo is the exact key (scrubbed by value: tested by one preflight case
        # below); masked echoes keep only parts, of either shape
        ("provider", "masked", "anthropic"),
        ("local", "masked", "openai"),
    ],
)
def test_a_key_a_server_quotes_back_in_errors_is_scrubbed(tmp_path, kind, echo, backend):
    """Errors are recorded (a 400 is final: its text goes into the row), logged and shown;
    a server quoting the key in them must not put it in any of those places."""
    key = KEYS[kind]
    # a 500 and a 429 first (retried, logged), then 400s: every call fails for good with the
    # server's text recorded in its row (not sent again at the end, which would replace it)
    faults = Faults(sequence=("500", "429"), rate=1.0, kinds=("400",), phases=("generation",))
    if backend == "openai":
        app = make_openai_app(key=key, faults=faults, echo_key=echo)
    else:
        app = make_anthropic_app(key=key, models=("claude-fake",), faults=faults, echo_key=echo)
    with ServerThread(app) as srv:
        model = (
            openai_args(srv)
            if backend == "openai"
            else ("model=anthropic", f"model.base_url={srv.root_url}", "model.name=claude-fake")
        )
        env = {"OPENAI_API_KEY": key, "ANTHROPIC_API_KEY": key}
        proc = run_cli(
            tmp_path,
            *SMALL,
            *model,
            "retry_failed_at_end=false",
            "hydra.run.dir=out",
            check=False,
            env=env,
        )
        assert srv.stats()["faults"].get("400"), srv.stats()
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # the route was exercised: failed rows carry the server's error text
    failed = [r for r in load_records(tmp_path / "out") if r["parse_status"] == "call_failed"]
    assert failed and any("rejected by the fake server" in r["extra"]["error"] for r in failed)
    assert where_it_leaked(key, tmp_path, proc) == []


@pytest.mark.parametrize("kind", ["local"])
def test_a_key_quoted_in_a_preflight_error_is_scrubbed_from_the_one_line(tmp_path, kind):
    key = KEYS[kind]
    faults = Faults(rate=1.0, kinds=("400",), phases=("logprobs_probe",))
    with ServerThread(make_openai_app(key=key, faults=faults, echo_key="full")) as srv:
        proc = run_cli(
            tmp_path, *SMALL, *openai_args(srv), check=False, env={"OPENAI_API_KEY": key}
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert "rejected by the fake server" in line  # the server's message is shown ...
    assert where_it_leaked(key, tmp_path, proc) == []  # ... without the key


@pytest.mark.parametrize("kind", ["provider"])
def test_a_rejected_key_quoted_back_by_the_server_is_not_shown(tmp_path, kind):
    """An old or wrong key in the environment: the server's 401 quotes it."""
    key = KEYS[kind]
    with ServerThread(make_openai_app(key="sk-the-right-one-000000", echo_key="full")) as srv:
        proc = run_cli(
            tmp_path, *SMALL, *openai_args(srv), check=False, env={"OPENAI_API_KEY": key}
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert "rejected the key" in line
    assert where_it_leaked(key, tmp_path, proc) == []


# ------------------------------------------------------------------ the command line
OVERRIDES = [
    "model.api_key_env={key}",  # the key where its variable's name belongs
    "+model.api_key={key}",
    "model.base_url=http://127.0.0.1:9/v1?api_key={key}",
    "model.base_url=http://user:{key}@127.0.0.1:9/v1",
    "hydra.job.env_set.OPENAI_API_KEY={key}",
    "+mistake_model.key={key}",
    "model.api_key_env=OPENAI_API_KEY,{key}",  # in a sweep's list
]


# every route with a provider's key; with a shapeless key, the routes that name the key
ROUTES = [("provider", o) for o in OVERRIDES] + [
    ("local", o) for o in OVERRIDES if "api_key" in o or "env_set" in o
]


@pytest.mark.parametrize(("kind", "override"), ROUTES)
def test_a_key_on_the_command_line_is_refused_before_anything_is_written(tmp_path, kind, override):
    key = KEYS[kind]
    multirun = ("-m",) if "," in override else ()
    proc = run_cli(
        tmp_path,
        *multirun,
        "model=openai",
        "model.name=fake-gpt",
        override.format(key=key),
        check=False,
        env={"OPENAI_API_KEY": ""},
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(error_lines(proc)) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert where_it_leaked(key, tmp_path, proc) == []
    # refused by cotfaith before Hydra starts (Hydra writes every override to .hydra/): not
    # even a run folder. A key with no provider's shape given as model.api_key_env is no
    # environment variable's name either (those are letters, digits and _)
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


# ------------------------------------------------------------------ a prompt file
@pytest.mark.parametrize("kind", list(KEYS))
def test_a_key_in_a_prompt_file_is_refused_and_never_sent_or_stored(tmp_path, kind):
    """A template holding the key would be sent to the model and stored in the cache."""
    key = KEYS[kind]
    prompts = tmp_path.parent / f"{tmp_path.name}-prompts.yaml"
    prompts.write_text(f'cot_prefix: "Let\'s think step by step (auth {key}):"\n')
    with ServerThread(make_openai_app(key=key)) as srv:
        proc = run_cli(
            tmp_path,
            *SMALL,
            *openai_args(srv),
            f"prompts.path={prompts}",
            "hydra.run.dir=out",
            check=False,
            env={"OPENAI_API_KEY": key},
        )
        sent = srv.stats()["requests"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert "prompts" in line or str(prompts.name) in line, line
    assert sent == 0  # refused before any call
    assert where_it_leaked(key, tmp_path, proc) == []
