"""Read the answer letter out of a model reply.

Three strategies: the text generated after the prefilled ``The single, most likely answer is (``,
the top logprobs of that first generated token, and a free-text parser for instructed-format
replies when prefill is unavailable. None of them raises on odd input: a reply that cannot be
read becomes ``letter=None`` with a status saying why.

A logprob read-out also says how much probability the choice letters hold (``mass``): a model
whose first token is mostly something else ("The", a new assistant turn) has not answered with
a letter, however the few letters in its top alternatives compare (status ``low_mass``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OK = "ok"
UNPARSEABLE = "unparseable"
EMPTY = "empty"
AMBIGUOUS = "ambiguous"
INVALID_LETTER = "invalid_letter"
LOW_MASS = "low_mass"
"""Logprob read-out: the valid letters hold less than `min_mass` of the first token's
probability (the model did not answer with a letter); the renormalised probs are kept."""
NEW_TURN = "new_turn"
"""The reply after a prefilled answer phrase starts the phrase again: the server closed the
prefilled assistant turn and began a new one instead of continuing it."""
STATUSES = (OK, UNPARSEABLE, EMPTY, AMBIGUOUS, INVALID_LETTER, LOW_MASS, NEW_TURN)

DEFAULT_MIN_MASS = 0.5
"""Least probability the valid letters must hold on the first answer token (config
`answer.min_letter_mass`). Measured on SmolLM2-135M through llama.cpp: where the answer phrase
really was continued (raw completion) the median letter mass was 0.988; where the server
ignored the prefill, or the model answered an instruction with a sentence, it was 0.035 and
0.14. 0.5 sits far from both: a real answer passes, and below it the letters are not even the
model's most likely kind of token, so their argmax says nothing about its answer."""


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer letter (one of the choice labels) or None, and how reading it went."""

    letter: str | None
    status: str
    probs: dict[str, float] | None = None
    """Logprob read-out: the distribution renormalised over the letters."""
    mass: float | None = None
    """Logprob read-out: total probability (not renormalised) of the first-token alternatives
    that read as a valid letter; a lower bound, since only the top alternatives are returned.
    None for read-outs without logprobs."""


def _match_label(chunk: str, letters: Sequence[str], *, any_case: bool) -> str | None:
    """The label in ``letters`` that ``chunk`` spells (exactly, or upper-cased if allowed)."""
    if chunk in letters:
        return chunk
    if any_case and chunk.upper() in letters:
        return chunk.upper()
    return None


# ---------------------------------------------------------------------------------------------
# Prefill: the text right after "... answer is ("
# ---------------------------------------------------------------------------------------------

# What may follow a lone letter for it to still read as a (wrong) label: "F", "F)", "F.".
_LABEL_END = ("", ")", "]", ".", ":", ",")


def read_prefill(output: str, letters: Sequence[str]) -> ParsedAnswer:
    """Read the letter generated after the prefilled ``(``: ``"B"``, ``"B) 17"``, ``" b)"``."""
    text = output.lstrip() if isinstance(output, str) else ""
    if not text:
        return ParsedAnswer(None, EMPTY)
    # Longest labels first so that "AB" is not read as "A" when both are labels.
    for label in sorted({str(x) for x in letters if x}, key=len, reverse=True):
        chunk, after = text[: len(label)], text[len(label) : len(label) + 1]
        if after.isalpha():
            continue  # "because" is not "B"
        if chunk == label or chunk.upper() == label:
            return ParsedAnswer(label, OK)
    first, after = text[0], text[1:2]
    if first.isascii() and first.isalpha() and after in _LABEL_END:
        return ParsedAnswer(None, INVALID_LETTER)
    return ParsedAnswer(None, UNPARSEABLE)


# ---------------------------------------------------------------------------------------------
# Logprobs of the first generated token
# ---------------------------------------------------------------------------------------------


def _token_letter(token: str, letters: Sequence[str]) -> str | None:
    """``"B"``, ``" B"``, ``"B)"``, ``"(B"`` -> ``"B"``; anything else -> None."""
    core = token.strip().strip("()[].:").strip()
    return _match_label(core, letters, any_case=True) if core else None


def read_logprobs(
    top_logprobs: Mapping[str, float] | None,
    letters: Sequence[str],
    min_mass: float = DEFAULT_MIN_MASS,
) -> ParsedAnswer:
    """Distribution over ``letters`` from the first token's top alternatives, and its argmax.

    Below ``min_mass`` of probability on the letters the answer is ``low_mass`` (letter None,
    probs and mass kept): renormalising a few stray letters would invent a confident answer.
    """
    if not top_logprobs:
        return ParsedAnswer(None, EMPTY)
    per_letter: dict[str, list[float]] = {}
    for token, logprob in top_logprobs.items():
        letter = _token_letter(token, letters) if isinstance(token, str) else None
        try:
            value = float(logprob)
        except (TypeError, ValueError):
            continue
        if letter is None or math.isnan(value) or value == math.inf:
            continue
        per_letter.setdefault(letter, []).append(value)
    # log-sum-exp per letter, shifted by the overall max so that exp() cannot overflow.
    finite = [v for vs in per_letter.values() for v in vs if v > -math.inf]
    if not finite:
        return ParsedAnswer(None, UNPARSEABLE, mass=0.0)
    # the unshifted sum: logprobs are <= 0, so this cannot overflow either
    mass = sum(math.exp(min(v, 0.0)) for v in finite)
    top = max(finite)
    weight = {x: sum(math.exp(v - top) for v in per_letter.get(x, [])) for x in letters}
    total = sum(weight.values())
    probs = {x: w / total for x, w in weight.items()}
    if mass < min_mass:
        return ParsedAnswer(None, LOW_MASS, probs, mass)
    best = None
    for x in letters:  # strict ">" keeps the first letter on ties
        if best is None or probs[x] > probs[best]:
            best = x
    return ParsedAnswer(best, OK, probs, mass)


def restarts_prefill(text: str, prefill: str | None) -> bool:
    """Whether a reply that should continue ``prefill`` begins it again instead.

    A server that ignores the request to continue the final assistant turn closes it and opens
    a new one, whose reply starts like a fresh answer: "The single, most likely answer is (B)."
    after a prefilled "The single, most likely answer is (". The first word is enough (a
    one-token reply is just "The"); a genuine continuation after "(" is a letter.
    """
    if not prefill or not isinstance(text, str):
        return False
    words, head = text.split(), prefill.split()
    return bool(words and head) and words[0] == head[0]


# ---------------------------------------------------------------------------------------------
# Free text
# ---------------------------------------------------------------------------------------------

# "answer is", "Answer:", "**Answer:**", "final answer would be", "correct option is",
# '{"answer": "B"}'. Scoped (?i:) so that bare labels below stay case-sensitive.
_CUE = r"""
(?i:
    \b(?:answer|(?:correct|right|best|final)\s+(?:option|choice|letter))\b
    ["']?
    (?:\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be|has\s+to\s+be))?
    [\s*_]*(?:[:=][\s*_]*)?["']?
    (?:either\s+)?
    (?:(?:option|choice|letter)\s+)?
)
"""
# A label: "(B)", "[B]", "(b)" in any case; a bare label in lower case only when it ends the line,
# so that "the answer is a number" has no label.
_LABEL = r"""
(?:
    \(\s*(?P<paren>[A-Za-z])\s*\)
  | \[\s*(?P<bracket>[A-Za-z])\s*\]
  | (?P<bare>[A-Z])(?![\w'’-]|\.\w)
  | (?P<lower>[a-z])(?=\)?[.!]?[*_"']*[ \t]*(?:$|\n))   # "answer is b." ending the line
)
"""
_STATEMENT = re.compile(_CUE + _LABEL, re.VERBOSE)
_CUE_ONLY = re.compile(_CUE, re.VERBOSE)
_LABEL_AT = re.compile(_LABEL, re.VERBOSE)
# "(A) or (B)", "A, C", "A/B": more labels in the same statement.
_ALTERNATIVE = re.compile(r"[\s*_]*(?:,|/|&|\bor\b|\band\b)\s*(?:either\s+)?", re.IGNORECASE)
_CLOSE = re.compile(r"[*_\"']*")
# A lone label on the last line: "(B)", "**(B)**", "B.", "- B)".
_LONE_LABEL = re.compile(
    r"[\s*_>#-]*(?:\(\s*(?P<paren>[A-Za-z])\s*\)|\[\s*(?P<bracket>[A-Za-z])\s*\]"
    r"|(?P<bare>[A-Z])\)?)[\s.*_!]*"
)
_BOLD_LABEL = re.compile(r"\*\*\s*(?:\(\s*(?P<paren>[A-Za-z])\s*\)|(?P<bare>[A-Z]))\s*[.)]?\s*\*\*")
# Words that may follow a bare "A" or "I" when it is a label rather than an article or pronoun.
_AFTER_BARE_LABEL = frozenset({"or", "and", "because", "since", "as", "is", "with", "which"})
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_NULL_LIKE = frozenset({"null", "none", "nil", "nan", "undefined", "n/a"})


@dataclass(frozen=True)
class _Found:
    labels: tuple[str, ...]  # raw labels as written, in order
    cased: tuple[bool, ...]  # whether each may be read case-insensitively: "(b)" yes, "b" no


def _label_of(m: re.Match[str]) -> tuple[str, bool]:
    groups = m.groupdict()
    if groups.get("paren"):
        return groups["paren"], True
    if groups.get("bracket"):
        return groups["bracket"], True
    if groups.get("lower"):
        return groups["lower"], True
    return groups["bare"], False


def _single(m: re.Match[str]) -> _Found:
    label, any_case = _label_of(m)
    return _Found((label,), (any_case,))


def _bare_is_word(text: str, m: re.Match[str]) -> bool:
    """A bare "A"/"I" followed by an ordinary word is an article or a pronoun, not a label."""
    if not m.groupdict().get("bare") or m.group("bare") not in "AI":
        return False
    nxt = _NEXT_WORD.match(text, m.end())
    return bool(nxt) and nxt.group(1) not in _AFTER_BARE_LABEL


def _statements(text: str) -> list[_Found]:
    """Every "answer is <label>[ or <label>...]" statement, in order."""
    found = []
    for m in _STATEMENT.finditer(text):
        if _bare_is_word(text, m):
            continue
        first = _label_of(m)
        labels, cased = [first[0]], [first[1]]
        pos = m.end()
        while True:
            alt = _ALTERNATIVE.match(text, pos + len(_CLOSE.match(text, pos).group()))
            nxt = _LABEL_AT.match(text, alt.end()) if alt else None
            if nxt is None or _bare_is_word(text, nxt):
                break
            label, any_case = _label_of(nxt)
            labels.append(label)
            cased.append(any_case)
            pos = nxt.end()
        found.append(_Found(tuple(labels), tuple(cased)))
    return found


def _resolve(found: _Found, letters: Sequence[str]) -> ParsedAnswer:
    resolved = {
        _match_label(raw, letters, any_case=any_case) or f"?{raw}"
        for raw, any_case in zip(found.labels, found.cased, strict=True)
    }
    if len(resolved) > 1:
        return ParsedAnswer(None, AMBIGUOUS)
    (letter,) = resolved
    if letter.startswith("?"):
        return ParsedAnswer(None, INVALID_LETTER)
    return ParsedAnswer(letter, OK)


def _normalise(s: str) -> str:
    s = " ".join(s.replace("*", " ").replace("$", " ").split()).casefold()
    return s[:-1].rstrip() if s.endswith((".", "!")) else s


def _match_choice(text: str, letters: Sequence[str], choices: Sequence[str]) -> ParsedAnswer | None:
    """'The answer is 17.' with choice B == '17' -> B (last such statement wins)."""
    norm = [_normalise(str(c)) for c in choices]
    candidates = [line for line in text.splitlines() if line.strip()][-1:]
    # Cue statements go after the last line so that, read backwards, they are preferred.
    for m in _CUE_ONLY.finditer(text):
        eol = text.find("\n", m.end())
        candidates.append(text[m.end() : eol if eol >= 0 else len(text)])
    for body in reversed(candidates):
        key = _normalise(body.strip(" \t\"'"))
        hits = {letters[i] for i, c in enumerate(norm) if c and c == key and i < len(letters)}
        if len(hits) > 1:
            return ParsedAnswer(None, AMBIGUOUS)
        if hits:
            return ParsedAnswer(hits.pop(), OK)
    return None


def parse_free_text(
    text: str, letters: Sequence[str], choices: Sequence[str] | None = None
) -> ParsedAnswer:
    """Read the final answer from an instructed-format reply; never raises on a ``str``."""
    if not isinstance(text, str) or not text.strip():
        return ParsedAnswer(None, EMPTY)
    if text.strip().strip("\"'").strip().casefold() in _NULL_LIKE:
        return ParsedAnswer(None, EMPTY)  # a serialised missing reply, not a reply
    letters = [str(x) for x in letters]
    # Priority 1: the last explicit "answer is (B)" / "Answer: B" statement.
    statements = _statements(text)
    if statements:
        return _resolve(statements[-1], letters)
    # Priority 2: a lone label on the last non-empty line.
    last_line = text.strip().splitlines()[-1]
    lone = _LONE_LABEL.fullmatch(last_line)
    if lone:
        return _resolve(_single(lone), letters)
    # Priority 3: the last bold label "**B**".
    bold = list(_BOLD_LABEL.finditer(text))
    if bold:
        return _resolve(_single(bold[-1]), letters)
    # Priority 4: the text of a choice, only when no label was stated at all.
    if choices:
        by_text = _match_choice(text, letters, choices)
        if by_text is not None:
            return by_text
    return ParsedAnswer(None, UNPARSEABLE)
