"""Tests for step segmentation: hard sentence cases, spans, prefixes and a property loop."""

from __future__ import annotations

import random

import pytest

from cotfaith.segment import SEGMENTERS, Step, prefix, split_steps


def texts(text: str, method: str = "sentence") -> list[str]:
    return [s.text for s in split_steps(text, method)]


SENTENCE_CASES = [
    # decimals and numbers
    (
        "The rate is 0.072 per unit. So we multiply.",
        ["The rate is 0.072 per unit.", "So we multiply."],
    ),
    ("It costs $3.50 in total.", ["It costs $3.50 in total."]),
    ("Version 2.0 is out.", ["Version 2.0 is out."]),
    ("1,000.5 apples.", ["1,000.5 apples."]),
    ("There are 3. Then we add 4.", ["There are 3.", "Then we add 4."]),
    ("We get 12.5. 12.5 is too big.", ["We get 12.5.", "12.5 is too big."]),
    # abbreviations
    ("Mr. Smith has 3 apples. He buys 2 more.", ["Mr. Smith has 3 apples.", "He buys 2 more."]),
    (
        "We use small primes, e.g. 2 and 3, to test.",
        ["We use small primes, e.g. 2 and 3, to test."],
    ),
    (
        "Use a prime, i.e. a number with two divisors.",
        ["Use a prime, i.e. a number with two divisors."],
    ),
    ("Apples, pears, etc. are fruit. Next one.", ["Apples, pears, etc. are fruit.", "Next one."]),
    ("We buy apples, pears, etc. Then we eat.", ["We buy apples, pears, etc.", "Then we eat."]),
    ("Mrs. Lee and Ms. Park met Dr. Who.", ["Mrs. Lee and Ms. Park met Dr. Who."]),
    ("Prof. Chen lives on Main St. Louis is far.", ["Prof. Chen lives on Main St. Louis is far."]),
    ("It is cats vs. Dogs today.", ["It is cats vs. Dogs today."]),
    ("It weighs approx. 5 kg. That is heavy.", ["It weighs approx. 5 kg.", "That is heavy."]),
    ("See item No. 5 here. No. That is wrong.", ["See item No. 5 here.", "No.", "That is wrong."]),
    ("As Fig. 3 shows, it grows.", ["As Fig. 3 shows, it grows."]),
    ("The U.S. Army is big. It has many units.", ["The U.S. Army is big.", "It has many units."]),
    ("J. K. Rowling wrote it. She is British.", ["J. K. Rowling wrote it.", "She is British."]),
    ("John F. Kennedy spoke. Crowds came.", ["John F. Kennedy spoke.", "Crowds came."]),
    ("So the answer is B. Done.", ["So the answer is B.", "Done."]),
    ("Pick option C. Then stop.", ["Pick option C.", "Then stop."]),
    # numbered steps
    ("1) Compute the sum. 2) Divide by two.", ["1) Compute the sum.", "2) Divide by two."]),
    ("1. Compute the sum.\n2. Divide by two.", ["1. Compute the sum.", "2. Divide by two."]),
    ("1. Compute the sum. 2. Divide by two.", ["1. Compute the sum.", "2. Divide by two."]),
    ("Step 1: add. Step 2: subtract.", ["Step 1: add.", "Step 2: subtract."]),
    ("1) Compute the sum\n2) Divide by two", ["1) Compute the sum", "2) Divide by two"]),
    ("Step 1: add\nStep 2: subtract", ["Step 1: add", "Step 2: subtract"]),
    ("a. First option here.", ["a. First option here."]),
    ("Let the number be x. Then x + 2 = 5.", ["Let the number be x.", "Then x + 2 = 5."]),
    # newline-separated lists and blank lines
    (
        "We need:\n- apples\n- pears\n* plums\n• figs",
        ["We need:", "- apples", "- pears", "* plums", "• figs"],
    ),
    ("First part\n\nsecond part", ["First part", "second part"]),
    ("Plan:\n12 + 5 = 17\n17 - 3 = 14", ["Plan:", "12 + 5 = 17", "17 - 3 = 14"]),
    ("This line is\nwrapped in the middle.", ["This line is\nwrapped in the middle."]),
    ("**Step 1**\nAdd them.", ["**Step 1**", "Add them."]),
    ("## Plan\nAdd them", ["## Plan", "Add them"]),
    ("We need the following:\nApples and pears", ["We need the following:", "Apples and pears"]),
    ("Windows line.\r\nNext line.\r\n\r\nLast", ["Windows line.", "Next line.", "Last"]),
    # ?, !, closing quotes and brackets
    ("Is it 5? Yes! It is.", ["Is it 5?", "Yes!", "It is."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("(See above.) Next step.", ["(See above.)", "Next step."]),
    ("It ends [here.] And resumes.", ["It ends [here.]", "And resumes."]),
    ("She asked “why?” Nobody knew.", ["She asked “why?”", "Nobody knew."]),
    ("First. (Second.) Third.", ["First.", "(Second.)", "Third."]),
    ('First. "Second." Third.', ["First.", '"Second."', "Third."]),
    # ellipsis and multiple-choice markers
    ("Hmm... let me think. OK.", ["Hmm... let me think.", "OK."]),
    ("Wait... That is wrong.", ["Wait...", "That is wrong."]),
    ("Hmm… maybe not.", ["Hmm… maybe not."]),
    ("So the answer is (B). Done.", ["So the answer is (B).", "Done."]),
    ("Option (A) is wrong. (C) is right.", ["Option (A) is wrong.", "(C) is right."]),
    # lower case after a period does not start a sentence
    ("We have x = 5. then y = 6.", ["We have x = 5. then y = 6."]),
    ("Ends with period.No space here.", ["Ends with period.No space here."]),
    # whitespace and empty input
    ("", []),
    ("   ", []),
    ("\n\n \t\n", []),
    ("  One sentence.  ", ["One sentence."]),
    ("No terminator at all", ["No terminator at all"]),
    (".", ["."]),
    ("...", ["..."]),
]


@pytest.mark.parametrize(("text", "expected"), SENTENCE_CASES)
def test_sentence_cases(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


NEWLINE_CASES = [
    ("", []),
    ("a\nb", ["a", "b"]),
    ("  a. b.  \n\n   \n c ", ["a. b.", "c"]),
    ("one\r\ntwo\rthree", ["one", "two", "three"]),
]


@pytest.mark.parametrize(("text", "expected"), NEWLINE_CASES)
def test_newline_cases(text: str, expected: list[str]) -> None:
    assert texts(text, "newline") == expected


COT = (
    " Sam starts with 12 apples. He buys 5 more, so 12 + 5 = 17. Then he gives away 3, "
    "so 17 - 3 = 14. So the answer is (C)."
)


def test_realistic_cot_and_prefix() -> None:
    steps = split_steps(COT)
    assert [s.text for s in steps] == [
        "Sam starts with 12 apples.",
        "He buys 5 more, so 12 + 5 = 17.",
        "Then he gives away 3, so 17 - 3 = 14.",
        "So the answer is (C).",
    ]
    assert prefix(COT, steps, 0) == ""
    assert prefix(COT, steps, 1) == " Sam starts with 12 apples."
    assert prefix(COT, steps, 2) == " Sam starts with 12 apples. He buys 5 more, so 12 + 5 = 17."
    assert prefix(COT, steps, 4) == COT


def test_prefix_keeps_original_spacing() -> None:
    text = "First step.\n\n  Second   step.  Third."
    steps = split_steps(text)
    assert prefix(text, steps, 2) == "First step.\n\n  Second   step."
    assert steps[1] == Step("Second   step.", 15, 29)


@pytest.mark.parametrize("k", [-1, 5, 1.0, True, "1"])
def test_prefix_rejects_bad_k(k: object) -> None:
    steps = split_steps(COT)
    with pytest.raises(ValueError):
        prefix(COT, steps, k)  # type: ignore[arg-type]


def test_prefix_empty_steps() -> None:
    assert prefix("", [], 0) == ""
    with pytest.raises(ValueError):
        prefix("", [], 1)


def test_unknown_method_names_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'paragraph'.*newline, sentence"):
        split_steps("a. B.", "paragraph")


def test_registry() -> None:
    assert set(SEGMENTERS) == {"sentence", "newline"}
    assert split_steps("A. B.\nC", "newline") == SEGMENTERS["newline"]("A. B.\nC")
    assert split_steps("One. Two.") == split_steps("One. Two.", "sentence")


def test_step_is_frozen() -> None:
    step = split_steps("One.")[0]
    with pytest.raises(AttributeError):
        step.start = 3  # type: ignore[misc]


# --- property loop -----------------------------------------------------------------------------

_WORDS = [
    "Sam", "apples", "12", "0.5", "$3.50", "e.g.", "Mr.", "U.S.", "J.", "(B).", "(A)", "so",
    "etc.", "No.", "5.", "x", "=", "+", "17.", "Then", "he", "...", "?", "!", '"stop."', "(see",
    "above.)", "-", "*", "•", "1.", "2)", "Step", "3:", "“why?”", "é", "ß", "数", "…", "’",
]  # fmt: skip
_SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u2028"]


def _random_text(rng: random.Random) -> str:
    n = rng.randint(0, 30)
    parts = [rng.choice(_SPACES) if rng.random() < 0.2 else ""]
    for _ in range(n):
        parts.append(rng.choice(_WORDS))
        parts.append(rng.choice(_SPACES))
    return "".join(parts[:-1] if rng.random() < 0.5 else parts)


def _check_invariants(text: str, steps: list[Step]) -> None:
    pos = 0
    for i, step in enumerate(steps):
        assert step.text == text[step.start : step.end]
        assert step.text and step.text == step.text.strip()
        gap = text[pos : step.start]
        # steps are ordered, non-overlapping, and split only at (non-empty) whitespace
        assert gap.isspace() or (gap == "" and i == 0), (text, steps)
        pos = step.end
    assert text[pos:] == "" or text[pos:].isspace()
    joined = " ".join(step.text for step in steps)
    assert " ".join(joined.split()) == " ".join(text.split())


@pytest.mark.parametrize("method", sorted(SEGMENTERS))
def test_span_properties_on_random_texts(method: str) -> None:
    rng = random.Random(1234)
    corpus = [text for text, _ in SENTENCE_CASES] + [COT]
    corpus += [_random_text(rng) for _ in range(2000)]
    # arbitrary code points (odd whitespace, title-case letters, surrogates) mixed with punctuation
    corpus += [
        "".join(
            chr(rng.randrange(0x110000)) if rng.random() < 0.3 else rng.choice(' .?!\n")(A1a')
            for _ in range(rng.randint(0, 40))
        )
        for _ in range(2000)
    ]
    for text in corpus:
        steps = split_steps(text, method)
        _check_invariants(text, steps)
        for k in range(len(steps) + 1):
            p = prefix(text, steps, k)
            assert text.startswith(p)
            assert " ".join(p.split()) == " ".join(" ".join(s.text for s in steps[:k]).split())


def test_random_texts_split_into_many_steps() -> None:
    # guards the property test against a splitter that returns one step per text
    rng = random.Random(99)
    counts = [len(split_steps(_random_text(rng))) for _ in range(300)]
    assert max(counts) >= 5
