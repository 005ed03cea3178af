"""The loopback API fakes, driven by the real openai and anthropic SDKs (nothing mocked)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from cotfaith.models.base import Message, ModelRequest, ModelResponse
from cotfaith.models.chat_template import render
from cotfaith.models.simulated import Knobs, SimulatedModel
from tests.fakeapi import (
    LLAMACPP,
    NO_PREFILL_MESSAGE,
    SAMPLE_HEADER,
    Faults,
    ServerProcess,
    ServerThread,
    counting,
    make_anthropic_app,
    make_openai_app,
    request_key,
)

KEY = "sk-fake-test-key"
QUESTION = "Question: What is 2 + 3?\n\nChoices:\n (A): 4\n (B): 5\n (C): 6\n (D): 7"
ANSWER_PREFIX = "The single, most likely answer is ("
COT_PREFIX = "Let's think step by step:"
ORGANISM = SimulatedModel(Knobs())


def run(coro):
    return asyncio.run(coro)


def direct(request: ModelRequest) -> ModelResponse:
    """What the organism answers without any HTTP in between."""
    return run(ORGANISM.generate(request))


@pytest.fixture(scope="module")
def oai() -> Iterator[ServerThread]:
    app = make_openai_app(key=KEY, models=["gpt-fake"], no_logprobs_models=["o-reasoner"])
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def ant() -> Iterator[ServerThread]:
    app = make_anthropic_app(key=KEY, models=["claude-fake"], no_prefill_models=["claude-new"])
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with zeroed counters and no faults on the shared servers."""
    servers = [request.getfixturevalue(n) for n in ("oai", "ant") if n in request.fixturenames]
    for srv in servers:
        srv.state.faults = Faults()
        srv.reset()
    yield


def oai_client(srv: ServerThread, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key=kw.pop("api_key", KEY), **kw)


def ant_client(srv: ServerThread, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(base_url=srv.root_url, api_key=kw.pop("api_key", KEY), **kw)


# ------------------------------------------------------------------------ OpenAI
def test_openai_chat_logprobs_parsed_by_sdk(oai: ServerThread) -> None:
    async def go():
        async with oai_client(oai) as c:
            return await c.chat.completions.create(
                model="gpt-fake",
                messages=[
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": ANSWER_PREFIX},
                ],
                logprobs=True,
                top_logprobs=3,
                max_tokens=1,
                temperature=0,
                extra_body={"continue_final_message": True, "add_generation_prompt": False},
            )

    r = run(go())
    want = direct(
        ModelRequest(
            messages=(Message("user", QUESTION),),
            prefill=ANSWER_PREFIX,
            max_tokens=1,
            top_logprobs=3,
        )
    )
    assert r.choices[0].message.content == want.text
    first = r.choices[0].logprobs.content[0]
    tops = [t.token for t in first.top_logprobs]
    assert len(tops) == 3 and first.token == tops[0] == want.text
    lps = [t.logprob for t in first.top_logprobs]
    assert lps == sorted(lps, reverse=True)
    assert lps[0] == pytest.approx(want.top_logprobs[want.text])
    assert first.bytes == list(first.token.encode())
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_openai_trailing_assistant_without_continue_is_history(oai: ServerThread) -> None:
    async def go():
        async with oai_client(oai) as c:
            return await c.chat.completions.create(
                model="gpt-fake",
                messages=[
                    {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
                    {"role": "assistant", "content": ANSWER_PREFIX},
                ],
            )

    r = run(go())
    # no prefill: a whole new turn, and no logprobs unless asked for
    assert r.choices[0].message.content.startswith(ANSWER_PREFIX)
    assert r.choices[0].logprobs is None
    assert r.choices[0].finish_reason == "stop"


def test_openai_continue_needs_add_generation_prompt_false(oai: ServerThread) -> None:
    async def go():
        async with oai_client(oai) as c:
            await c.chat.completions.create(
                model="gpt-fake",
                messages=[
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": ANSWER_PREFIX},
                ],
                extra_body={"continue_final_message": True},
            )

    with pytest.raises(openai.BadRequestError, match="add_generation_prompt"):
        run(go())


def test_openai_completions_chatml_legacy_logprobs(oai: ServerThread) -> None:
    messages = (Message("user", QUESTION),)
    prompt = render(messages, ANSWER_PREFIX)

    async def go():
        async with oai_client(oai) as c:
            return await c.completions.create(
                model="gpt-fake", prompt=prompt, logprobs=2, max_tokens=1, temperature=0
            )

    r = run(go())
    want = direct(ModelRequest(messages=messages, prefill=ANSWER_PREFIX, top_logprobs=2))
    choice = r.choices[0]
    assert choice.text == want.text
    assert choice.logprobs.tokens == [want.text]
    (top,) = choice.logprobs.top_logprobs
    assert len(top) == 2 and max(top, key=top.get) == want.text
    assert choice.logprobs.text_offset == [0]


def test_openai_no_logprobs_model_rejects_logprobs(oai: ServerThread) -> None:
    async def go(logprobs: bool):
        async with oai_client(oai) as c:
            return await c.chat.completions.create(
                model="o-reasoner",
                messages=[{"role": "user", "content": QUESTION}],
                logprobs=logprobs,
            )

    with pytest.raises(openai.BadRequestError) as ei:
        run(go(True))
    assert ei.value.code == "unsupported_parameter" and ei.value.param == "logprobs"
    assert "logprobs" in ei.value.message
    assert run(go(False)).choices[0].message.content  # the fallback works


def test_openai_models_and_404(oai: ServerThread) -> None:
    async def go():
        async with oai_client(oai) as c:
            m = await c.models.retrieve("gpt-fake")
            listed = [x.id async for x in c.models.list()]
            with pytest.raises(openai.NotFoundError) as e1:
                await c.models.retrieve("nope")
            with pytest.raises(openai.NotFoundError) as e2:
                await c.chat.completions.create(
                    model="nope", messages=[{"role": "user", "content": QUESTION}]
                )
            return m, listed, e1.value, e2.value

    m, listed, e1, e2 = run(go())
    assert m.id == "gpt-fake" and m.object == "model"
    assert listed == ["gpt-fake", "o-reasoner"]
    assert e1.code == e2.code == "model_not_found"
    assert e1.body["type"] == "invalid_request_error"


def test_openai_wrong_key(oai: ServerThread) -> None:
    async def go():
        async with oai_client(oai, api_key="sk-wrong") as c:
            await c.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": QUESTION}]
            )

    with pytest.raises(openai.AuthenticationError) as ei:
        run(go())
    assert ei.value.code == "invalid_api_key"
    assert "sk-wrong" not in ei.value.response.text and KEY not in ei.value.response.text
    assert oai.stats()["requests"] == 0  # refused before it counts as a generation request


# ------------------------------------------------------------------------ Anthropic
def test_anthropic_prefill_continues(ant: ServerThread) -> None:
    async def go():
        async with ant_client(ant) as c:
            return await c.messages.create(
                model="claude-fake",
                max_tokens=1,
                # anthropic 2.x has no sampling parameters on messages.create any more
                extra_body={"temperature": 0},
                messages=[
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": ANSWER_PREFIX},
                ],
            )

    r = run(go())
    want = direct(
        ModelRequest(
            messages=(Message("user", QUESTION),),
            prefill=ANSWER_PREFIX,
            max_tokens=1,
            temperature=0,
        )
    )
    assert r.content[0].text == want.text and len(want.text) == 1
    assert r.stop_reason == "end_turn" and r.role == "assistant"
    assert r.usage.cache_read_input_tokens == 0


def test_anthropic_no_prefill_model_refuses(ant: ServerThread) -> None:
    async def go(messages):
        async with ant_client(ant) as c:
            return await c.messages.create(model="claude-new", max_tokens=64, messages=messages)

    user = {"role": "user", "content": QUESTION}
    with pytest.raises(anthropic.BadRequestError) as ei:
        run(go([user, {"role": "assistant", "content": ANSWER_PREFIX}]))
    assert "does not support assistant message prefill" in ei.value.message
    assert ei.value.body["error"]["message"] == NO_PREFILL_MESSAGE
    assert run(go([user])).content[0].text.startswith(ANSWER_PREFIX)


def test_anthropic_models_404_and_wrong_key(ant: ServerThread) -> None:
    async def go():
        async with ant_client(ant) as c:
            m = await c.models.retrieve("claude-fake")
            with pytest.raises(anthropic.NotFoundError) as e1:
                await c.models.retrieve("nope")
            with pytest.raises(anthropic.NotFoundError) as e2:
                await c.messages.create(
                    model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                )
        async with ant_client(ant, api_key="wrong") as c:
            with pytest.raises(anthropic.AuthenticationError) as e3:
                await c.messages.create(
                    model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                )
        return m, e1.value, e2.value, e3.value

    m, e1, e2, e3 = run(go())
    assert m.id == "claude-fake" and m.type == "model"
    assert e1.body["error"]["type"] == e2.body["error"]["type"] == "not_found_error"
    assert e2.body["error"]["message"] == "model: nope"
    assert e3.body["error"]["type"] == "authentication_error"


# ------------------------------------------------------------------------ translation
def _recording_apps():
    seen: list[ModelRequest] = []

    async def responder(req: ModelRequest) -> ModelResponse:
        seen.append(req)
        return ModelResponse(text="ok", finish_reason="stop")

    return (
        seen,
        make_openai_app(key=KEY, responder=responder),
        make_anthropic_app(key=KEY, responder=responder),
    )


def test_requests_translate_and_carry_sample_index() -> None:
    seen, oapp, aapp = _recording_apps()
    user = {"role": "user", "content": QUESTION}

    async def go(o: ServerThread, a: ServerThread):
        async with oai_client(o) as c:
            base = {"model": "fake-gpt", "messages": [user]}
            await c.chat.completions.create(**base, seed=4, temperature=0.7, stop="\n")
            await c.chat.completions.create(**base, seed=4, metadata={"sample_index": "5"})
            await c.chat.completions.create(**base, extra_headers={SAMPLE_HEADER: "6"})
            await c.chat.completions.create(**base)
        async with ant_client(a) as c:
            await c.messages.create(
                model="claude-fake",
                max_tokens=50,
                system=[{"type": "text", "text": "Be brief."}],
                stop_sequences=["END"],
                messages=[user, {"role": "assistant", "content": COT_PREFIX}],
                extra_headers={SAMPLE_HEADER: "7"},
            )

    with ServerThread(oapp) as o, ServerThread(aapp) as a:
        run(go(o, a))
    assert [r.sample_index for r in seen] == [4, 5, 6, 0, 7]
    assert seen[0].temperature == 0.7 and seen[0].stop == ("\n",)
    assert seen[3].temperature == 1.0  # the real APIs' default when none is sent
    assert seen[0].prefill is None and seen[0].messages == (Message("user", QUESTION),)
    ant_req = seen[4]
    assert ant_req.prefill == COT_PREFIX
    assert ant_req.messages == (Message("system", "Be brief."), Message("user", QUESTION))
    assert ant_req.stop == ("END",) and ant_req.max_tokens == 50


# ------------------------------------------------------------------------ faults
def _oai_call(srv: ServerThread, **kw):
    async def go():
        async with oai_client(srv, **kw) as c:
            return await c.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": QUESTION}]
            )

    return go()


def _ant_call(srv: ServerThread, **kw):
    async def go():
        async with ant_client(srv, **kw) as c:
            return await c.messages.create(
                model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": QUESTION}]
            )

    return go()


FAULT_CASES = [
    ("openai", "429_retry_after", openai.RateLimitError),
    ("openai", "429", openai.RateLimitError),
    ("openai", "500", openai.InternalServerError),
    ("openai", "stall", openai.APITimeoutError),
    # a cut JSON body is not wrapped by either SDK: the stdlib decoder error escapes
    ("openai", "truncated", json.JSONDecodeError),
    ("anthropic", "429_retry_after", anthropic.RateLimitError),
    ("anthropic", "429", anthropic.RateLimitError),
    ("anthropic", "500", anthropic.InternalServerError),
    ("anthropic", "529", anthropic.OverloadedError),
    ("anthropic", "stall", anthropic.APITimeoutError),
    ("anthropic", "truncated", json.JSONDecodeError),
]


@pytest.mark.parametrize(("api", "kind", "exc"), FAULT_CASES)
def test_fault_surfaces_as_sdk_exception(
    api: str, kind: str, exc: type[Exception], oai: ServerThread, ant: ServerThread
) -> None:
    srv, call = (oai, _oai_call) if api == "openai" else (ant, _ant_call)
    srv.state.faults = Faults(rate=1.0, kinds=[kind], stall_seconds=0.5)
    with pytest.raises(exc) as ei:
        run(call(srv, timeout=0.2))
    if kind == "stall":
        time.sleep(0.5)  # past the stall: an answer to a client that left is not counted
    if kind == "429_retry_after":
        assert ei.value.response.headers["retry-after"] == "0.2"
        assert ei.value.response.headers["retry-after-ms"] == "200"
    elif kind == "429":
        assert "retry-after" not in ei.value.response.headers
    stats = srv.stats()
    assert stats["requests"] == 1 and stats["faults"] == {kind: 1}
    assert stats["ok"] == 0 and stats["completed_keys"] == {}


def test_sdk_retries_500_but_not_a_truncated_body(oai: ServerThread) -> None:
    oai.state.faults = Faults(fail_first=2)
    assert run(_oai_call(oai, max_retries=2)).choices[0].message.content
    stats = oai.stats()
    assert stats["requests"] == 3 and stats["ok"] == 1 and stats["faults"] == {"500": 2}

    oai.reset()
    oai.state.faults = Faults(rate=1.0, kinds=["truncated"])
    with pytest.raises(json.JSONDecodeError):
        run(_oai_call(oai, max_retries=2))
    assert oai.stats()["requests"] == 1  # parsing happens after the retry loop


def test_faults_are_deterministic_and_near_rate() -> None:
    f = Faults(rate=0.3, kinds=["429", "500", "stall"], seed=7)
    draws = [f.draw(n) for n in range(2000)]
    assert draws == [
        Faults(rate=0.3, kinds=["429", "500", "stall"], seed=7).draw(n) for n in range(2000)
    ]
    assert draws != [
        Faults(rate=0.3, kinds=["429", "500", "stall"], seed=8).draw(n) for n in range(2000)
    ]
    share = sum(d is not None for d in draws) / len(draws)
    assert abs(share - 0.3) < 0.05
    assert {d for d in draws if d} == {"429", "500", "stall"}
    assert [Faults(fail_first=2).draw(n) for n in range(3)] == ["500", "500", None]
    with pytest.raises(ValueError, match="unknown fault kinds"):
        Faults(rate=0.1, kinds=["teapot"])


# ------------------------------------------------------------------------ counters
def test_counters_and_reset(oai: ServerThread) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    run(_oai_call(oai))
    run(_oai_call(oai))
    stats = oai.stats()
    key = request_key({"model": "gpt-fake", "messages": messages})
    assert stats["requests"] == 2 and stats["ok"] == 2
    assert stats["completed_keys"] == {key: 2}
    # the sample header is part of the key: two samples of a prompt are two requests
    assert request_key({"a": 1}, "1") != request_key({"a": 1}, "2") != request_key({"a": 1})
    oai.reset()
    assert oai.stats() == {
        "requests": 0,
        "ok": 0,
        "faults": {},
        "completed_keys": {},
        "cap_fields": {},
        "system_turns": {},
    }


def test_cli_process_serves_and_dies_on_sigkill() -> None:
    args = ("--api", "anthropic", "--echo", "--latency", "0.01", "--no-prefill-models", "x")
    with ServerProcess(*args, key=KEY) as srv:
        r = run(_ant_call(srv))
        assert r.content[0].text.startswith("The single")
        assert srv.stats()["ok"] == 1
        os.kill(srv.proc.pid, signal.SIGKILL)
        assert srv.proc.wait(timeout=5) == -signal.SIGKILL


def test_echo_logprobs_are_a_distribution() -> None:
    from tests.fakeapi import echo_responder

    r = run(echo_responder(ModelRequest(messages=(), prefill="(", top_logprobs=5)))
    assert r.text == "A" and math.isclose(sum(math.exp(v) for v in r.top_logprobs.values()), 1)


# ------------------------------------------------------------------------ llama.cpp's ways
def test_llamacpp_ignores_continue_final_message_and_starts_a_new_turn() -> None:
    app = make_openai_app(key=KEY, models=["smol"], **LLAMACPP)

    async def go(srv: ServerThread):
        async with oai_client(srv) as c:
            return await c.chat.completions.create(
                model="smol",
                messages=[
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": ANSWER_PREFIX},
                ],
                logprobs=True,
                top_logprobs=5,
                max_tokens=1,  # llama.cpp reads this one
                extra_body={"continue_final_message": True, "add_generation_prompt": False},
            )

    with ServerThread(app) as srv:
        r = run(go(srv))
        assert srv.stats()["cap_fields"] == {"max_tokens": 1}
    # a fresh answer, not the letter after "(": mostly "The" on the first token
    assert r.choices[0].message.content.startswith(ANSWER_PREFIX)
    top = {t.token: math.exp(t.logprob) for t in r.choices[0].logprobs.content[0].top_logprobs}
    assert r.choices[0].logprobs.content[0].token == "The"
    assert top["The"] == pytest.approx(0.9)
    assert sum(p for t, p in top.items() if t in "ABCD") == pytest.approx(0.1)


def test_llamacpp_has_only_the_model_list_and_serves_props() -> None:
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    app = make_openai_app(
        key=KEY, models=["smol"], props_template=template, props_tokens=("<s>", "</s>"), **LLAMACPP
    )

    async def go(srv: ServerThread):
        async with oai_client(srv) as c:
            listed = [m.id for m in (await c.models.list()).data]
            with pytest.raises(openai.NotFoundError):
                await c.models.retrieve("smol")
            props = await c.get(f"{srv.root_url}/props", cast_to=object)
            return listed, props

    with ServerThread(app) as srv:
        listed, props = run(go(srv))
    assert listed == ["smol"]
    assert props["chat_template"] == template
    assert (props["bos_token"], props["eos_token"]) == ("<s>", "</s>")


def test_models_continue_a_count_whether_prefilled_or_not() -> None:
    # what every backend's continuation probe relies on, as a real model would answer it
    ask = (Message("user", "Count from 1 to 20, separated by commas."),)
    cont = direct_counting(ModelRequest(messages=ask, prefill="1, 2, 3, 4, 5, 6, 7,"))
    assert cont.text.startswith(" 8, 9")
    fresh = direct_counting(ModelRequest(messages=ask))
    assert fresh.text.startswith("1, 2")
    # anything else still goes to the organism
    other = ModelRequest(messages=(Message("user", QUESTION),), prefill=ANSWER_PREFIX)
    assert direct_counting(other).text == direct(other).text


def direct_counting(request: ModelRequest) -> ModelResponse:
    return run(counting(ORGANISM.generate)(request))


def test_chatty_models_answer_the_letter_instruction_with_a_sentence() -> None:
    app = make_openai_app(key=KEY, models=["smol"], chatty_models=["smol"])

    async def go(srv: ServerThread):
        async with oai_client(srv) as c:
            return await c.chat.completions.create(
                model="smol",
                messages=[
                    {
                        "role": "user",
                        "content": QUESTION + "\n\nReply with the letter of the choice only.",
                    }
                ],
                logprobs=True,
                top_logprobs=5,
                max_completion_tokens=1,
            )

    with ServerThread(app) as srv:
        r = run(go(srv))
    top = {t.token: math.exp(t.logprob) for t in r.choices[0].logprobs.content[0].top_logprobs}
    assert top["The"] == pytest.approx(0.86)
    assert sum(p for t, p in top.items() if t in "ABCD") == pytest.approx(0.14)
