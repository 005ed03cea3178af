"""Per-call validity of the answer read-out (issue 6): every answer read after a prefill is
checked for a restarted turn, every logprob answer for the mass its letters hold.

The answers come from the real openai backend (real SDK) against the loopback server, once
honouring vLLM's `continue_final_message` and once ignoring it as llama.cpp does. The backend
is driven directly, past its preflight, which is what a run faces when a server changes under
it (or a cache made before prefill was verified is replayed): the per-call check must hold
on its own.
"""

from __future__ import annotations

import asyncio

import pytest

from cotfaith.answers import DEFAULT_MIN_MASS
from cotfaith.errors import ConfigError
from cotfaith.models.base import ModelResponse
from cotfaith.models.openai_chat import OpenAIChat
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.tasks.arithmetic import generate
from tests.fakeapi import LLAMACPP, ServerThread, make_openai_app

KEY = "sk-test-readout-0123456789"
T = PromptTemplates()
QS = generate(6, seed=3)
COT = " We add the numbers. So the answer is (B)."


def answers_from(server_options: dict, strategy: str, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setenv("READOUT_TEST_KEY", KEY)
    app = make_openai_app(key=KEY, models=("m",), **server_options)
    reader = AnswerReader(strategy, T, prefill=True)

    async def go() -> list:
        model = OpenAIChat(
            {
                "name": "m",
                "base_url": srv.base_url,
                "api_key_env": "READOUT_TEST_KEY",
                "continuation": "prefill",
                "retries": 0,
            },
            provider="openai_compatible",
        )
        try:
            out = []
            for q in QS:
                for cot in (None, COT):
                    response = await model.generate(reader.request(q, cot))
                    out.append(reader.read(q, response))
            return out
        finally:
            await model.aclose()

    with ServerThread(app) as srv:
        return asyncio.run(go())


@pytest.mark.parametrize("strategy", ["logprobs", "prefill"])
def test_answers_after_an_honoured_prefill_are_ok(strategy: str, monkeypatch) -> None:
    got = answers_from({}, strategy, monkeypatch)
    assert {a.status for a in got} == {"ok"}
    if strategy == "logprobs":
        assert all(a.mass == pytest.approx(1.0) for a in got)


@pytest.mark.parametrize("strategy", ["logprobs", "prefill"])
def test_answers_after_an_ignored_prefill_are_never_ok(strategy: str, monkeypatch) -> None:
    # the server closed "The single, most likely answer is (" and answered afresh: "The ..."
    got = answers_from(LLAMACPP, strategy, monkeypatch)
    assert {a.status for a in got} == {"new_turn"}
    assert all(a.letter is None for a in got)
    if strategy == "logprobs":
        # the distribution is kept for inspection, with the little mass the letters held
        assert all(a.probs is not None and a.mass == pytest.approx(0.1) for a in got)


def test_low_mass_is_checked_without_a_prefill_too() -> None:
    q = QS[0]
    reader = AnswerReader("logprobs", T, prefill=False)  # letter-only instruction
    chatty = ModelResponse(text="The", top_logprobs={"The": -0.15, "B": -2.5, "C": -3.0})
    got = reader.read(q, chatty)
    assert got.status == "low_mass" and got.letter is None
    assert got.mass == pytest.approx(0.082 + 0.050, abs=0.001)
    assert AnswerReader("logprobs", T, prefill=False, min_mass=0.1).read(q, chatty).letter == "B"


def test_min_mass_default_and_bounds() -> None:
    assert AnswerReader("logprobs", T).min_mass == DEFAULT_MIN_MASS == 0.5
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="answer.min_letter_mass"):
            AnswerReader("logprobs", T, min_mass=bad)


def test_parse_strategy_is_not_checked_for_a_restart() -> None:
    # no prefill is sent in parse mode: a reply starting "The single, ..." is the asked form
    q = QS[0]
    reply = ModelResponse(text=f"The single, most likely answer is ({q.letters[1]}).")
    got = AnswerReader("parse", T, prefill=True).read(q, reply)
    assert (got.status, got.letter) == ("ok", q.letters[1])
