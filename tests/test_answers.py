"""Tests for reading answer letters: prefill text, first-token logprobs and free text."""

from __future__ import annotations

import math
import random

import pytest

from cotfaith.answers import (
    STATUSES,
    ParsedAnswer,
    parse_free_text,
    read_logprobs,
    read_prefill,
    restarts_prefill,
)

ABCD = ["A", "B", "C", "D"]
ABCDE = ["A", "B", "C", "D", "E"]

# --- prefill -----------------------------------------------------------------------------------

PREFILL_CASES = [
    ("B", ABCD, "B", "ok"),
    ("B)", ABCD, "B", "ok"),
    ("B) 17", ABCD, "B", "ok"),
    (" b)", ABCD, "B", "ok"),
    ("B.", ABCD, "B", "ok"),
    ("\n  D", ABCD, "D", "ok"),
    ("d", ABCD, "D", "ok"),
    ("E)", ABCDE, "E", "ok"),
    ("A: because", ABCD, "A", "ok"),
    ("C1", ABCD, "C", "ok"),
    ("because it is larger", ABCD, None, "unparseable"),
    ("Because", ABCD, None, "unparseable"),
    ("But", ABCD, None, "unparseable"),
    ("I think B", ABCD, None, "unparseable"),
    ("", ABCD, None, "empty"),
    ("   \n\t", ABCD, None, "empty"),
    ("F", ABCD, None, "invalid_letter"),
    ("F)", ABCD, None, "invalid_letter"),
    ("e)", ABCD, None, "invalid_letter"),
    ("E", ABCD, None, "invalid_letter"),
    ("17", ABCD, None, "unparseable"),
    ("(B)", ABCD, None, "unparseable"),
    (")", ABCD, None, "unparseable"),
    ("数", ABCD, None, "unparseable"),
    ("é", ABCD, None, "unparseable"),
]


@pytest.mark.parametrize(("output", "letters", "letter", "status"), PREFILL_CASES)
def test_read_prefill(output: str, letters: list[str], letter: str | None, status: str) -> None:
    assert read_prefill(output, letters) == ParsedAnswer(letter, status)


def test_read_prefill_lowercase_labels_are_exact() -> None:
    # upper-casing only helps when the upper-case label is valid
    assert read_prefill("b)", ["a", "b"]) == ParsedAnswer("b", "ok")
    assert read_prefill("B)", ["a", "b"]).letter is None


# --- logprobs ----------------------------------------------------------------------------------


def test_read_logprobs_merges_token_variants() -> None:
    lp = {"B": math.log(0.3), " B": math.log(0.2), "B)": math.log(0.1), "A": math.log(0.4)}
    got = read_logprobs(lp, ABCD)
    assert got.letter == "B" and got.status == "ok"
    assert got.probs is not None
    assert got.probs["B"] == pytest.approx(0.6)
    assert got.probs["A"] == pytest.approx(0.4)
    assert got.probs["C"] == 0.0 and got.probs["D"] == 0.0
    assert list(got.probs) == ABCD


def test_read_logprobs_normalises_over_letters_only() -> None:
    lp = {"The": math.log(0.9), "A": math.log(0.025), "C": math.log(0.075)}
    got = read_logprobs(lp, ABCD, min_mass=0.0)
    assert got.letter == "C"
    assert got.probs == pytest.approx({"A": 0.25, "B": 0.0, "C": 0.75, "D": 0.0})
    assert sum(got.probs.values()) == pytest.approx(1.0)


def test_read_logprobs_tie_breaks_by_letter_order() -> None:
    assert read_logprobs({"C": -1.0, "B": -1.0}, ABCD).letter == "B"
    assert read_logprobs({"D": -1.0, " A": -1.0}, ABCD).letter == "A"


def test_read_logprobs_extreme_values_do_not_overflow() -> None:
    got = read_logprobs({"A": -1000.0, "B": -1001.0}, ABCD, min_mass=0.0)
    assert got.letter == "A"
    assert got.probs["A"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert read_logprobs({"A": -math.inf, "B": -5.0}, ABCD, min_mass=0.0).letter == "B"
    # positive "logprobs" (a broken server) must not overflow the mass either
    assert read_logprobs({"A": 1e6}, ABCD).mass == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("top", "letter", "status"),
    [
        (None, None, "empty"),
        ({}, None, "empty"),
        ({"The": -0.1, "17": -2.0}, None, "unparseable"),
        ({"F": -0.1}, None, "unparseable"),
        ({"A": -math.inf}, None, "unparseable"),
        ({"A": math.nan, "B": -0.3}, "B", "ok"),
        ({"b": -0.5, "A": -1.0}, "B", "ok"),
        ({"(C": -0.5, "A": -1.0}, "C", "ok"),
        ({"E": -0.1, "A": -0.5}, "A", "ok"),
        ({"A": "junk", "B": -0.3}, "B", "ok"),  # type: ignore[dict-item]
        ({"The": -0.1, "B": -3.0}, None, "low_mass"),
    ],
)
def test_read_logprobs_cases(top: dict[str, float] | None, letter: str | None, status: str) -> None:
    got = read_logprobs(top, ABCD)
    assert (got.letter, got.status) == (letter, status)
    assert (got.probs is not None) == (status in ("ok", "low_mass"))


# The first-token distributions measured on SmolLM2-135M through llama.cpp (issue 6): with the
# prefill ignored the letters held a median 3.5%, with a letter-only instruction 14%, with the
# prefill really continued (raw completion) 98.8%.
@pytest.mark.parametrize(
    ("letter_mass", "status"), [(0.035, "low_mass"), (0.14, "low_mass"), (0.988, "ok")]
)
def test_read_logprobs_flags_answers_the_letters_hardly_hold(
    letter_mass: float, status: str
) -> None:
    top = {
        "The": math.log(1 - letter_mass),
        "B": math.log(letter_mass * 0.7),
        " C": math.log(letter_mass * 0.3),
    }
    got = read_logprobs(top, ABCD)
    assert got.status == status
    assert got.mass == pytest.approx(letter_mass)  # un-renormalised, and the same either way
    assert got.probs == pytest.approx({"A": 0.0, "B": 0.7, "C": 0.3, "D": 0.0})  # kept
    assert (got.letter == "B") == (status == "ok")  # low mass never reads as a letter


def test_read_logprobs_mass_counts_only_valid_letters_and_threshold_is_a_parameter() -> None:
    top = {"A": math.log(0.3), " a": math.log(0.1), "F": math.log(0.45), "The": math.log(0.15)}
    got = read_logprobs(top, ABCD)
    assert got.mass == pytest.approx(0.4)  # "F" is not a choice here
    assert got.status == "low_mass"
    assert read_logprobs(top, ABCD, min_mass=0.4).letter == "A"
    assert read_logprobs(top, ABCDE + ["F"]).letter == "F"  # with F a choice: mass 0.85
    assert read_logprobs({"The": -0.1}, ABCD).mass == 0.0
    assert read_logprobs(None, ABCD).mass is None


@pytest.mark.parametrize(
    ("text", "restarts"),
    [
        ("The", True),
        (" The single, most likely answer is (B).", True),
        ("B", False),
        (" B) 17", False),
        ("", False),
        ("Therefore", False),
    ],
)
def test_restarts_prefill(text: str, restarts: bool) -> None:
    assert restarts_prefill(text, "The single, most likely answer is (") is restarts
    assert restarts_prefill(text, None) is False


# --- free text ---------------------------------------------------------------------------------

FREE_TEXT_CASES = [
    # explicit statements
    ("So the answer is (B).", "B", "ok"),
    ("The answer is (b).", "B", "ok"),
    ("answer: (C)", "C", "ok"),
    ("Answer: D", "D", "ok"),
    ("Answer:D", "D", "ok"),
    ("The answer is B.", "B", "ok"),
    ("the answer is b.", "B", "ok"),
    ("**Answer:** C", "C", "ok"),
    ("The answer is **(A)**.", "A", "ok"),
    ("The final answer would be [D].", "D", "ok"),
    ("The correct option is C, since 17 > 15.", "C", "ok"),
    ("The answer is option B.", "B", "ok"),
    ("The answer is A because 3 < 4.", "A", "ok"),
    ('{"answer": "B"}', "B", "ok"),
    ("The answer is (A)... wait, no. The answer is (C).", "C", "ok"),
    ("Answer: A. Answer: B.", "B", "ok"),
    ("The answer is (B).\n\n(D)", "B", "ok"),  # an explicit statement beats a lone label
    ("Long reasoning about option (A) and (C).\nSo the answer is (D). Done.", "D", "ok"),
    # lone label on the last line, bold labels
    ("We add them up.\n(B)", "B", "ok"),
    ("We add them up.\n**(C)**", "C", "ok"),
    ("We add them up.\nD.", "D", "ok"),
    ("Options (A) and (C) fail, so **D** it is.", "D", "ok"),
    ("**B**", "B", "ok"),
    # ambiguous final statements
    ("The answer is (A) or (B).", None, "ambiguous"),
    ("The answer is either A or C.", None, "ambiguous"),
    ("Answer: A, C", None, "ambiguous"),
    ("Answer: A/B", None, "ambiguous"),
    ("The answer is (A) and (a).", "A", "ok"),  # the same letter twice is not ambiguous
    # invalid letters
    ("(Z)", None, "invalid_letter"),
    ("The answer is (Z).", None, "invalid_letter"),
    ("Answer: F", None, "invalid_letter"),
    ("The answer is (A) or (Z).", None, "ambiguous"),
    # garbage
    ("I cannot answer this question.", None, "unparseable"),
    ("I cannot answer", None, "unparseable"),
    ("", None, "empty"),
    ("   \n ", None, "empty"),
    ("null", None, "empty"),
    ("None", None, "empty"),
    ('"null"', None, "empty"),
    ('{"foo": [1, 2, {"bar": null', None, "unparseable"),
    ("]]]{{{((()))", None, "unparseable"),
    ("ÀÅ∂ƒ©˙∆˚¬…æ≈ç√∫˜µ≤≥÷ 数学 🙂", None, "unparseable"),
    ("The answer is a number larger than 15.", None, "unparseable"),
    ("Answer: A good question, but I am not sure.", None, "unparseable"),
    ("Answer: I do not know.", None, "unparseable"),
    ("The answer is not (A).", None, "unparseable"),
    ("Option (A) is 15 and option (B) is 17.", None, "unparseable"),
    ("It is a hard one.\n(A) 15 (B) 17", None, "unparseable"),
    ("So the answer is 17.", None, "unparseable"),  # no choices given
    (("Let me think step by step. " * 2000).strip(), None, "unparseable"),
    ("answer" + " " * 50_000 + "?", None, "unparseable"),
]


@pytest.mark.parametrize(("text", "letter", "status"), FREE_TEXT_CASES)
def test_parse_free_text(text: str, letter: str | None, status: str) -> None:
    assert parse_free_text(text, ABCD) == ParsedAnswer(letter, status)


def test_parse_free_text_more_letters() -> None:
    assert parse_free_text("Answer: E", ABCDE) == ParsedAnswer("E", "ok")
    assert parse_free_text("Answer: E", ABCD) == ParsedAnswer(None, "invalid_letter")


CHOICES = ["15", "17", "3.5", "Paris"]

CHOICE_TEXT_CASES = [
    ("The answer is 17.", "B"),
    ("The answer is: 3.5", "C"),
    ("So the answer is **paris**.", "D"),
    ("Adding gives 15.\nThe answer is 17", "B"),
    ("The answer is 15. Hmm, no: the answer is 17.", "B"),
    ("We compute it.\n17", "B"),
    ("The answer is (A), not 17.", "A"),  # a stated letter wins over choice text
    ("The answer is 16.", None),
    ("The answer is 175.", None),
]


@pytest.mark.parametrize(("text", "letter"), CHOICE_TEXT_CASES)
def test_parse_free_text_matches_choice_text(text: str, letter: str | None) -> None:
    got = parse_free_text(text, ABCD, CHOICES)
    assert got.letter == letter
    assert got.status == ("ok" if letter else "unparseable")


def test_parse_free_text_duplicate_choice_texts_are_ambiguous() -> None:
    got = parse_free_text("The answer is 17.", ABCD, ["17", "17", "3", "4"])
    assert got == ParsedAnswer(None, "ambiguous")


def test_parse_free_text_ignores_choices_beyond_letters() -> None:
    assert parse_free_text("The answer is 9.", ["A", "B"], ["1", "2", "9"]).letter is None


# --- fuzz --------------------------------------------------------------------------------------

_PIECES = [
    "answer", "Answer:", "answer is", "the answer is", " ", "  ", "\n", "(", ")", "[", "]", "*",
    "**", "A", "B", "C", "D", "E", "Z", "a", "b", "z", "I", ".", ",", " or ", " and ", "/", ":",
    "{", "}", '"', "'", "17", "because", "null", "数", "é", "🙂", "\u2028", "\x00", "option",
    "either", "$", "-", "#", "…",
]  # fmt: skip


def _random_reply(rng: random.Random) -> str:
    if rng.random() < 0.3:  # arbitrary code points, including surrogates and control chars
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 40)))
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))


def test_fuzz_parsers_never_raise_and_only_return_valid_letters() -> None:
    rng = random.Random(20240601)
    seen = {"free": set(), "prefill": set()}
    for _ in range(5000):
        letters = ABCD if rng.random() < 0.7 else ABCDE
        text = _random_reply(rng)
        results = {
            "free": parse_free_text(text, letters),
            "free_choices": parse_free_text(text, letters, ["17", "b", "A", "x y"][: len(letters)]),
            "prefill": read_prefill(text, letters),
            "logprobs": read_logprobs({text: -rng.random() * 5, "C": -2.0}, letters),
        }
        for name, got in results.items():
            assert got.status in STATUSES
            assert (got.letter is not None) == (got.status == "ok"), (name, text, got)
            assert got.letter is None or got.letter in letters, (name, text, got)
            if got.probs is not None:
                assert set(got.probs) == set(letters)
                assert sum(got.probs.values()) == pytest.approx(1.0)
        seen["free"].add(results["free"].status)
        seen["prefill"].add(results["prefill"].status)
    # the fuzz corpus must actually reach the interesting branches
    assert seen["free"] >= {"ok", "unparseable", "empty", "ambiguous", "invalid_letter"}
    assert seen["prefill"] >= {"ok", "unparseable", "empty", "invalid_letter"}
