"""Built-in task: seeded multi-step arithmetic word problems as multiple-choice questions.

Problems are short stories ("Maya has 12 marbles. Maya buys 7 more marbles. ...") with 2-6
operations. Distractors are the mistakes a reasoner plausibly makes: off-by-one results,
intermediate values, and the result with one operation skipped. `parse_problem` reads a
problem back; the simulated model uses it as its arithmetic skill.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.registry import register
from cotfaith.tasks.base import Question, content_id


@dataclass
class ArithmeticTaskConfig:
    """Seeded multi-step arithmetic word problems (the offline default; no data file)."""

    name: str = "arithmetic"
    n_questions: int = 50
    """How many problems."""
    seed: int = 0
    """Problems are a pure function of the seed."""
    min_steps: int = 2
    """Fewest operations per problem."""
    max_steps: int = 6
    """Most operations per problem."""
    min_choices: int = 4
    """Fewest answer choices."""
    max_choices: int = 5
    """Most answer choices."""
    # Keys every file task has, accepted (and unused: nothing is read or downloaded) so that a
    # sweep across tasks, which Hydra first composes with the default task, can set them once:
    #   cotfaith -m task=aqua,logiqa task.data_dir=/data
    data_dir: str | None = None
    """Unused (arithmetic is generated): the download folder of the file tasks."""
    url: str | None = None
    """Unused (arithmetic is generated): the mirror of the file tasks."""
    on_bad_record: str = "error"
    """Unused (arithmetic is generated): what file tasks do with a malformed record."""


@register("task", "arithmetic", config=ArithmeticTaskConfig)
def load(cfg: Mapping[str, Any]) -> list[Question]:
    """Seeded multi-step arithmetic word problems (built in, offline)."""
    try:
        return generate(
            int(cfg["n_questions"]),
            seed=int(cfg["seed"]),
            min_steps=int(cfg["min_steps"]),
            max_steps=int(cfg["max_steps"]),
            min_choices=int(cfg["min_choices"]),
            max_choices=int(cfg["max_choices"]),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


NAMES = ("Maya", "Tom", "Aisha", "Luis", "Mei", "Omar", "Nina", "Kofi", "Sara", "Ivan")
ITEMS = ("marbles", "apples", "stickers", "coins", "books", "shells", "cards", "pencils")
ADD_VERBS = ("buys", "finds", "receives", "picks up")
SUB_VERBS = ("gives away", "loses", "sells")

_NAME = r"(?P<name>[A-Z][a-z]+)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("start", re.compile(rf"^{_NAME} has (?P<n>\d+) (?P<items>\w+)\.$")),
    ("add", re.compile(rf"^{_NAME} (?P<verb>{'|'.join(ADD_VERBS)}) (?P<n>\d+) more \w+\.$")),
    ("sub", re.compile(rf"^{_NAME} (?P<verb>{'|'.join(SUB_VERBS)}) (?P<n>\d+) \w+\.$")),
    ("mul", re.compile(rf"^{_NAME} (?P<verb>doubles|triples) the number of \w+\.$")),
    (
        "div",
        re.compile(rf"^{_NAME} splits the \w+ into (?P<n>\d+) equal groups and keeps one group\.$"),
    ),
    ("ask", re.compile(rf"^How many (?P<items>\w+) does {_NAME} have now\?$")),
)


@dataclass(frozen=True)
class Op:
    kind: str  # add | sub | mul | div
    operand: int
    verb: str = ""

    def apply(self, x: int) -> int:
        if self.kind == "add":
            return x + self.operand
        if self.kind == "sub":
            return x - self.operand
        if self.kind == "mul":
            return x * self.operand
        return x // self.operand

    def sentence(self, name: str, items: str) -> str:
        if self.kind == "add":
            return f"{name} {self.verb} {self.operand} more {items}."
        if self.kind == "sub":
            return f"{name} {self.verb} {self.operand} {items}."
        if self.kind == "mul":
            return f"{name} {'doubles' if self.operand == 2 else 'triples'} the number of {items}."
        return f"{name} splits the {items} into {self.operand} equal groups and keeps one group."

    def working(self, name: str, before: int, after: int) -> str:
        """One CoT step that performs this operation (`after` may be a slip)."""
        x, n = before, self.operand
        if self.kind == "add":
            return f"{name} {self.verb} {n} more, so {x} + {n} = {after}."
        if self.kind == "sub":
            return f"{name} {self.verb} {n}, so {x} - {n} = {after}."
        if self.kind == "mul":
            word = "Doubling" if n == 2 else "Tripling"
            return f"{word} gives {x} * {n} = {after}."
        return f"Keeping one of {n} equal groups leaves {x} / {n} = {after}."


@dataclass(frozen=True)
class Problem:
    name: str
    items: str
    start: int
    ops: tuple[Op, ...]

    def values(self) -> list[int]:
        """The running value: start, then after each operation."""
        out = [self.start]
        for op in self.ops:
            out.append(op.apply(out[-1]))
        return out

    def text(self) -> str:
        parts = [f"{self.name} has {self.start} {self.items}."]
        parts += [op.sentence(self.name, self.items) for op in self.ops]
        parts.append(f"How many {self.items} does {self.name} have now?")
        return " ".join(parts)


def parse_problem(text: str) -> Problem | None:
    """Read back a problem written by `Problem.text`; None for anything else."""
    text = text.strip()
    sentences = re.findall(r"[^.?]+[.?]", text)
    if "".join(sentences) != text:
        return None  # trailing words after the last sentence: not one of ours
    name = items = None
    start: int | None = None
    ops: list[Op] = []
    for raw in sentences:
        s = raw.strip()
        matched = next(((k, m) for k, pat in _PATTERNS if (m := pat.match(s))), None)
        if matched is None:
            return None
        kind, m = matched
        if name is not None and m.groupdict().get("name", name) != name:
            return None  # a story about one person throughout
        if kind == "start":
            name, items, start = m["name"], m["items"], int(m["n"])
        elif kind == "ask":
            if m["items"] != items:
                return None
        elif kind == "mul":
            ops.append(Op("mul", 2 if m["verb"] == "doubles" else 3))
        elif kind == "div":
            ops.append(Op("div", int(m["n"])))
        else:
            ops.append(Op(kind, int(m["n"]), m["verb"]))
    if name is None or items is None or start is None or not ops:
        return None
    return Problem(name, items, start, tuple(ops))


def _random_op(rng: random.Random, x: int) -> Op | None:
    kind = rng.choice(("add", "add", "sub", "sub", "mul", "div"))
    if kind == "add":
        return Op("add", rng.randint(2, 20), rng.choice(ADD_VERBS))
    if kind == "sub" and x > 3:
        return Op("sub", rng.randint(1, min(x - 1, 20)), rng.choice(SUB_VERBS))
    if kind == "mul" and x <= 150:
        return Op("mul", rng.choice((2, 3)))
    if kind == "div":
        divisors = [d for d in (2, 3, 4, 5) if x % d == 0 and x // d >= 2]
        if divisors:
            return Op("div", rng.choice(divisors))
    return None


def _distractors(problem: Problem, rng: random.Random, needed: int) -> list[int]:
    vals = problem.values()
    final = vals[-1]
    cands = [final + 1, final - 1, *vals[1:-1], vals[0]]
    # the result with one operation skipped: a classic slip in multi-step problems
    for skip in range(len(problem.ops)):
        x = problem.start
        for i, op in enumerate(problem.ops):
            if i != skip:
                x = op.apply(x)
        cands.append(x)
    cands += [final + 2, final - 2, final + 10, final * 2]
    seen: list[int] = []
    for c in cands:
        if c > 0 and c != final and c not in seen:
            seen.append(c)
    # keep the most plausible first (off-by-one, intermediate), with a little shuffling
    head, tail = seen[:4], seen[4:]
    rng.shuffle(head)
    out = head + tail
    step = 3
    while len(out) < needed:  # many choices asked: widen the off-by-k band
        for c in (final + step, final - step):
            if c > 0 and c not in out and c != final:
                out.append(c)
        step += 1
    return out[:needed]


def generate(
    n_questions: int,
    seed: int = 0,
    min_steps: int = 2,
    max_steps: int = 6,
    min_choices: int = 4,
    max_choices: int = 5,
) -> list[Question]:
    """`n_questions` distinct problems, the same for the same arguments."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"task: need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if not 2 <= min_choices <= max_choices <= 26:
        raise ValueError(
            f"task: need 2 <= min_choices <= max_choices <= 26, got {min_choices}, {max_choices}"
        )
    rng = random.Random(f"arithmetic:{seed}")
    questions: list[Question] = []
    seen: set[str] = set()
    while len(questions) < n_questions:
        n_ops = rng.randint(min_steps, max_steps)
        x = rng.randint(5, 40)
        start = x
        ops: list[Op] = []
        while len(ops) < n_ops:
            op = _random_op(rng, x)
            if op is not None:
                ops.append(op)
                x = op.apply(x)
        problem = Problem(rng.choice(NAMES), rng.choice(ITEMS), start, tuple(ops))
        text = problem.text()
        if text in seen:
            continue
        seen.add(text)
        n_choices = rng.randint(min_choices, max_choices)
        values = [problem.values()[-1], *_distractors(problem, rng, n_choices - 1)]
        order = list(range(len(values)))
        rng.shuffle(order)
        choices = tuple(str(values[i]) for i in order)
        gold = string.ascii_uppercase[order.index(0)]
        questions.append(
            Question(
                id=content_id(text, choices),
                text=text,
                choices=choices,
                answer=gold,
                task="arithmetic",
                meta={"n_ops": n_ops},
            )
        )
    return questions
