"""Split a chain of thought into steps, as spans into the original text.

Truncation keeps the first k steps, so every step records where it sits in the original string:
the truncated CoT is exactly ``text[:steps[k-1].end]``, with the original spacing preserved.
Steps are only ever split at whitespace, so no word is ever cut in two.

Rules (checked against SmolLM2-style CoTs, which number their steps, restate the options and often
drop final punctuation):

* A list marker ("1.", "2)", "a.", "A.", "(B)", "-", "*", "Step 3:", "**Step 1:**") belongs to the
  step it opens. A marker is never read as the end of a sentence, and a step that would be nothing
  but a marker (a "1." line, a "**Step 2:**" header line) is joined to the step after it. Only a
  marker at the very end of the CoT, with nothing to open, is left as a step of its own.
* ``newline``: every non-blank line is a step.
* ``sentence``: lines are first grouped into blocks, then each block is split into sentences.
  - A list item ("1. ...", "B. 2*9", "- ...", "**...", "# ...") and the line after a heading
    line ("We need:", "**Plan**", "## Plan") always start a new block, so a heading on its own
    line is its own step. A heading on the same line as its first item ("Reasoning: 1. First ...",
    "Options: A. 165") stays in that item's step: a heading alone carries no reasoning, and nothing
    ends a sentence between them.
  - Each option line ("A. 165", "B. 2*9") is a step, like any other list item: when the model
    weighs the options one by one ("B. 2*9 = 18, which matches") those lines are its reasoning, and
    a single step for the whole block would hide them from truncation. Options restated inline on
    one line ("A. 165 B. 18 C. 20") stay one step.
  - A paragraph (lines between blank lines) is line-structured when more of its unpunctuated line
    ends look complete ("... = 17", "... 5 more apples") than cut mid-sentence ("... the price of",
    "... and", ",", "="). Then every line is a step, even without final punctuation. Otherwise
    (hard-wrapped prose, or every line ends in punctuation) lines are joined and only sentence
    ends split them; a line cut mid-sentence is always joined to the next. Either way a line with
    several sentences is split into them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise


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
_LIST_LABEL = re.compile(r"\d{1,3}|[A-Za-z]")  # the "1" of "1." or the "a" of "a."
# Labels that can open a list right after a heading on the same line ("Options: A. 165").
_FIRST_LABELS = frozenset({"1", "a", "A"})
# Heads after which a label is the answer, not a list: "The answer is: A. Because ...".
_ANSWER_HEADS = frozenset({"answer", "is", "be", "option", "choice"})
# A list marker: bullet, "1." / "2)" / "3:", "a." / "A)", "(B)", "Step 3:".
_MARKER = (
    r"(?:[-*•]|\d{1,3}[.):]|[A-Za-z][.)]|\([A-Za-z0-9]{1,3}\)"
    r"|[Ss]tep[ \t]*\d{1,3}[ \t]*[.:)]?)"
)
# A line opening a new item: a marker followed by a space, or markdown structure ("**", "#").
_ITEM_START = re.compile(rf"[ \t]*(?:\*\*|#|{_MARKER}(?:[ \t]|$))")
# A step that is nothing but a marker, maybe in bold or as a markdown heading ("**Step 2:**").
_LONE_MARKER = re.compile(rf"(?:#{{1,6}}[ \t]*)?(?:\*\*)?{_MARKER}(?:\*\*)?")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# A line ending in one of these, or in one of these words, stops mid-sentence: the next line
# continues it (hard-wrapped prose, "12 + 5 =\n17").
_CONTINUING_ENDS = tuple(",;([{-–—+=×÷&")
_TERMINATOR_ENDS = tuple(_TERMINATORS)
_CONTINUING_WORDS = frozenset(
    """a an the of to in on at by for with from into and or but nor that which who whose than as
    is are was were be been has have had will would can could should must not this these those its
    their his her our each every per if because since when while where whether""".split()
)
# How a line relates to the line before it (see _boundary).
_BREAK, _WRAP, _ENDED, _PLAIN = range(4)


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


def _attach_markers(text: str, steps: list[Step]) -> list[Step]:
    """Join each step that is only a list marker to the step after it (the step it opens)."""
    out: list[Step] = []
    start: int | None = None  # where a run of lone markers began
    for n, step in enumerate(steps):
        s = step.start if start is None else start
        if n + 1 < len(steps) and _LONE_MARKER.fullmatch(step.text):
            start = s
            continue
        # steps are separated by whitespace only, so the joined span is still trimmed
        out.append(Step(text[s : step.end], s, step.end))
        start = None
    return out


def split_newlines(text: str) -> list[Step]:
    """Each non-blank line is one step; a line that is only a list marker joins the next one."""
    steps = (_make(text, s, e) for s, e in _lines(text))
    return _attach_markers(text, [s for s in steps if s is not None])


def _is_heading(line: str) -> bool:
    """Whether a line is a heading ("**Step 1**", "## Plan", "We need:")."""
    line = line.strip()
    return line.endswith((":", "**")) or line.startswith("#")


def _boundary(prev: str, line: str) -> int:
    """Classify the break between two adjacent non-blank lines."""
    if _ITEM_START.match(line) or _is_heading(prev):
        return _BREAK  # a new item or the body of a heading: always a new block
    prev = prev.rstrip()
    if prev.endswith(_CONTINUING_ENDS) or prev.rsplit(None, 1)[-1].lower() in _CONTINUING_WORDS:
        return _WRAP  # always joined: the sentence visibly goes on
    if prev.rstrip(_CLOSERS).endswith(_TERMINATOR_ENDS):
        return _ENDED  # a line in line-structured text, a sentence end (or not) in prose
    return _PLAIN  # unpunctuated line end: a step in line-structured text, a wrap in prose


def _paragraphs(text: str) -> list[list[tuple[int, int]]]:
    """Runs of adjacent non-blank lines."""
    paras: list[list[tuple[int, int]]] = [[]]
    for s, e in _lines(text):
        if text[s:e].strip():
            paras[-1].append((s, e))
        elif paras[-1]:
            paras.append([])
    return [p for p in paras if p]


def _blocks(text: str) -> list[tuple[int, int]]:
    """Spans that no sentence crosses: lines grouped as the module docstring describes."""
    blocks: list[tuple[int, int]] = []
    for para in _paragraphs(text):
        pairs = list(pairwise(para))
        kinds = [_boundary(text[a:b], text[c:d]) for (a, b), (c, d) in pairs]
        # Hard-wrapped prose shows itself by lines that stop mid-sentence. With no unpunctuated
        # line ends at all the sentence splitter decides, so "e.g.\n2 and 3" stays together.
        prose = kinds.count(_WRAP) >= kinds.count(_PLAIN)
        start = para[0][0]
        for ((_, end), (nxt, _)), kind in zip(pairs, kinds, strict=True):
            if kind == _BREAK or (kind != _WRAP and not prose):
                blocks.append((start, end))
                start = nxt
        blocks.append((start, para[-1][1]))
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


def _list_label(text: str, sent_start: int, dot: int, last: str | None) -> str | None:
    """The label if the period at ``dot`` closes a list marker ("1.", "A."), else None.

    ``last`` is the label of the previous marker in the same sentence, so that options restated
    inline ("A. 165 B. 18") are read as markers, not as sentences ending in "B.".
    """
    tok_start, token = _token_before(text, sent_start, dot)
    word = token.lstrip(_OPENERS)
    if not _LIST_LABEL.fullmatch(word):
        return None
    if tok_start == sent_start:
        return word  # "1. Compute ..." or "a. Compute ...": opens the sentence
    prev_end = tok_start
    while prev_end > sent_start and text[prev_end - 1].isspace():
        prev_end -= 1
    _, prev = _token_before(text, sent_start, prev_end)
    head = prev.strip("*")
    if head.endswith(":") and word in _FIRST_LABELS and head[:-1].lower() not in _ANSWER_HEADS:
        return word  # "Reasoning: 1. First ...", "Options: A. 165": a list opened by a heading
    # Letters only: "we add 3 to get 2." after a "1." label is arithmetic, not a list.
    if last is not None and last.isalpha() and word.isalpha() and ord(word) == ord(last) + 1:
        return word
    return None


def _sentences(text: str, lo: int, hi: int) -> list[Step]:
    steps: list[Step] = []
    sent_start, _ = _trim(text, lo, hi)  # so that a label after leading spaces opens the sentence
    label: str | None = None  # the last list label in the current sentence
    i = sent_start
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
        if run_end == end == i + 1 and text[i] == "." and nxt > end:
            # Looked at before anything else, so that every marker updates ``label``.
            found = _list_label(text, sent_start, i, label)
            if found is not None:
                label = found
                i = end
                continue  # a list marker never ends a sentence
        # Split only at whitespace, before something that can open a sentence: lower case after
        # a period is almost always an abbreviation or an ellipsis mid-sentence, unless it is a
        # list marker ("... = 7. b. Add 3").
        split = (
            nxt < hi
            and nxt > end
            and (_starts_sentence(text[nxt]) or _ITEM_START.match(text, nxt, hi) is not None)
            and not (text[i:run_end] == "." and _is_abbreviation(text, sent_start, i, nxt, hi))
        )
        if split:
            step = _make(text, sent_start, end)
            if step is not None:
                steps.append(step)
            sent_start = nxt
            label = None
        i = max(end, i + 1)
    step = _make(text, sent_start, hi)
    if step is not None:
        steps.append(step)
    return steps


def split_sentences(text: str) -> list[Step]:
    """Rule-based sentence splitter that knows numbers, abbreviations and list items."""
    steps = [step for s, e in _blocks(text) for step in _sentences(text, s, e)]
    return _attach_markers(text, steps)


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
