"""Continuation of a partial CoT (adding mistakes, paraphrase) through every strategy, against
the loopback servers with the real SDKs: Anthropic prefill, vLLM continue_final_message, raw
completion, and the labelled scaffold; helper roles on another backend than the model under
test, with their calls and costs kept apart."""

from __future__ import annotations

import json

import pytest

from tests.fakeapi import ServerThread, make_anthropic_app, make_openai_app
from tests.helpers import load_records, run_cli, summary

KEY = "sk-test-THIS-KEY-MUST-NEVER-BE-WRITTEN-0123456789"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
SMALL = ("task.n_questions=4", "sampling.n_samples=1", "report.n_bootstrap=20")
CONTINUING = "intervention=[adding_mistakes,paraphrase]"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def openai_server():
    with ServerThread(make_openai_app(key=KEY, models=("fake-gpt", "gpt-4o-mini"))) as srv:
        yield srv


@pytest.fixture(scope="module")
def anthropic_server():
    with ServerThread(make_anthropic_app(key=KEY, models=("claude-fake",))) as srv:
        yield srv


def _openai(srv, model: str = "openai", name: str = "fake-gpt", *extra: str) -> tuple[str, ...]:
    return (
        f"model={model}",
        f"model.base_url={srv.base_url}",
        f"model.name={name}",
        "model.api_key_env=OPENAI_API_KEY",
        "model.retry_initial=0.01",
        *extra,
    )


def _continued(run_dir) -> list[dict]:
    return [
        r
        for r in load_records(run_dir)
        if r["intervention"] in ("adding_mistakes", "paraphrase")
        and r["payload"].get("continuation")
    ]


@pytest.mark.parametrize(
    "server, args, strategy",
    [
        ("anthropic", ("model=anthropic", "model.name=claude-fake"), "prefill"),
        ("openai", ("model.continuation=prefill",), "prefill"),
        ("openai", ("model.continuation=completion",), "completion"),
        ("openai", ("continuation.allow_scaffold=true",), "scaffold"),
    ],
    ids=["anthropic-prefill", "vllm-continue_final_message", "raw-completion", "scaffold"],
)
def test_every_continuation_strategy_is_used_and_recorded(
    tmp_path, request, openai_server, anthropic_server, server, args, strategy
):
    if server == "anthropic":
        base = (f"model.base_url={anthropic_server.root_url}", "model.retry_initial=0.01", *args)
    elif strategy == "scaffold":
        base = _openai(openai_server, "openai", "fake-gpt", *args)
    else:
        base = _openai(openai_server, "openai_compatible", "fake-gpt", *args)
    run_cli(tmp_path, *SMALL, CONTINUING, *base, "hydra.run.dir=out", env=ENV)
    rows = _continued(tmp_path / "out")
    assert rows, "no row was continued"
    assert {r["continuation_strategy"] for r in rows} == {strategy}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["continuation_strategy"] == strategy
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"Continuation by: {strategy}" in html  # the report names the manipulation
    assert ("a different manipulation" in html) == (strategy == "scaffold")


def test_a_backend_that_cannot_continue_is_one_line_naming_the_options(tmp_path, openai_server):
    proc = run_cli(
        tmp_path,
        *SMALL,
        CONTINUING,
        *_openai(openai_server),
        "hydra.run.dir=out",
        env=ENV,
        check=False,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    for option in ("model.continuation=prefill|completion", "continuation.allow_scaffold=true"):
        assert option in err[0]
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_helper_roles_on_another_backend_have_their_own_calls_and_costs(tmp_path, openai_server):
    """The model under test is the built-in organism; the mistake model is an OpenAI model."""
    run_cli(
        tmp_path,
        *SMALL,
        "intervention=[adding_mistakes]",
        "mistake_model=openai",
        f"mistake_model.base_url={openai_server.base_url}",
        "mistake_model.name=gpt-4o-mini",
        "mistake_model.retry_initial=0.01",
        "hydra.run.dir=out",
        env=ENV,
    )
    rows = [r for r in load_records(tmp_path / "out") if r["intervention"] == "adding_mistakes"]
    roles = {c["role"] for r in rows for c in r["call_log"]}
    assert roles == {"model", "mistake_model"}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["roles"]["mistake_model"]["provider"] == "openai"
    assert run["roles"]["mistake_model"]["model"] == "gpt-4o-mini"
    assert run["roles"]["model"]["provider"] == "simulated"
    mistake_calls = {c["key"] for r in rows for c in r["call_log"] if c["role"] == "mistake_model"}
    assert run["roles"]["mistake_model"]["calls"] == len(mistake_calls)
    assert openai_server.stats()["ok"] >= len(mistake_calls)
    s = summary(tmp_path / "out").set_index("intervention")
    assert s.loc["adding_mistakes", "mistake_model_calls"] == len(mistake_calls)
    # gpt-4o-mini is priced: the mistake model's cost is known and separate; the organism's is 0
    assert s.loc["adding_mistakes", "mistake_model_cost_usd"] > 0
    assert run["roles"]["mistake_model"]["spent_usd"] > 0
    assert run["roles"]["model"]["spent_usd"] == 0
