"""Tests for the simulated model organism, driven by the project's real prompts and read-out."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from cotfaith.errors import ConfigError
from cotfaith.metrics import aoc_with_ci
from cotfaith.models.base import ModelRequest, request_key
from cotfaith.models.simulated import Knobs, SimulatedModel, implied_aoc, p_same
from cotfaith.prompts import PromptTemplates
from cotfaith.readout import AnswerReader
from cotfaith.segment import prefix, split_steps
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
    # commitment_gamma = inf: committed only at the stated conclusion (the first organism)
    flat = SimulatedModel(Knobs(seed=0, commitment_gamma=math.inf))
    for q in with_faithfulness(True, flat)[:8]:
        prior = truth(flat, q)["prior"]
        assert answer(flat, q, "", strategy) == prior  # empty CoT (k = 0)
        assert answer(flat, q, None, strategy) == prior  # no CoT at all
        first_step = steps_of(sample_cot(flat, q))[0]
        assert answer(flat, q, " " + first_step, strategy) == prior  # truncated CoT


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


@pytest.mark.parametrize(
    "knob",
    [
        "faithfulness",
        "accuracy_cot",
        "accuracy_no_cot",
        "verify_rate",
        "filler_use",
        "mistake_invalid_rate",
    ],
)
@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan")])
def test_knobs_outside_unit_interval_raise(knob, value):
    with pytest.raises(ValueError, match=knob):
        Knobs(**{knob: value})
    with pytest.raises(ConfigError, match=rf"^model\.{knob} must be in \[0, 1\], got "):
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
        "commitment_gamma": 1.0,
        "filler_use": 0.0,
        "mistake_invalid_rate": 0.1,
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
    k = Knobs(faithfulness=0.8, accuracy_cot=0.85, accuracy_no_cot=0.5, commitment_gamma=math.inf)
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


# =========================================================================== the organism, v2
# Requests are built by the real PromptTemplates methods, as the interventions build them.

GENERIC_TEXTS = (
    "Which material conducts electricity best?",
    "Which animal is a mammal?",
    "Which planet has the most moons?",
    "Which of these is a prime number word?",
    "Which instrument has strings?",
    "Which city is a capital?",
)


def generic_questions(n: int, seed: int = 0, demos: bool = False) -> list[Question]:
    """Non-arithmetic questions (the organism cannot solve them) with a known gold letter."""
    import random as _random

    rng = _random.Random(seed)
    out = []
    for i in range(n):
        m = rng.choice((4, 5))
        choices = tuple(f"option {i}-{j}" for j in range(m))
        gold = "ABCDE"[rng.randrange(m)]
        demo = None
        if demos:
            demo = (
                "Question: Which colour is the sky?\n\nChoices:\n (A): green\n (B): blue\n\n"
                "Answer: (B)"
            )
        out.append(
            Question(
                id=f"g{seed}-{i}",
                text=f"{GENERIC_TEXTS[i % len(GENERIC_TEXTS)]} (item {seed}-{i})",
                choices=choices,
                answer=gold,
                task="generic",
                context="A short passage the question is about." if demos else None,
                demos=demo,
            )
        )
    return out


def gen(model: SimulatedModel, request: ModelRequest) -> str:
    return run(model.generate(request)).text


def continue_request(q: Question, partial: str, sample: int = 0, scaffold: bool = False):
    if scaffold:
        return ModelRequest(
            messages=T.scaffold_messages(q, partial), temperature=0.8, sample_index=sample
        )
    return ModelRequest(
        messages=T.cot_request_messages(q),
        prefill=T.cot_turn(partial),
        temperature=0.8,
        top_p=0.95,
        sample_index=sample,
    )


def mistake_request(q: Question, sentence: str, prefill: bool = True, sample: int = 0):
    return ModelRequest(
        messages=T.mistake_messages(q, sentence, prefill=prefill),
        prefill=T.mistake_prefix if prefill else None,
        temperature=1.0,
        max_tokens=100,
        sample_index=sample,
    )


def paraphrase_request(text: str, prefill: bool = True) -> ModelRequest:
    return ModelRequest(
        messages=T.paraphrase_messages(text, prefill=prefill),
        prefill=T.paraphrase_prefix if prefill else None,
    )


def mistaken(reply: str) -> str:
    text = reply.strip()
    if text.startswith(T.mistake_prefix):
        text = text[len(T.mistake_prefix) :]
    return text.strip()


def mistake_status(original: str, reply: str) -> str:
    text = mistaken(reply)
    if not text:
        return "empty"
    if T.mistake_no_reasoning in text:
        return "no_reasoning"
    if text.lower().startswith(("i can't", "i cannot", "sorry")):
        return "refused"
    if text == original:
        return "identical"
    return "ok"


def paraphrased(reply: str) -> str:
    text = reply.strip()
    lead = T.paraphrase_prefix.strip()
    return text[len(lead) :].strip() if text.startswith(lead) else text


def sentences_of(text: str) -> list[str]:
    return [s.text for s in split_steps(text, "sentence")]


def stated(text: str) -> list[str]:
    return re.findall(r"answer is \(([A-Z])\)", text)


# --------------------------------------------------------------------------- config, registry


def test_backend_is_registered_with_its_config_and_built_by_build_model():
    from cotfaith import registry
    from cotfaith.models import build_model
    from cotfaith.models.simulated import SimulatedModelConfig

    entry = registry.lookup("backend", "simulated")
    assert entry.config is SimulatedModelConfig
    model = build_model({"provider": "simulated", "faithfulness": 0.25, "commitment_gamma": 3})
    assert isinstance(model, SimulatedModel)
    assert model.knobs.faithfulness == 0.25 and model.knobs.commitment_gamma == 3.0
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        build_model({"provider": "nope"})


def test_config_yaml_and_knob_defaults_agree():
    """Knobs() (used by reports and tests) must mean what a default run does."""
    from dataclasses import asdict, fields

    from hydra import compose, initialize_config_dir

    from cotfaith.cli import CONFIG_DIR
    from cotfaith.models.simulated import SimulatedModelConfig

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config")
    config_fields = {f.name: f.default for f in fields(SimulatedModelConfig)}
    for name, default in asdict(Knobs()).items():
        assert config_fields[name] == default, name
        assert cfg.model[name] == default, name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("commitment_gamma=-1", "model.commitment_gamma must be > 0, got -1"),
        ("commitment_gamma=0", "model.commitment_gamma must be > 0, got 0"),
        ("filler_use=1.5", "model.filler_use must be in [0, 1], got 1.5"),
        ("mistake_invalid_rate=-0.1", "model.mistake_invalid_rate must be in [0, 1], got -0.1"),
        ("latency=-1", "model.latency must be >= 0, got -1"),
    ],
)
def test_bad_knobs_are_one_line_config_errors_naming_the_key(override, message):
    from hydra import compose, initialize_config_dir

    from cotfaith.cli import CONFIG_DIR
    from cotfaith.models import build_model

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model.{override}"])
    with pytest.raises(ConfigError) as err:
        build_model(cfg.model)
    assert str(err.value) == message


def test_gamma_inf_from_the_command_line_gives_flat_curves():
    from hydra import compose, initialize_config_dir

    from cotfaith.cli import CONFIG_DIR
    from cotfaith.models import build_model

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["model.commitment_gamma=inf"])
    model = build_model(cfg.model)
    assert model.knobs.commitment_gamma == math.inf
    assert implied_aoc(model.knobs, [(4, 4)]) == pytest.approx(
        model.knobs.faithfulness * (1 - p_same(model.knobs, 4)) * 7 / 8
    )


def test_a_bad_knob_value_type_is_a_config_error():
    from cotfaith.models.simulated import build

    with pytest.raises(ConfigError, match=r"^model\.faithfulness must be a number, got 'abc'$"):
        build({"faithfulness": "abc"})


# --------------------------------------------------------------------------- reading prompts


def test_demos_and_passage_before_the_question_are_read_past():
    plain = generic_questions(6, seed=3)
    dressed = generic_questions(6, seed=3, demos=True)
    model = SimulatedModel(Knobs(seed=1))
    model.observe_questions(plain)
    for a, b in zip(plain, dressed, strict=True):
        assert b.demos and b.context and "Question:" in b.demos
        assert sample_cot(model, a, 1) == sample_cot(model, b, 1)
        assert answer(model, a, None) == answer(model, b, None)
        assert answer(model, a, " So the answer is (B).") == answer(
            model, b, " So the answer is (B)."
        )
        reply_a = gen(model, mistake_request(a, "Choice (A) fits the question best."))
        reply_b = gen(model, mistake_request(b, "Choice (A) fits the question best."))
        assert reply_a == reply_b


def test_instructed_cot_and_scaffold_replies_start_without_a_space():
    q = QS[0]
    prefilled = sample_cot(MODEL, q, 2)
    instructed = gen(
        MODEL,
        ModelRequest(
            messages=T.cot_request_messages(q, instructed=True), temperature=0.8, sample_index=2
        ),
    )
    assert instructed == prefilled.lstrip()
    steps = split_steps(prefilled)
    scaffold = gen(MODEL, continue_request(q, prefix(prefilled, steps, 2), 2, scaffold=True))
    assert not scaffold[0].isspace()


# --------------------------------------------------------------------------- continuation


@pytest.mark.parametrize("scaffold", [False, True])
def test_continuing_its_own_prefix_gives_the_rest_of_that_cot(scaffold):
    for q in QS[:15] + generic_questions(5):
        for s in range(3):
            cot = sample_cot(MODEL, q, s)
            steps = split_steps(cot)
            for k in range(1, len(steps)):
                part = prefix(cot, steps, k)
                # any sample index: once the plan is written down, the rest follows
                rest = gen(MODEL, continue_request(q, part, sample=s + 7, scaffold=scaffold))
                joined = part + (" " + rest if scaffold else rest)
                assert joined == cot


@pytest.mark.parametrize("scaffold", [False, True])
def test_a_paraphrased_prefix_continues_exactly_as_the_original(scaffold):
    for q in QS[:15] + generic_questions(5):
        cot = sample_cot(MODEL, q, 1)
        steps = split_steps(cot)
        for k in range(1, len(steps)):
            part = prefix(cot, steps, k)
            para = paraphrased(gen(MODEL, paraphrase_request(part.strip())))
            assert para != part.strip()
            original = gen(MODEL, continue_request(q, part, 1, scaffold))
            assert gen(MODEL, continue_request(q, " " + para, 1, scaffold)) == original


def test_after_a_mistake_faithful_questions_follow_it_and_unfaithful_ones_do_not():
    model = SimulatedModel(Knobs(seed=4, faithfulness=0.5, mistake_invalid_rate=0.0))
    questions = QS + generic_questions(20, seed=4)
    model.observe_questions(questions)
    seen = {True: 0, False: 0}
    for q in questions:
        t = truth(model, q)
        cot = sample_cot(model, q, 0)
        steps = split_steps(cot)
        original = stated(cot)[-1]
        for i in range(1, len(steps) + 1):
            reply = gen(model, mistake_request(q, steps[i - 1].text))
            partial = cot[: steps[i - 1].start] + mistaken(reply)
            cont = gen(model, continue_request(q, partial)) if i < len(steps) else ""
            final = answer(model, q, partial + cont)
            if t["faithful"]:
                concluded = stated(partial + cont)[-1]
                assert concluded != original and final == concluded
            else:
                assert final == t["latent"] == original
                if cont:
                    assert stated(cont)[-1] == t["latent"]
            seen[t["faithful"]] += 1
    assert seen[True] > 20 and seen[False] > 20


def test_a_wrong_number_in_the_working_is_carried_forward():
    model = SimulatedModel(Knobs(seed=0, faithfulness=1.0, mistake_invalid_rate=0.0))
    for q in QS[:10]:
        cot = sample_cot(model, q)
        steps = split_steps(cot)
        work = steps[1].text  # the first operation, "... = r."
        reply = mistaken(gen(model, mistake_request(q, work)))
        right = int(re.search(r"= (\d+)\.$", work).group(1))
        wrong = int(re.search(r"= (\d+)\.$", reply).group(1))
        assert wrong != right and reply.rsplit("=", 1)[0] == work.rsplit("=", 1)[0]
        cont = gen(model, continue_request(q, cot[: steps[1].start] + reply))
        nxt = sentences_of(cont)[0]
        if "=" in nxt and q.meta["n_ops"] > 1:
            assert re.search(rf"\b{wrong} [-+*/] ", nxt), (reply, nxt)


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize("prefill", [True, False])
def test_mistakes_are_valid_at_the_knobs_rate_and_invalid_ones_come_in_four_kinds(prefill):
    rate = 0.3
    model = SimulatedModel(Knobs(seed=2, mistake_invalid_rate=rate))
    statuses = []
    for q in QS[:25]:
        cot = sample_cot(model, q)
        for st in split_steps(cot):
            for s in range(2):
                reply = gen(model, mistake_request(q, st.text, prefill, sample=s))
                if prefill:
                    assert reply.startswith(" ")
                else:
                    assert reply.startswith(T.mistake_prefix) or reply.startswith("I can't")
                assert reply  # never empty text: an empty mistake is whitespace, so it caches
                status = mistake_status(st.text, reply)
                statuses.append(status)
                if status == "ok":
                    assert signature_changed(st.text, mistaken(reply))
    n = len(statuses)
    invalid = sum(s != "ok" for s in statuses) / n
    # each request is an independent draw: binomial standard error, 4 of them
    assert abs(invalid - rate) <= 4 * math.sqrt(rate * (1 - rate) / n), (invalid, n)
    assert {"identical", "empty", "refused", "no_reasoning"} <= set(statuses)


def signature_changed(original: str, new: str) -> bool:
    from cotfaith.models.organism_text import signature

    return signature(original) != signature(new)


def test_mistake_rate_bounds_are_absolute():
    never = SimulatedModel(Knobs(mistake_invalid_rate=0.0))
    always = SimulatedModel(Knobs(mistake_invalid_rate=1.0))
    for q in QS[:8]:
        for st in split_steps(sample_cot(never, q)):
            assert mistake_status(st.text, gen(never, mistake_request(q, st.text))) == "ok"
            assert mistake_status(st.text, gen(always, mistake_request(q, st.text))) != "ok"


def test_mistakes_by_kind_of_sentence():
    model = SimulatedModel(Knobs(mistake_invalid_rate=0.0))
    q = QS[0]
    conclusion = mistaken(gen(model, mistake_request(q, "So the answer is (A).")))
    assert re.fullmatch(r"So the answer is \(([B-Z])\)\.", conclusion)
    g = generic_questions(1)[0]
    flipped = mistaken(gen(model, mistake_request(g, "Choice (B) fits the question best.")))
    assert flipped == "Choice (B) does not fit as well."
    claim = mistaken(gen(model, mistake_request(g, "Let me look at each choice in turn.")))
    assert claim.startswith("Let me look at each choice in turn, and (")


# --------------------------------------------------------------------------- paraphrase


@pytest.mark.parametrize("prefill", [True, False])
def test_paraphrases_keep_sentences_meaning_and_stated_answers(prefill):
    from cotfaith.models.organism_text import signature

    texts = []
    for q in QS[:10] + generic_questions(5):
        cot = sample_cot(MODEL, q, 1)
        steps = split_steps(cot)
        texts += [prefix(cot, steps, k).strip() for k in range(1, len(steps) + 1)]
    texts.append("We compare both. Neither is cheap! The answer is (C), I think.")
    for text in texts:
        reply = gen(MODEL, paraphrase_request(text, prefill))
        if not prefill:
            assert reply.startswith(T.paraphrase_prefix.strip())
        para = paraphrased(reply)
        before, after = sentences_of(text), sentences_of(para)
        assert len(after) == len(before), (text, para)
        assert para != text
        assert [signature(s) for s in after] == [signature(s) for s in before]
        assert stated(para) == stated(text)


# --------------------------------------------------------------------------- filler


def test_filler_answers_as_without_cot_when_filler_is_not_used():
    model = SimulatedModel(Knobs(seed=6, filler_use=0.0))
    for q in QS + generic_questions(10):
        no_cot = answer(model, q, None)
        for m in (0, 5, 10, 25):
            assert answer(model, q, T.filler_unit * m) == no_cot


def test_filler_use_one_answers_the_typical_conclusion_on_faithful_questions():
    model = SimulatedModel(Knobs(seed=6, filler_use=1.0, accuracy_no_cot=0.0))
    for q in QS:
        t = truth(model, q)
        typical = stated(sample_cot(model, q, temperature=0.0))[-1]
        expected = typical if t["faithful"] else t["latent"]
        assert answer(model, q, T.filler_unit * 5) == expected
        assert answer(model, q, "") == answer(model, q, None)  # m = 0 is no CoT


# --------------------------------------------------------------------------- answer key


def test_answer_key_is_the_gold_of_questions_the_organism_cannot_solve():
    qs = generic_questions(40, seed=8)
    knobs = Knobs(seed=8, faithfulness=1.0, accuracy_cot=1.0, accuracy_no_cot=1.0)
    blind = SimulatedModel(knobs)
    keyed = SimulatedModel(knobs)
    keyed.observe_questions(qs)
    assert sum(truth(blind, q)["gold"] != q.answer for q in qs) > 10  # a fixed belief
    for q in qs:
        assert truth(keyed, q)["gold"] == q.answer
        assert stated(sample_cot(keyed, q, 3))[-1] == q.answer  # accuracy_cot = 1
        assert answer(keyed, q, None) == q.answer  # accuracy_no_cot = 1
    # arithmetic keeps its own (equal) answer
    keyed.observe_questions(QS)
    assert all(truth(keyed, q)["gold"] == q.answer for q in QS)


# --------------------------------------------------------------------------- commitment


def early_answers(model: SimulatedModel, q: Question, cot: str) -> list[str]:
    steps = split_steps(cot)
    return [answer(model, q, prefix(cot, steps, k)) for k in range(len(steps) + 1)]


def test_commitment_curves_are_gradual_monotone_and_follow_the_plan():
    from cotfaith.models.simulated import commitment_cdf

    gradual = SimulatedModel(Knobs(seed=0, faithfulness=1.0, commitment_gamma=1.0))
    flat = SimulatedModel(Knobs(seed=0, faithfulness=1.0, commitment_gamma=math.inf))
    interior = 0
    for q in QS:
        t = truth(gradual, q)
        cot = sample_cot(gradual, q, 1)
        final = stated(cot)[-1]
        plan = gradual.plan_of(q.text, q.letters, q.choices, cot)
        n = len(split_steps(cot))
        assert plan["target"] == final and plan["n_steps"] == n
        ys = early_answers(gradual, q, cot)
        assert ys[0] == t["prior"] and ys[-1] == final
        for k, a in enumerate(ys):
            committed = plan["u"] < commitment_cdf(gradual.knobs, k / n)
            assert a == (final if committed else t["prior"])
        if t["prior"] != final:
            # once the answer has switched to the conclusion it stays there
            switched = [a == final for a in ys]
            assert switched == sorted(switched)
            interior += any(switched[1:-1])
        assert early_answers(flat, q, cot)[:-1] == [t["prior"]] * n
    assert interior >= 5  # some curves rise before the last step


def test_outputs_are_identical_in_another_process():
    import subprocess
    import sys

    script = (
        "import asyncio, hashlib\n"
        "from cotfaith.models.simulated import Knobs, SimulatedModel\n"
        "from tests.test_simulated import digest\n"
        "print(digest(SimulatedModel(Knobs(seed=3))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()
    assert out == digest(SimulatedModel(Knobs(seed=3)))


def digest(model: SimulatedModel) -> str:
    """A hash of many outputs of every kind of request (used across processes)."""
    import hashlib

    h = hashlib.sha256()
    for q in QS[:6] + generic_questions(3):
        cot = sample_cot(model, q, 2)
        steps = split_steps(cot)
        h.update(cot.encode())
        for k in range(len(steps) + 1):
            h.update(str(answer(model, q, prefix(cot, steps, k))).encode())
        for st in steps:
            h.update(gen(model, mistake_request(q, st.text, sample=2)).encode())
        h.update(gen(model, paraphrase_request(cot.strip())).encode())
        h.update(gen(model, continue_request(q, prefix(cot, steps, 1), 2)).encode())
    return h.hexdigest()
