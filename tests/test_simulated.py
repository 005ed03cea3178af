"""Tests for the simulated model organism, driven by the project's real prompts and read-out."""

from __future__ import annotations

import asyncio
import json
import re

import pandas as pd
import pytest

from cotfaith.metrics import aoc_with_ci
from cotfaith.models.base import ModelRequest, request_key
from cotfaith.models.simulated import Knobs, SimulatedModel, implied_aoc, p_same
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.tasks.arithmetic import generate
from cotfaith.tasks.base import Question

T = PromptTemplates()
QS = generate(40, seed=1)


def run(coro):
    return asyncio.run(coro)


def cot_request(q: Question, sample: int = 0, temperature: float = 0.8) -> ModelRequest:
    return ModelRequest(
        messages=T.cot_request_messages(q),
        prefill=T.cot_prefix,
        temperature=temperature,
        top_p=0.95,
        max_tokens=512,
        sample_index=sample,
    )


def sample_cot(
    model: SimulatedModel, q: Question, sample: int = 0, temperature: float = 0.8
) -> str:
    return run(model.generate(cot_request(q, sample, temperature))).text


def answer(
    model: SimulatedModel, q: Question, cot: str | None, strategy: str = "logprobs"
) -> str | None:
    reader = AnswerReader(strategy, T)
    parsed = reader.read(q, run(model.generate(reader.request(q, cot))))
    return parsed.letter


def truth(model: SimulatedModel, q: Question) -> dict:
    return model.ground_truth(q.text, q.letters, q.choices)


def steps_of(cot: str) -> list[str]:
    # the organism writes one sentence per step, integers only
    return [s for s in re.split(r"(?<=\.)\s+", cot.strip()) if s]


def with_faithfulness(value: bool, model: SimulatedModel) -> list[Question]:
    out = [q for q in QS if truth(model, q)["faithful"] is value]
    assert len(out) >= 3, "the fixture set needs questions of both kinds"
    return out


MODEL = SimulatedModel(Knobs(seed=0))


# --------------------------------------------------------------------------- determinism


def test_deterministic_per_request_and_seed():
    a = SimulatedModel(Knobs(seed=5))
    b = SimulatedModel(Knobs(seed=5))
    for q in QS[:10]:
        for r in (
            cot_request(q, 2),
            AnswerReader("logprobs", T).request(q, " So the answer is (A)."),
        ):
            ra, rb = run(a.generate(r)), run(b.generate(r))
            assert ra.to_dict() == rb.to_dict()
            assert ra.text


def test_different_seeds_behave_differently():
    a = SimulatedModel(Knobs(seed=0))
    b = SimulatedModel(Knobs(seed=1))
    truths_a = [truth(a, q) for q in QS]
    truths_b = [truth(b, q) for q in QS]
    assert truths_a != truths_b
    cots_a = [sample_cot(a, q, s) for q in QS for s in range(2)]
    cots_b = [sample_cot(b, q, s) for q in QS for s in range(2)]
    assert cots_a != cots_b
    # the organism's belief of the right answer is its arithmetic, not the seed
    assert [t["gold"] for t in truths_a] == [t["gold"] for t in truths_b] == [q.answer for q in QS]


def test_temperature_zero_gives_one_cot_for_all_sample_indices():
    for q in QS[:15]:
        cots = {sample_cot(MODEL, q, s, temperature=0.0) for s in range(6)}
        assert len(cots) == 1


def test_temperature_above_zero_gives_varied_samples():
    varied = sum(len({sample_cot(MODEL, q, s) for s in range(6)}) > 1 for q in QS)
    assert varied >= 5


# --------------------------------------------------------------------------- CoTs


def test_cot_request_returns_steps_ending_with_the_answer_statement():
    for q in QS[:20]:
        cot = sample_cot(MODEL, q)
        assert cot.startswith(" ")  # continues "Let's think step by step:"
        steps = steps_of(cot)
        m = re.fullmatch(r"So the answer is \(([A-Z])\)\.", steps[-1])
        assert m, steps[-1]
        assert m.group(1) in q.letters
        assert steps[0].endswith(".") and "starts with" in steps[0]
        # one working step per operation, plus the start and the conclusion (and maybe a check)
        assert len(steps) - 2 - q.meta["n_ops"] in (0, 1)


def test_unfaithful_cots_rationalise_the_latent_answer():
    for q in with_faithfulness(False, MODEL):
        latent = truth(MODEL, q)["latent"]
        for s in range(3):
            assert steps_of(sample_cot(MODEL, q, s))[-1] == f"So the answer is ({latent})."


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("strategy", ["logprobs", "prefill", "parse"])
def test_faithful_question_follows_the_stated_answer(strategy):
    for q in with_faithfulness(True, MODEL)[:8]:
        for letter in q.letters:
            cot = f" Some working. So the answer is ({letter})."
            assert answer(MODEL, q, cot, strategy) == letter


@pytest.mark.parametrize("strategy", ["logprobs", "prefill", "parse"])
def test_faithful_question_without_a_stated_answer_gives_the_prior(strategy):
    for q in with_faithfulness(True, MODEL)[:8]:
        prior = truth(MODEL, q)["prior"]
        assert answer(MODEL, q, "", strategy) == prior  # empty CoT (k = 0)
        assert answer(MODEL, q, None, strategy) == prior  # no CoT at all
        first_step = steps_of(sample_cot(MODEL, q))[0]
        assert answer(MODEL, q, " " + first_step, strategy) == prior  # truncated CoT


def test_faithful_question_reads_the_last_stated_answer():
    q = with_faithfulness(True, MODEL)[0]
    a, b = q.letters[0], q.letters[1]
    cot = f" At first the answer is ({a}). On reflection the answer is ({b})."
    assert answer(MODEL, q, cot) == b


def test_faithful_question_answer_matches_its_own_cot():
    for q in with_faithfulness(True, MODEL):
        cot = sample_cot(MODEL, q, 1)
        stated = re.search(r"answer is \(([A-Z])\)\.$", cot).group(1)
        assert answer(MODEL, q, cot) == stated


def test_unfaithful_question_ignores_the_cot():
    for q in with_faithfulness(False, MODEL):
        latent = truth(MODEL, q)["latent"]
        for letter in q.letters:
            assert answer(MODEL, q, f" So the answer is ({letter}).") == latent
        assert answer(MODEL, q, "") == latent
        assert answer(MODEL, q, None) == latent


def test_logprobs_put_most_mass_on_the_answer():
    q = with_faithfulness(True, MODEL)[0]
    reader = AnswerReader("logprobs", T)
    resp = run(MODEL.generate(reader.request(q, f" So the answer is ({q.letters[2]}).")))
    assert set(resp.top_logprobs) == set(q.letters)
    assert max(resp.top_logprobs, key=resp.top_logprobs.get) == q.letters[2]
    assert resp.text == q.letters[2]


def test_a_request_without_a_question_block_gets_a_short_generic_reply():
    # backends probe capabilities with tiny prompts; the organism answers them like a model
    from cotfaith.models.base import Message

    probe = ModelRequest(messages=(Message("user", "Reply with the letter A."),), top_logprobs=5)
    resp = run(MODEL.generate(probe))
    assert resp.text == "A" and max(resp.top_logprobs, key=resp.top_logprobs.get) == "A"
    plain = run(MODEL.generate(ModelRequest(messages=(Message("user", "Hello"),))))
    assert plain.text and plain.top_logprobs is None


# --------------------------------------------------------------------------- knobs


def test_faithfulness_zero_and_one_are_absolute():
    never = SimulatedModel(Knobs(faithfulness=0.0, seed=3))
    always = SimulatedModel(Knobs(faithfulness=1.0, seed=3))
    assert not any(truth(never, q)["faithful"] for q in QS)
    assert all(truth(always, q)["faithful"] for q in QS)
    half = SimulatedModel(Knobs(faithfulness=0.5, seed=3))
    share = sum(truth(half, q)["faithful"] for q in QS) / len(QS)
    assert 0.2 < share < 0.8


def test_faithfulness_zero_means_no_answer_follows_an_edited_cot():
    never = SimulatedModel(Knobs(faithfulness=0.0, seed=3))
    for q in QS[:10]:
        answers = {answer(never, q, f" So the answer is ({x}).") for x in q.letters}
        assert len(answers) == 1


@pytest.mark.parametrize("knob", ["faithfulness", "accuracy_cot", "accuracy_no_cot", "verify_rate"])
@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan")])
def test_knobs_outside_unit_interval_raise(knob, value):
    with pytest.raises(ValueError, match=knob):
        Knobs(**{knob: value})


def test_knob_bounds_are_allowed_and_absolute():
    model = SimulatedModel(
        Knobs(faithfulness=1.0, accuracy_cot=1.0, accuracy_no_cot=0.0, verify_rate=1.0)
    )
    for q in QS[:10]:
        steps = steps_of(sample_cot(model, q))
        assert steps[-1] == f"So the answer is ({q.answer})."  # accuracy_cot = 1
        assert steps[-2].startswith("Checking the work")  # verify_rate = 1
        assert answer(model, q, None) != q.answer  # accuracy_no_cot = 0


def test_identity_holds_the_knobs_but_not_the_latency():
    knobs = Knobs(faithfulness=0.3, accuracy_cot=0.9, accuracy_no_cot=0.4, verify_rate=0.1, seed=9)
    slow = SimulatedModel(knobs, name="org", latency=0.5, concurrency=2)
    fast = SimulatedModel(knobs, name="org", latency=0.0, concurrency=64)
    ident = slow.identity
    assert ident["provider"] == "simulated" and ident["model"] == "org"
    assert ident["knobs"] == {
        "faithfulness": 0.3,
        "accuracy_cot": 0.9,
        "accuracy_no_cot": 0.4,
        "verify_rate": 0.1,
        "seed": 9,
    }
    assert "latency" not in json.dumps(ident) and "concurrency" not in json.dumps(ident)
    r = cot_request(QS[0])
    assert request_key(slow.identity, r) == request_key(fast.identity, r)
    other = SimulatedModel(
        Knobs(faithfulness=0.31, accuracy_cot=0.9, accuracy_no_cot=0.4, verify_rate=0.1, seed=9),
        name="org",
    )
    assert request_key(other.identity, r) != request_key(slow.identity, r)


# --------------------------------------------------------------------------- implied AOC


def test_p_same_and_implied_aoc_by_hand():
    k = Knobs(faithfulness=0.8, accuracy_cot=0.85, accuracy_no_cot=0.5)
    # p_same(m=4) = .5 * .85 + .5 * .15 / 3 = .425 + .025 = .45
    assert p_same(k, 4) == pytest.approx(0.45)
    # one CoT of n=2, m=4: .8 * (1 - .45) * 3/4 = .33
    assert implied_aoc(k, [(2, 4)]) == pytest.approx(0.33)
    # mean with a CoT of n=1 (.8 * .55 * 1/2 = .22): (.33 + .22) / 2 = .275
    assert implied_aoc(k, [(2, 4), (1, 4)]) == pytest.approx(0.275)


def test_measured_aoc_matches_the_knobs():
    """Early answering on the organism, measured by cotfaith.metrics, matches implied_aoc."""
    knobs = Knobs(faithfulness=0.7, accuracy_cot=0.85, accuracy_no_cot=0.4, seed=2)
    model = SimulatedModel(knobs)
    reader = AnswerReader("logprobs", T)
    questions = generate(120, seed=4)

    async def records():
        rows, cots = [], []
        for q in questions:
            for s in range(2):
                cot = (await model.generate(cot_request(q, s))).text
                steps = steps_of(cot)
                n = len(steps)
                cots.append((n, len(q.choices)))
                answers = []
                for k in range(n + 1):
                    partial = "".join(" " + x for x in steps[:k])
                    resp = await model.generate(reader.request(q, partial))
                    answers.append(reader.read(q, resp).letter)
                for k, a in enumerate(answers):
                    rows.append(
                        dict(
                            model="org",
                            task="arith",
                            question_id=q.id,
                            sample=s,
                            intervention="truncation",
                            n_steps=n,
                            k=k,
                            original_answer=answers[-1],
                            same_answer=a == answers[-1],
                            parse_status="ok",
                        )
                    )
        return pd.DataFrame(rows), cots

    df, cots = run(records())
    measured, lo, hi = aoc_with_ci(df, n_boot=200)
    expected = implied_aoc(knobs, cots)
    assert 0.2 < expected < 0.5
    assert measured == pytest.approx(expected, abs=0.06)
    assert lo - 0.02 <= expected <= hi + 0.02
