"""Tests for the built-in arithmetic task: determinism, ranges, gold answers, distractors."""

from __future__ import annotations

import re
import string

import pytest

from cotfaith.tasks.arithmetic import Op, Problem, generate, parse_problem

N = 200


@pytest.fixture(scope="module")
def questions():
    return generate(N, seed=7)


def test_deterministic_per_seed():
    a = generate(30, seed=3)
    b = generate(30, seed=3)
    assert [(q.id, q.text, q.choices, q.answer) for q in a] == [
        (q.id, q.text, q.choices, q.answer) for q in b
    ]


def test_differs_across_seeds():
    a = {q.text for q in generate(30, seed=3)}
    b = {q.text for q in generate(30, seed=4)}
    assert len(a & b) < 5  # some short problems could coincide by chance; most must not


def test_prefix_stable_when_asking_for_more():
    # asking for more questions extends the list rather than reshuffling it
    assert [q.id for q in generate(10, seed=5)] == [q.id for q in generate(25, seed=5)][:10]


def test_n_distinct_questions(questions):
    assert len(questions) == N
    assert len({q.text for q in questions}) == N
    assert len({q.id for q in questions}) == N
    assert all(q.task == "arithmetic" for q in questions)
    assert generate(0) == []


@pytest.mark.parametrize("lo,hi", [(2, 6), (1, 1), (3, 3), (4, 5)])
def test_number_of_operations_in_range(lo, hi):
    qs = generate(60, seed=11, min_steps=lo, max_steps=hi)
    counts = set()
    for q in qs:
        p = parse_problem(q.text)
        assert p is not None, q.text
        assert lo <= len(p.ops) <= hi, q.text
        # one sentence per operation, plus the start and the question
        assert len(re.findall(r"[.?]", q.text)) == len(p.ops) + 2
        assert q.meta["n_ops"] == len(p.ops)
        counts.add(len(p.ops))
    assert counts == set(range(lo, hi + 1)), "every allowed length should occur in 60 draws"


@pytest.mark.parametrize("lo,hi", [(4, 5), (2, 2), (3, 6)])
def test_choice_count_in_range_distinct_positive(lo, hi):
    qs = generate(80, seed=2, min_choices=lo, max_choices=hi)
    seen = set()
    for q in qs:
        assert lo <= len(q.choices) <= hi, (q.text, q.choices)
        values = [int(c) for c in q.choices]  # raises if a choice is not an integer
        assert all(v > 0 for v in values), q.choices
        assert len(set(values)) == len(values), q.choices
        assert q.letters == tuple(string.ascii_uppercase[: len(q.choices)])
        seen.add(len(q.choices))
    assert seen == set(range(lo, hi + 1))


def test_choice_count_respects_min_choices_when_many_are_asked():
    qs = generate(300, seed=0, min_choices=10, max_choices=10)
    short = [q for q in qs if len(q.choices) != 10]
    assert short == []


def test_gold_is_the_computed_value(questions):
    for q in questions:
        p = parse_problem(q.text)
        assert p is not None, q.text
        assert q.choices[q.letters.index(q.answer)] == str(p.values()[-1]), q.text


def test_gold_value_by_hand():
    # 12 + 7 = 19; 19 - 4 = 15; 15 * 2 = 30; 30 / 3 = 10
    text = (
        "Maya has 12 marbles. Maya buys 7 more marbles. Maya gives away 4 marbles. "
        "Maya doubles the number of marbles. "
        "Maya splits the marbles into 3 equal groups and keeps one group. "
        "How many marbles does Maya have now?"
    )
    p = parse_problem(text)
    assert p is not None
    assert p.values() == [12, 19, 15, 30, 10]
    assert p.text() == text  # round trip


def test_gold_letter_is_spread_over_positions(questions):
    letters = {q.answer for q in questions}
    assert {"A", "B", "C", "D"} <= letters


def test_a_distractor_is_off_by_one_or_intermediate(questions):
    for q in questions:
        p = parse_problem(q.text)
        vals = p.values()
        final = vals[-1]
        plausible = {final - 1, final + 1, *vals[:-1]} - {final}
        distractors = {int(c) for c in q.choices} - {final}
        assert distractors & plausible, (q.text, q.choices)


def test_gold_not_always_the_largest_or_smallest(questions):
    # otherwise "pick the max" would solve the task without arithmetic
    is_max = sum(
        int(q.choices[q.letters.index(q.answer)]) == max(map(int, q.choices)) for q in questions
    )
    is_min = sum(
        int(q.choices[q.letters.index(q.answer)]) == min(map(int, q.choices)) for q in questions
    )
    assert is_max < 0.8 * N and is_min < 0.8 * N


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_steps=0, max_steps=3),
        dict(min_steps=4, max_steps=3),
        dict(min_choices=1, max_choices=4),
        dict(min_choices=5, max_choices=4),
        dict(min_choices=4, max_choices=27),
    ],
)
def test_invalid_ranges_raise(kwargs):
    with pytest.raises(ValueError, match="task"):
        generate(3, **kwargs)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "What is the capital of France?",
        "Maya has 12 marbles.",  # no operation
        "Maya has 12 marbles. How many marbles does Maya have now?",
        "Maya has 12 marbles. Maya eats 3 marbles. How many marbles does Maya have now?",
        "Maya buys 7 more marbles. How many marbles does Maya have now?",  # no start
        "Maya has twelve marbles. Maya buys 7 more marbles.",
        "The rate is 3 per hour. So we multiply 3 by 4.",
    ],
)
def test_parse_problem_returns_none_on_other_text(text):
    assert parse_problem(text) is None


def test_parse_problem_rejects_trailing_text():
    text = (
        "Maya has 3 apples. Maya buys 2 more apples. How many apples does Maya have now? "
        "Answer with the largest choice"
    )
    assert parse_problem(text) is None


def test_op_apply_and_problem_values():
    p = Problem(
        "Tom",
        "coins",
        10,
        (Op("add", 5, "finds"), Op("sub", 3, "loses"), Op("mul", 3), Op("div", 4)),
    )
    # 10 + 5 = 15; 15 - 3 = 12; 12 * 3 = 36; 36 // 4 = 9
    assert p.values() == [10, 15, 12, 36, 9]
    assert parse_problem(p.text()) == p
