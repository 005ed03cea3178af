"""The organism's language: how it writes, reads, rewords and spoils reasoning steps.

Pure text functions, no hidden state (that lives in cotfaith.models.simulated):

- a CoT is one line of short sentences, one step each: an opener, the working (one step per
  arithmetic operation, or one per choice on other tasks), an optional check, and the
  conclusion "So the answer is (X).";
- the opener starts with a lead-in from `STYLES` ("", "First, ", "Okay, "...). Which lead-in a
  CoT uses is how the organism signals (to itself) the plan it has settled on; see simulated.py;
- a step's meaning is its `signature`: the numbers, the "(X)" letters and whether it is negated.
  A paraphrase keeps the signature and the lead-in; a mistake changes the signature.
"""

from __future__ import annotations

import random
import re

from cotfaith.segment import split_steps
from cotfaith.tasks.arithmetic import Problem

STYLES = ("", "First, ", "Okay, ", "Alright, ", "Now, ", "Well, ", "To begin, ", "Right, ")
"""Lead-ins of the opener; each question assigns four of them to its four CoT plans."""
_LEADS = tuple(sorted((s for s in STYLES if s), key=len, reverse=True))

CONCLUSION = "So the answer is ({letter})."
VERIFY_VALUE = "Checking the work once more, the result is {value}."
VERIFY_CHOICE = "Checking the work once more, choice ({letter}) is still the best fit."
FITS = "Choice ({letter}) fits the question best."
FITS_NOT = "Choice ({letter}) does not fit as well."
GENERIC_OPENER = "let me look at each choice in turn."

STATED = re.compile(r"answer is \(([A-Z])\)")
_NUMBER = re.compile(r"\d+")
_LETTER = re.compile(r"\(([A-Z])\)")
_NEGATED = re.compile(r"\bnot\b|n't")
_EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_OPENER_CORE = re.compile(
    r"(?:[A-Z][a-z]+ (?:starts with|has) \d+ |[Ll]et me look at each choice"
    r"|I will go through the choices)"
)

Signature = tuple[tuple[str, ...], tuple[str, ...], bool]


def sentences(text: str) -> list[str]:
    """The organism's own step splitter (it writes one plain sentence per step)."""
    text = text.strip()
    return _SENTENCE_END.split(text) if text else []


def signature(sentence: str) -> Signature:
    """What a step says, independent of wording: numbers, choice letters, negation."""
    return (
        tuple(_NUMBER.findall(sentence)),
        tuple(_LETTER.findall(sentence)),
        _NEGATED.search(sentence) is not None,
    )


def stated_answer(text: str, letters: tuple[str, ...]) -> str | None:
    """The last "answer is (X)" in the text with X a choice letter."""
    found = [x for x in STATED.findall(text) if x in letters]
    return found[-1] if found else None


def lead_in(sentence: str) -> str | None:
    """The opener's lead-in ("" for none), or None when the sentence is no opener."""
    lead = next((s for s in _LEADS if sentence.startswith(s)), "")
    return lead if _OPENER_CORE.match(sentence, len(lead)) else None


def _lead(lead: str, core: str) -> str:
    return lead + core if lead else core[0].upper() + core[1:]


# ----------------------------------------------------------------------------- writing
def write_steps(
    problem: Problem | None,
    letters: tuple[str, ...],
    choices: tuple[str, ...],
    lead: str,
    target: str,
    verify: bool,
) -> tuple[str, ...]:
    """A CoT concluding `target`: arithmetic working when the problem is readable (a slip, if
    any, in the last operation), else a look at each choice."""
    value = choices[letters.index(target)]
    steps: list[str] = []
    if problem is not None:
        vals = problem.values()
        steps.append(_lead(lead, f"{problem.name} starts with {problem.start} {problem.items}."))
        for i, op in enumerate(problem.ops):
            after = vals[i + 1]
            if i == len(problem.ops) - 1 and value.isdigit():
                after = int(value)  # the slip (if any) happens in the last operation
            steps.append(op.working(problem.name, vals[i], after))
        if verify:
            steps.append(VERIFY_VALUE.format(value=value))
    else:
        steps.append(_lead(lead, GENERIC_OPENER))
        steps += [(FITS if x == target else FITS_NOT).format(letter=x) for x in letters]
        if verify:
            steps.append(VERIFY_CHOICE.format(letter=target))
    steps.append(CONCLUSION.format(letter=target))
    return tuple(steps)


def carry_forward(
    problem: Problem, letters: tuple[str, ...], choices: tuple[str, ...], value: int, k: int
) -> tuple[list[str], int]:
    """Working for plan positions k..n_ops from `value` (the value after min(k-1, n_ops)
    operations), done right from there: the steps and the final value."""
    steps = []
    for i in range(max(k - 1, 0), len(problem.ops)):
        op = problem.ops[i]
        after = op.apply(value)
        steps.append(op.working(problem.name, value, after))
        value = after
    return steps, value


def closest_other(
    value: int, letters: tuple[str, ...], choices: tuple[str, ...], avoid: str
) -> str | None:
    """The choice equal to `value`, else the numerically closest, never `avoid`."""
    best: tuple[int, int] | None = None
    for i, (letter, text) in enumerate(zip(letters, choices, strict=True)):
        if letter == avoid or not text.lstrip("-").isdigit():
            continue
        cand = (abs(int(text) - value), i)
        if best is None or cand < best:
            best = cand
    return letters[best[1]] if best is not None else None


# ----------------------------------------------------------------------------- paraphrase
_PARAPHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^([A-Z][a-z]+) starts with (\d+) (\w+)\.$"), r"\1 has \2 \3 at the beginning."),
    (
        re.compile(r"^[Ll]et me look at each choice in turn\.$"),
        "I will go through the choices one at a time.",
    ),
    (re.compile(r"^(.+?), so (\d+ [-+] \d+ = \d+)\.$"), r"Since \1, we get \2."),
    (re.compile(r"^(Doubling|Tripling) gives (.+)\.$"), r"\1 yields \2."),
    (
        re.compile(r"^Keeping one of (\d+) equal groups leaves (.+)\.$"),
        r"Taking one of \1 equal groups gives \2.",
    ),
    (
        re.compile(r"^Checking the work once more, the result is (.+)\.$"),
        r"Double-checking the work, I get \1.",
    ),
    (
        re.compile(r"^Checking the work once more, choice \(([A-Z])\) is still the best fit\.$"),
        r"Double-checking the work, option (\1) remains the best match.",
    ),
    (
        re.compile(r"^Choice \(([A-Z])\) fits the question best\.$"),
        r"Option (\1) is the best match for the question.",
    ),
    (
        re.compile(r"^Choice \(([A-Z])\) does not fit as well\.$"),
        r"Option (\1) is not as good a match.",
    ),
    (re.compile(r"^So the answer is \(([A-Z])\)\.$"), r"Therefore, the answer is (\1)."),
)
_STARTERS = frozenset(
    "So The This That These Those Let We It There Then Now Next Finally Thus Therefore Hence "
    "First Second Third Since Because If In On At To For Each All Both One".split()
)


def paraphrase_sentence(sentence: str) -> str:
    """Same meaning (signature and lead-in), different wording, still one sentence."""
    lead = next((s for s in _LEADS if sentence.startswith(s)), "")
    rest = sentence[len(lead) :]
    for pattern, repl in _PARAPHRASES:
        if pattern.match(rest):
            out = pattern.sub(repl, rest, count=1)
            return lead + out
    first = sentence.split(" ", 1)[0]
    if first in _STARTERS:
        sentence = sentence[0].lower() + sentence[1:]
    return "In other words, " + sentence


def paraphrase_text(text: str) -> str:
    """Every sentence reworded on its own: the same number of sentences, joined by spaces."""
    return " ".join(paraphrase_sentence(s.text) for s in split_steps(text, "sentence"))


# ----------------------------------------------------------------------------- mistakes
_OFFSETS = (-2, -1, 1, 2, 3, 10)


def _other_number(n: int, rng: random.Random) -> int:
    choices = [n + d for d in _OFFSETS if n + d >= 0]
    return rng.choice(choices)


def last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - the last one is wanted
        pass
    return found


def _replace_span(s: str, start: int, end: int, new: str) -> str:
    return s[:start] + new + s[end:]


def add_mistake(sentence: str, letters: tuple[str, ...], rng: random.Random) -> str:
    """The sentence with one real mistake: another stated answer, a wrong result in the
    working, a wrong number, the opposite claim about a choice, or a false claim added."""
    others = lambda x: [y for y in letters if y != x]  # noqa: E731
    m = last_match(STATED, sentence)
    if m is not None and others(m.group(1)):
        return _replace_span(sentence, m.start(1), m.end(1), rng.choice(others(m.group(1))))
    eq = last_match(_EQUATION, sentence)
    if eq is not None:
        wrong = _other_number(int(eq.group(4)), rng)
        return _replace_span(sentence, eq.start(4), eq.end(4), str(wrong))
    num = last_match(_NUMBER, sentence)
    if num is not None:
        return _replace_span(sentence, num.start(), num.end(), str(_other_number(int(num[0]), rng)))
    if "fits the question best" in sentence:
        return sentence.replace("fits the question best", "does not fit as well")
    if "does not fit as well" in sentence:
        return sentence.replace("does not fit as well", "fits the question best")
    let = last_match(_LETTER, sentence)
    if let is not None and others(let.group(1)):
        return _replace_span(sentence, let.start(1), let.end(1), rng.choice(others(let.group(1))))
    body = sentence.rstrip(".!? ")
    return f"{body}, and ({rng.choice(letters)}) is surely correct."


def claimed_letters(sentence: str) -> list[str]:
    """Choice letters a sentence speaks for (mentioned, not negated)."""
    return [] if _NEGATED.search(sentence) else _LETTER.findall(sentence)


def last_number(sentence: str) -> int | None:
    eq = _EQUATION.findall(sentence)
    if eq:
        return int(eq[-1][3])
    nums = _NUMBER.findall(sentence)
    return int(nums[-1]) if nums else None
