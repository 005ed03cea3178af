"""Split a chain of thought into steps, as spans into the original text.

Truncation keeps the first k steps, so every step records where it sits in the original string:
the truncated CoT is exactly ``text[:steps[k-1].end]``, with the original spacing preserved.
Steps are only ever split at whitespace, so no word is ever cut in two.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step of a CoT; ``original[start:end] == text``."""

    text: str
    start: int
    end: int


# A run of terminators counts as one ("?!", "...", "…").
_TERMINATORS = ".?!…"
# Closing quotes/brackets right after a terminator belong to the sentence they close.
_CLOSERS = "\"'”’)]}»"
# Characters that may open a new sentence besides upper-case letters and digits.
_OPENERS = "\"'“‘([{«"
_LIST_MARKERS = "-*•"

# Abbreviations that never end a sentence when more text follows (compared lower-cased,
# without the final period).
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "approx", "fig", "figs", "eq", "cf", "e.g", "i.e"}
)
# Abbreviations that only hold before a number: "No. 5" but "No. That is wrong."
_NUMERIC_ABBREVIATIONS = frozenset({"no", "nos"})
# Capitalised words after which a single capital is a choice label, not a middle initial.
_LABEL_WORDS = frozenset(
    {"option", "choice", "answer", "letter", "step", "part", "grade", "vitamin", "plan", "type"}
)

_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # "U.S", "e.g", "a.m"
_INITIAL = re.compile(r"[A-Z]\.")
_LIST_LABEL = re.compile(r"\d+|[A-Za-z]")  # "1." / "a." at the start of a step
# A line opening a new list item: bullets, "**bold**" headers, numbers, "Step 3".
_ITEM_START = re.compile(r"[ \t]*(?:[-*•][ \t]|\*\*|\d|[Ss]tep[ \t]+\d)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so that it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _make(text: str, start: int, end: int) -> Step | None:
    start, end = _trim(text, start, end)
    return Step(text[start:end], start, end) if start < end else None


def _lines(text: str) -> list[tuple[int, int]]:
    """Line spans without their line breaks (``\\n``, ``\\r\\n`` or ``\\r``)."""
    spans, pos = [], 0
    for m in _LINE_BREAK.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return spans


def split_newlines(text: str) -> list[Step]:
    """Each non-blank line is one step."""
    steps = (_make(text, s, e) for s, e in _lines(text))
    return [s for s in steps if s is not None]


def _ends_heading(block: str) -> bool:
    """Whether a block's last line is a heading ("**Step 1**", "## Plan", "We need:")."""
    last = block.rstrip().rsplit("\n", 1)[-1].strip()
    return last.endswith((":", "**")) or last.startswith("#")


def _blocks(text: str) -> list[tuple[int, int]]:
    """Spans that no sentence crosses: blank lines and list items always start a new block."""
    blocks: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for s, e in _lines(text):
        line = text[s:e]
        if not line.strip():
            if cur is not None:
                blocks.append(cur)
            cur = None
        elif cur is None:
            cur = (s, e)
        elif _ITEM_START.match(line) or _ends_heading(text[cur[0] : cur[1]]):
            blocks.append(cur)
            cur = (s, e)
        else:
            cur = (cur[0], e)  # a wrapped line continues the current sentence
    if cur is not None:
        blocks.append(cur)
    return blocks


def _starts_sentence(c: str) -> bool:
    return c.isupper() or c.istitle() or c.isdigit() or c in _OPENERS or c in _LIST_MARKERS


def _token_before(text: str, lo: int, pos: int) -> tuple[int, str]:
    """The whitespace-delimited token ending at ``pos`` (not before ``lo``) and its start."""
    start = pos
    while start > lo and not text[start - 1].isspace():
        start -= 1
    return start, text[start:pos]


def _token_after(text: str, pos: int, hi: int) -> str:
    end = pos
    while end < hi and not text[end].isspace():
        end += 1
    return text[pos:end]


def _is_abbreviation(text: str, sent_start: int, dot: int, nxt: int, hi: int) -> bool:
    """Whether the single period at ``dot`` belongs to a word rather than ending the sentence."""
    tok_start, token = _token_before(text, sent_start, dot)
    word = token.lstrip(_OPENERS)
    if not word:
        return False
    if tok_start == sent_start and _LIST_LABEL.fullmatch(word):
        return True  # "1. Compute ..." or "a. Compute ...": a list label, part of the step
    low = word.lower()
    if low in _ABBREVIATIONS or _DOTTED_ACRONYM.fullmatch(word):
        return True
    if low in _NUMERIC_ABBREVIATIONS:
        return text[nxt].isdigit()
    if len(word) == 1 and "A" <= word <= "Z":
        return _is_initial(text, sent_start, tok_start, nxt, hi)
    return False


def _is_initial(text: str, sent_start: int, tok_start: int, nxt: int, hi: int) -> bool:
    """A lone capital before a period: middle initial ("J. K. Rowling") or a label ("is B.")."""
    if _INITIAL.fullmatch(_token_after(text, nxt, hi)):
        return True
    prev_end = tok_start
    while prev_end > sent_start and text[prev_end - 1].isspace():
        prev_end -= 1
    if prev_end <= sent_start:
        return False
    _, prev = _token_before(text, sent_start, prev_end)
    prev = prev.lstrip(_OPENERS)
    if _INITIAL.fullmatch(prev):
        return True
    # "John F. Kennedy": a capitalised name before it; "answer is B." ends the sentence.
    return (
        len(prev) > 1
        and prev.isalpha()
        and prev[0].isupper()
        and prev[1:].islower()
        and prev.lower() not in _LABEL_WORDS
    )


def _sentences(text: str, lo: int, hi: int) -> list[Step]:
    steps: list[Step] = []
    sent_start = lo
    i = lo
    while i < hi:
        if text[i] not in _TERMINATORS:
            i += 1
            continue
        run_end = i
        while run_end < hi and text[run_end] in _TERMINATORS:
            run_end += 1
        end = run_end
        while end < hi and text[end] in _CLOSERS:
            end += 1
        nxt = end
        while nxt < hi and text[nxt].isspace():
            nxt += 1
        # Split only at whitespace, before something that can open a sentence: lower case after
        # a period is almost always an abbreviation or an ellipsis mid-sentence.
        split = (
            nxt < hi
            and nxt > end
            and _starts_sentence(text[nxt])
            and not (text[i:run_end] == "." and _is_abbreviation(text, sent_start, i, nxt, hi))
        )
        if split:
            step = _make(text, sent_start, end)
            if step is not None:
                steps.append(step)
            sent_start = nxt
        i = max(end, i + 1)
    step = _make(text, sent_start, hi)
    if step is not None:
        steps.append(step)
    return steps


def split_sentences(text: str) -> list[Step]:
    """Rule-based sentence splitter that knows numbers, abbreviations and list items."""
    return [step for s, e in _blocks(text) for step in _sentences(text, s, e)]


SEGMENTERS: dict[str, Callable[[str], list[Step]]] = {
    "sentence": split_sentences,
    "newline": split_newlines,
}


def split_steps(text: str, method: str = "sentence") -> list[Step]:
    """Split ``text`` into steps with the named segmenter (see ``SEGMENTERS``)."""
    try:
        segmenter = SEGMENTERS[method]
    except KeyError:
        known = ", ".join(sorted(SEGMENTERS))
        raise ValueError(f"unknown segmentation method {method!r}; known: {known}") from None
    return segmenter(text)


def prefix(text: str, steps: list[Step], k: int) -> str:
    """The original text up to the end of step ``k`` (1-based); ``""`` for ``k == 0``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(steps):
        raise ValueError(f"k must be an integer in 0..{len(steps)}, got {k!r}")
    return text[: steps[k - 1].end] if k else ""
