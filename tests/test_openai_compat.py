"""OpenAI-compatible servers as they really are (issue 6), through the real `cotfaith` command
and the real openai SDK, against the loopback server taught llama.cpp's departures from the
OpenAI API (tests/fakeapi `LLAMACPP`): `continue_final_message` ignored, no
`GET /v1/models/{id}`, `max_completion_tokens` ignored, `GET /props` with the chat template.

Each test here fails on the code before issue 6: it recorded the answers of an ignored prefill
and of a model answering in sentences as `ok`, could not check a model on llama.cpp, and said
"model not served (404)" for a base URL without /v1.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cotfaith.models.chat_template import ChatTemplate
from tests.fakeapi import LLAMACPP, ServerThread, make_openai_app
from tests.helpers import load_records, run_cli, summary
from tests.test_backends import ENV, KEY, SMALL, _one_clear_line, answers, openai_args, run_json

# SmolLM2-135M-Instruct's chat template, as its GGUF file and tokenizer_config.json hold it:
# ChatML with a default system turn, which our built-in ChatML leaves out
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The same experiment on the built-in simulated model."""
    cwd = tmp_path_factory.mktemp("reference")
    run_cli(cwd, *SMALL, "hydra.run.dir=out")
    return answers(cwd / "out")


@pytest.fixture()
def llamacpp():
    """A llama.cpp-like server: ignores continue_final_message and max_completion_tokens, has
    no /v1/models/{id}, and reports SmolLM2's chat template at /props."""
    app = make_openai_app(
        key=KEY,
        models=("smol",),
        chatty_models=("smol-chatty",),
        props_template=SMOL_TEMPLATE,
        props_tokens=("<|im_start|>", "<|im_end|>"),
        **LLAMACPP,
    )
    with ServerThread(app) as srv:
        yield srv


def compat(srv, *extra: str, name: str = "smol") -> tuple[str, ...]:
    return (
        "model=openai_compatible",
        f"model.base_url={srv.base_url}",
        f"model.name={name}",
        "model.api_key_env=OPENAI_API_KEY",
        "model.retry_initial=0.01",
        *extra,
    )


def statuses(run_dir: Path) -> set[str]:
    return {r["parse_status"] for r in load_records(run_dir)}


# ------------------------------------------------------------------ verified continuation
def test_explicit_prefill_that_the_server_ignores_fails_in_one_line(tmp_path, llamacpp):
    proc = run_cli(
        tmp_path, *SMALL, *compat(llamacpp, "model.continuation=prefill"), check=False, env=ENV
    )
    _one_clear_line(
        proc,
        "model.continuation=prefill",
        "does not continue a prefilled assistant turn",
        "'1, 2, 3, 4, 5, 6, 7,'",  # what was asked, and below: the options
        "model.continuation=completion",
        "none",
    )
    # one probe, and nothing else was sent: no answer was read from an ignored prefill
    assert llamacpp.stats()["requests"] == 1


def test_auto_continuation_falls_back_to_completion_with_the_servers_template(
    tmp_path, llamacpp, reference
):
    run_cli(tmp_path, *SMALL, *compat(llamacpp), "hydra.run.dir=out", env=ENV)
    run = run_json(tmp_path / "out")
    assert run["continuation"] == "completion" and run["cot_prompt"] == "prefill"
    assert any("does not continue a prefilled chat turn" in n for n in run["notices"])
    # the template came from GET /props: its content is part of the cache key...
    served = ChatTemplate(text=SMOL_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert run["backend"]["chat_template"] == served.key
    assert run["backend"]["chat_template"] != "chatml"
    # ...and the prompts carry its default system turn, as the server's own chat rendering does
    assert SMOL_SYSTEM in llamacpp.stats()["system_turns"]
    # really continued: the answers are the organism's, all read as ok
    assert answers(tmp_path / "out") == reference
    assert statuses(tmp_path / "out") == {"ok"}
    rec = load_records(tmp_path / "out")[0]
    assert rec["continuation_strategy"] == "completion"


def test_replay_of_a_completion_run_needs_neither_server_nor_key(tmp_path, reference):
    app = make_openai_app(key=KEY, models=("smol",), props_template=SMOL_TEMPLATE, **LLAMACPP)
    with ServerThread(app) as srv:
        args = (*SMALL, *compat(srv, "model.continuation=auto"))
        run_cli(tmp_path, *args, "hydra.run.dir=first", env=ENV)
    # the server is gone: the template, the probes and every answer come from the cache
    run_cli(tmp_path, *args, "cache.mode=replay", "hydra.run.dir=again", env={"OPENAI_API_KEY": ""})
    assert answers(tmp_path / "again") == answers(tmp_path / "first") == reference
    assert run_json(tmp_path / "again")["backend"] == run_json(tmp_path / "first")["backend"]
    with sqlite3.connect(tmp_path / "outputs" / "cache.sqlite") as db:
        probes = {name for (name,) in db.execute("SELECT name FROM probes")}
    assert {"chat_template", "continuation", "logprobs"} <= probes


# ------------------------------------------------------------------ read-out validity
def test_answers_given_as_sentences_are_low_mass_not_ok(tmp_path, llamacpp):
    # a small model told to reply with the letter only starts "The single, ..." anyway: its
    # first token holds 14% on the letters, which the old read-out renormalised into answers
    run_cli(
        tmp_path,
        *SMALL,
        *compat(llamacpp, "model.continuation=none", name="smol-chatty"),
        "hydra.run.dir=out",
        env=ENV,
    )
    rows = load_records(tmp_path / "out")
    assert run_json(tmp_path / "out")["answer_strategy"] == "logprobs"
    assert {r["parse_status"] for r in rows} == {"low_mass"}
    assert all(r["answer"] is None and r["answer_probs"] is not None for r in rows)
    assert all(r["same_answer"] in (None, False) for r in rows)  # never agreement
    masses = [r["letter_mass"] for r in rows if r.get("letter_mass") is not None]
    assert masses and all(m == pytest.approx(0.14) for m in masses)
    assert summary(tmp_path / "out")["parse_failures"].sum() == len(rows)


def test_the_letter_mass_threshold_is_a_config_key(tmp_path, llamacpp):
    run_cli(
        tmp_path,
        *SMALL,
        *compat(llamacpp, "model.continuation=none", name="smol-chatty"),
        "answer.min_letter_mass=0.1",
        "hydra.run.dir=out",
        env=ENV,
    )
    assert statuses(tmp_path / "out") == {"ok"}


# ------------------------------------------------------------------ servers as they are
def test_model_openai_runs_against_llamacpp_and_caps_output_with_max_tokens(tmp_path, llamacpp):
    # OpenAI's model check (GET /v1/models/{id}) 404s on llama.cpp: the list decides instead
    run_cli(
        tmp_path,
        *SMALL,
        "model=openai",
        f"model.base_url={llamacpp.base_url}",
        "model.name=smol",
        "model.retry_initial=0.01",
        "hydra.run.dir=out",
        env=ENV,
    )
    assert statuses(tmp_path / "out") == {"ok"}
    # llama.cpp ignores max_completion_tokens: every request capped its output with max_tokens
    caps = llamacpp.stats()["cap_fields"]
    assert caps.get("max_tokens", 0) > 0 and "max_completion_tokens" not in caps


def test_model_openai_still_says_when_the_model_is_not_listed(tmp_path, llamacpp):
    proc = run_cli(
        tmp_path,
        *SMALL,
        "model=openai",
        f"model.base_url={llamacpp.base_url}",
        "model.name=no-such-model",
        check=False,
        env=ENV,
    )
    _one_clear_line(proc, "model.name", "'no-such-model' is not served", "smol")


def test_the_output_cap_field_can_be_forced(tmp_path):
    with ServerThread(make_openai_app(key=KEY, models=("fake-gpt",))) as srv:
        run_cli(
            tmp_path,
            *SMALL,
            *openai_args(srv, "model.max_tokens_field=max_completion_tokens"),
            "hydra.run.dir=out",
            env=ENV,
        )
        caps = srv.stats()["cap_fields"]
    assert caps.get("max_completion_tokens", 0) > 0 and "max_tokens" not in caps
    # a field the server might ignore changes outputs: it is part of the cache key
    assert run_json(tmp_path / "out")["backend"]["max_tokens_field"] == "max_completion_tokens"


@pytest.mark.parametrize("model", ["openai", "openai_compatible"])
def test_base_url_without_v1_is_diagnosed(tmp_path, llamacpp, model):
    proc = run_cli(
        tmp_path,
        *SMALL,
        f"model={model}",
        f"model.base_url={llamacpp.root_url}",
        "model.name=smol",
        "model.api_key_env=OPENAI_API_KEY",
        check=False,
        env=ENV,
    )
    _one_clear_line(
        proc,
        f"model.base_url: {llamacpp.root_url} answers 404 for /models but "
        f"{llamacpp.root_url}/v1/models works: add /v1",
    )
    assert llamacpp.stats()["requests"] == 0


def test_unknown_continuation_and_template_are_one_clear_line(tmp_path, llamacpp):
    proc = run_cli(tmp_path, *compat(llamacpp, "model.continuation=sometimes"), check=False)
    _one_clear_line(proc, "model.continuation", "'sometimes'")
    missing = tmp_path / "nope.json"
    proc = run_cli(tmp_path, *compat(llamacpp, f"model.chat_template={missing}"), check=False)
    _one_clear_line(proc, "model.chat_template", str(missing))


def test_a_template_file_given_in_config_is_used(tmp_path):
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": SMOL_TEMPLATE, "eos_token": "<|im_end|>"}))
    with ServerThread(make_openai_app(key=KEY, models=("smol",))) as srv:  # no /props here
        run_cli(
            tmp_path,
            *SMALL,
            *compat(srv, "model.continuation=completion", f"model.chat_template={config}"),
            "hydra.run.dir=out",
            env=ENV,
        )
        assert SMOL_SYSTEM in srv.stats()["system_turns"]
    run = run_json(tmp_path / "out")
    assert (
        run["backend"]["chat_template"]
        == ChatTemplate(text=SMOL_TEMPLATE, eos_token="<|im_end|>").key
    )
    assert not any("no chat template found" in n for n in run["notices"])
    assert statuses(tmp_path / "out") == {"ok"}
