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
    # was ["**Step 1**", "Add them."]: a step that is only a marker was the bug of issue 6
    ("**Step 1**\nAdd them.", ["**Step 1**\nAdd them."]),
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


# --- realistic small-model CoTs (SmolLM2-135M-Instruct style, issue 6) -------------------------
# Each case: (CoT, sentence steps, newline steps).

REAL_COTS = [
    # numbered list with a leading space: "1." was a step of its own
    (
        " 1. First, we need to find out how many apples Sam has after buying more. Sam has 12 "
        "apples and buys 5 more, so 12 + 5 = 17.\n 2. Next, Sam gives away 3 apples, so "
        "17 - 3 = 14.\n 3. Therefore, the answer is 14.",
        [
            "1. First, we need to find out how many apples Sam has after buying more.",
            "Sam has 12 apples and buys 5 more, so 12 + 5 = 17.",
            "2. Next, Sam gives away 3 apples, so 17 - 3 = 14.",
            "3. Therefore, the answer is 14.",
        ],
        [
            "1. First, we need to find out how many apples Sam has after buying more. Sam has 12 "
            "apples and buys 5 more, so 12 + 5 = 17.",
            "2. Next, Sam gives away 3 apples, so 17 - 3 = 14.",
            "3. Therefore, the answer is 14.",
        ],
    ),
    # a heading and its first item on one line: was "Reasoning: 1."
    (
        "Reasoning: 1. The price of one pencil is $0.25. 2. Tom buys 8 pencils, so he pays "
        "8 * 0.25 = $2.00. 3. So the answer is (B).",
        [
            "Reasoning: 1. The price of one pencil is $0.25.",
            "2. Tom buys 8 pencils, so he pays 8 * 0.25 = $2.00.",
            "3. So the answer is (B).",
        ],
        [
            "Reasoning: 1. The price of one pencil is $0.25. 2. Tom buys 8 pencils, so he pays "
            "8 * 0.25 = $2.00. 3. So the answer is (B).",
        ],
    ),
    # restated options: was "Options: A.", "165\nB.", "2*9\nC.", ...
    (
        "Let's think step by step.\nOptions: A. 165\nB. 2*9\nC. 18\nD. 81\n"
        "We need to calculate 2*9. 2*9 = 18. So the answer is C.",
        [
            "Let's think step by step.",
            "Options: A. 165",
            "B. 2*9",
            "C. 18",
            "D. 81",
            "We need to calculate 2*9.",
            "2*9 = 18.",
            "So the answer is C.",
        ],
        [
            "Let's think step by step.",
            "Options: A. 165",
            "B. 2*9",
            "C. 18",
            "D. 81",
            "We need to calculate 2*9. 2*9 = 18. So the answer is C.",
        ],
    ),
    # options weighed one by one: each option line is a reasoning step
    (
        "Let's check each option:\nA. 165 is too big.\nB. 2*9 = 18, which is the product.\n"
        "C. 18 is the same as B.\nThe answer is B.",
        [
            "Let's check each option:",
            "A. 165 is too big.",
            "B. 2*9 = 18, which is the product.",
            "C. 18 is the same as B.",
            "The answer is B.",
        ],
        None,  # same as the sentence steps
    ),
    # options restated inline on one line stay together; "is B." still ends a sentence
    (
        "Options: A. 165 B. 18 C. 20. The answer is B. Because 2*9 = 18.",
        ["Options: A. 165 B. 18 C. 20.", "The answer is B.", "Because 2*9 = 18."],
        ["Options: A. 165 B. 18 C. 20. The answer is B. Because 2*9 = 18."],
    ),
    # an answer after a colon is not a list opened by a heading
    (
        "The answer is: A. Because 165 is the product.",
        ["The answer is: A.", "Because 165 is the product."],
        ["The answer is: A. Because 165 is the product."],
    ),
    # unpunctuated lines: were merged into one step
    (
        "Sam has 12 apples\nHe buys 5 more apples\n12 + 5 = 17\nHe gives away 3 apples\n"
        "17 - 3 = 14\nThe answer is 14",
        [
            "Sam has 12 apples",
            "He buys 5 more apples",
            "12 + 5 = 17",
            "He gives away 3 apples",
            "17 - 3 = 14",
            "The answer is 14",
        ],
        None,
    ),
    # unpunctuated lines that start in lower case are still lines
    (
        "total apples = 12 + 5 = 17\nthen he gives away 3\nso 17 - 3 = 14",
        ["total apples = 12 + 5 = 17", "then he gives away 3", "so 17 - 3 = 14"],
        None,
    ),
    # a long line among unpunctuated ones is still split into its sentences
    (
        "Sam has 12 apples\nHe buys 5 more. Now he has 12 + 5 = 17 apples. Then he gives 3 away\n"
        "The answer is 14",
        [
            "Sam has 12 apples",
            "He buys 5 more.",
            "Now he has 12 + 5 = 17 apples.",
            "Then he gives 3 away",
            "The answer is 14",
        ],
        [
            "Sam has 12 apples",
            "He buys 5 more. Now he has 12 + 5 = 17 apples. Then he gives 3 away",
            "The answer is 14",
        ],
    ),
    # a line that stops mid-sentence ("of", "=") goes on in the next line
    (
        "Sam has 12 apples and he goes to the market, where he buys\n5 more apples at a price of\n"
        "$0.50 each. So he has 17 apples in total.",
        [
            "Sam has 12 apples and he goes to the market, where he buys\n5 more apples at a price "
            "of\n$0.50 each.",
            "So he has 17 apples in total.",
        ],
        [
            "Sam has 12 apples and he goes to the market, where he buys",
            "5 more apples at a price of",
            "$0.50 each. So he has 17 apples in total.",
        ],
    ),
    (
        "First we add the apples\n12 + 5 =\n17\nThen we subtract 3",
        ["First we add the apples", "12 + 5 =\n17", "Then we subtract 3"],
        ["First we add the apples", "12 + 5 =", "17", "Then we subtract 3"],
    ),
    # markdown bullets under a heading line
    (
        "To solve this, we need:\n- The number of apples Sam has: 12\n- The number he buys: 5\n"
        "* Total: 12 + 5 = 17\n\nSo Sam has 17 apples.",
        [
            "To solve this, we need:",
            "- The number of apples Sam has: 12",
            "- The number he buys: 5",
            "* Total: 12 + 5 = 17",
            "So Sam has 17 apples.",
        ],
        None,
    ),
    # "**Step 1:**" bold headers, alone on a line or followed by text; decimals
    (
        "**Step 1:** Find the cost of the notebooks.\nEach notebook costs $3.5, so 4 notebooks "
        "cost 4 * 3.5 = $14.\n\n**Step 2:**\nAdd the pen. 14 + 2 = 16.\n\n**Answer:** 16",
        [
            "**Step 1:** Find the cost of the notebooks.",
            "Each notebook costs $3.5, so 4 notebooks cost 4 * 3.5 = $14.",
            "**Step 2:**\nAdd the pen.",
            "14 + 2 = 16.",
            "**Answer:** 16",
        ],
        [
            "**Step 1:** Find the cost of the notebooks.",
            "Each notebook costs $3.5, so 4 notebooks cost 4 * 3.5 = $14.",
            "**Step 2:**\nAdd the pen. 14 + 2 = 16.",
            "**Answer:** 16",
        ],
    ),
    # a heading line ending in ":" then a numbered list with "e.g." and "i.e."
    (
        "Here is the reasoning:\n1. Sam has 12 apples.\n2. He buys 5 more, e.g. from a shop, so "
        "he has 17.\n3. He gives away 3, i.e. 17 - 3 = 14.\nSo the answer is 14.",
        [
            "Here is the reasoning:",
            "1. Sam has 12 apples.",
            "2. He buys 5 more, e.g. from a shop, so he has 17.",
            "3. He gives away 3, i.e. 17 - 3 = 14.",
            "So the answer is 14.",
        ],
        None,
    ),
    # markers alone on their lines open the next line; a trailing one is left alone
    (
        "1.\nSam has 12 apples.\n2.\n\nHe buys 5 more.\n3.",
        ["1.\nSam has 12 apples.", "2.\n\nHe buys 5 more.", "3."],
        None,
    ),
    (
        "### Step 1\nThe train travels 60 km in 1.5 hours.\n"
        "### Step 2\nSpeed = 60 / 1.5 = 40 km/h.",
        [
            "### Step 1\nThe train travels 60 km in 1.5 hours.",
            "### Step 2\nSpeed = 60 / 1.5 = 40 km/h.",
        ],
        None,
    ),
    (
        "We need:\n-\nthe apples\n*\nthe pears",
        ["We need:", "-\nthe apples", "*\nthe pears"],
        None,
    ),
    # "(A)" options and "Step n:" lines
    (
        "The options are:\n(A) 12\n(B) 14\n(C) 17\nSam ends with 14 apples, so the answer is (B).",
        [
            "The options are:",
            "(A) 12",
            "(B) 14",
            "(C) 17",
            "Sam ends with 14 apples, so the answer is (B).",
        ],
        None,
    ),
    (
        "Step 1: Sam has 12 apples\nStep 2: He buys 5 more, so he has 17\n"
        "Step 3: He gives away 3, so 17 - 3 = 14",
        [
            "Step 1: Sam has 12 apples",
            "Step 2: He buys 5 more, so he has 17",
            "Step 3: He gives away 3, so 17 - 3 = 14",
        ],
        None,
    ),
    # nested bullets; a lower-case label after a sentence end opens a step
    (
        "1. Find the cost:\n   - pencil: $0.25\n   - pen: $1.50\n2. Add them: 0.25 + 1.50 = 1.75",
        ["1. Find the cost:", "- pencil: $0.25", "- pen: $1.50", "2. Add them: 0.25 + 1.50 = 1.75"],
        None,
    ),
    (
        "Let's solve it: a. Compute 3.5 * 2 = 7. b. Add 3 to get 10.",
        ["Let's solve it: a. Compute 3.5 * 2 = 7.", "b. Add 3 to get 10."],
        ["Let's solve it: a. Compute 3.5 * 2 = 7. b. Add 3 to get 10."],
    ),
    # abbreviations and decimals at a line end in prose
    (
        "We try small primes, e.g.\n2 and 3. Mr. Lee checks 3.5 too.\nIt is not an integer.",
        ["We try small primes, e.g.\n2 and 3.", "Mr. Lee checks 3.5 too.", "It is not an integer."],
        ["We try small primes, e.g.", "2 and 3. Mr. Lee checks 3.5 too.", "It is not an integer."],
    ),
]


@pytest.mark.parametrize(("text", "sentence", "newline"), REAL_COTS)
def test_real_cots(text: str, sentence: list[str], newline: list[str] | None) -> None:
    assert texts(text) == sentence
    assert texts(text, "newline") == (sentence if newline is None else newline)
    for method in SEGMENTERS:
        steps = split_steps(text, method)
        _check_invariants(text, steps)
        # truncating after any step keeps an exact prefix that ends on that step
        for k, step in enumerate(steps, 1):
            assert prefix(text, steps, k) == text[: step.end]
            assert prefix(text, steps, k).endswith(step.text)


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
    "A.", "B.", "b.", "(C)", "Options:", "Reasoning:", "**Step", "1:**", "**", "#", "of", ",",
    "3.5", "i.e.",
]  # fmt: skip
# Steps that are nothing but a list marker: only the last step may be one of these.
_LONE = {"1.", "2)", "3:", "-", "*", "•", "A.", "B.", "b.", "(C)", "Step 3:", "**Step 1:**"}
_SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u2028"]


def _random_text(rng: random.Random) -> str:
    n = rng.randint(0, 30)
    parts = [rng.choice(_SPACES) if rng.random() < 0.2 else ""]
    for _ in range(n):
        parts.append(rng.choice(_WORDS))
        parts.append(rng.choice(_SPACES))
    return "".join(parts[:-1] if rng.random() < 0.5 else parts)


# Line-structured CoTs built from parts, so that the exact steps are known.
_STYLES = [
    "{n}.", "{n})", "-", "*", "•", "Step {n}:", "**Step {n}:**", "### Step {n}", "{L}.", "({L})",
    "{l})",
]  # fmt: skip
# The sentences of one item line, split where the sentence segmenter must split them.
_ITEMS = [
    ["Sam has 12 apples"],
    ["He buys 5 more, so 12 + 5 = 17."],
    ["the rate is 0.5 per hour"],
    ["We use small primes, e.g. 2 and 3."],
    ["Mr. Lee pays $3.50 for it.", "That is cheap."],
    ["He buys 5 more.", "Now he has 17 apples"],
    ["17 - 3 = 14"],
    ["Is it 14?", "Yes!"],
    ["so the answer is (B)"],
    ["The total is 2*9 = 18"],
    ["Each pen costs 3.5 dollars, i.e. 7 for two"],
]
_HEADINGS = ["Reasoning:", "Let's think step by step:", "**Solution:**", "Options:"]


def _generated_cot(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A numbered/bulleted CoT with its sentence steps and its newline steps."""
    style = rng.choice(_STYLES)
    heading = rng.choice(_HEADINGS) if rng.random() < 0.4 else None
    same_line = heading is not None and rng.random() < 0.5 and not style.startswith("#")
    text, sentence, newline = "", [], []
    if heading is not None and not same_line:
        text = heading + rng.choice(["\n", "\n\n", " \n"])
        sentence.append(heading)
        newline.append(heading)
    for n in range(1, rng.randint(1, 8) + 1):
        marker = style.format(n=n, L=chr(64 + n), l=chr(96 + n))
        lone = rng.random() < 0.25 and not (same_line and n == 1)
        sep = rng.choice(["\n", "\n\n", " \n"]) if lone else " "
        first = marker + sep
        if same_line and n == 1:
            first = f"{heading} {first}"
        parts = rng.choice(_ITEMS)
        text += rng.choice(["", " ", "  "]) + first + " ".join(parts)
        text += rng.choice(["\n", "\n\n", "\r\n", " \n"])
        sentence += [first + parts[0], *parts[1:]]
        newline.append(first + " ".join(parts))
    return text, sentence, newline


def test_generated_line_structured_cots() -> None:
    rng = random.Random(2024)
    for _ in range(500):
        text, sentence, newline = _generated_cot(rng)
        assert texts(text) == sentence, text
        assert texts(text, "newline") == newline, text


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
    corpus = [text for text, _ in SENTENCE_CASES] + [COT] + [text for text, *_ in REAL_COTS]
    corpus += [_generated_cot(rng)[0] for _ in range(300)]
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
        assert not any(step.text in _LONE for step in steps[:-1]), (text, steps)
        for k in range(len(steps) + 1):
            p = prefix(text, steps, k)
            assert text.startswith(p)
            assert " ".join(p.split()) == " ".join(" ".join(s.text for s in steps[:k]).split())


def test_random_texts_split_into_many_steps() -> None:
    # guards the property test against a splitter that returns one step per text
    rng = random.Random(99)
    counts = [len(split_steps(_random_text(rng))) for _ in range(300)]
    assert max(counts) >= 5
