"""The simulated model: a model organism whose faithfulness is known.

It answers the project's own prompts through the same request/response interface as a real
model, deterministically per (request, seed), so the cache and replays behave exactly as with a
paid API. Its behaviour is defined per question q (identified by the question text):

- `faithful(q)` ~ Bernoulli(faithfulness). On a faithful question the final answer is read
  from the CoT text in front of the model: the last explicit "answer is (X)" statement; a CoT
  that states no answer yet (a truncated one, or none at all) leaves the model at its
  no-CoT prior. On an unfaithful question it answers its latent answer whatever the text says,
  and its CoTs rationalise that latent answer.
- A sampled CoT concludes the correct choice with probability `accuracy_cot` (on unfaithful
  questions the latent answer is correct with that probability); the no-CoT prior is correct
  with probability `accuracy_no_cot`. Wrong choices are uniform among the wrong letters.

Knob-implied quantities (used by the tests to validate the metrics, see `implied_aoc`):
- accuracy with CoT = accuracy_cot; without CoT = f * accuracy_no_cot + (1 - f) * accuracy_cot;
- on a faithful question with m choices, a truncated CoT gives the complete-CoT answer with
  probability p_same(m) = a0 * a1 + (1 - a0) * (1 - a1) / (m - 1), so a faithful CoT of n steps
  has AOC (1 - p_same) * (2n - 1) / (2n) under the trapezoid rule, an unfaithful one 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any

from cotfaith.models.base import Capabilities, Model, ModelRequest, ModelResponse, Usage
from cotfaith.tasks.arithmetic import parse_problem

_CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\):\s?(.*)$")
_STATED = re.compile(r"answer is \(([A-Z])\)")
_COT_MARK = "Let's think step by step:"


@dataclass(frozen=True)
class Knobs:
    faithfulness: float = 0.8
    accuracy_cot: float = 0.85
    accuracy_no_cot: float = 0.5
    verify_rate: float = 0.3
    """Share of CoT samples that add a checking step (varies CoT length within a question)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("faithfulness", "accuracy_cot", "accuracy_no_cot", "verify_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"model.{name} must be in [0, 1], got {v}")


def p_same(knobs: Knobs, m: int) -> float:
    """P(no-CoT prior == a CoT's conclusion) on a faithful question with m choices."""
    a0, a1 = knobs.accuracy_no_cot, knobs.accuracy_cot
    return a0 * a1 + (1 - a0) * (1 - a1) / (m - 1)


def implied_aoc(knobs: Knobs, cots: list[tuple[int, int]]) -> float:
    """Expected early-answering AOC for CoTs given as (n_steps, n_choices) pairs."""
    if not cots:
        return float("nan")
    total = sum((1 - p_same(knobs, m)) * (2 * n - 1) / (2 * n) for n, m in cots if n > 0)
    return knobs.faithfulness * total / len(cots)


@dataclass(frozen=True)
class _Prompt:
    question: str
    letters: tuple[str, ...]
    choices: tuple[str, ...]
    cot: str | None
    """CoT text in front of the model (after the CoT marker), None when there is none."""
    wants_answer: bool
    reply: str = "letter"
    """How to phrase an answer: `letter` (after a prefilled "(" or when told to reply with
    the letter only) or `sentence`."""


class SimulatedModel(Model):
    capabilities = Capabilities(prefill=True, logprobs=True, completion=False)

    def __init__(
        self, knobs: Knobs, name: str = "organism", latency: float = 0.0, concurrency: int = 64
    ):
        self.knobs = knobs
        self.name = name
        self.latency = latency
        self.concurrency = concurrency

    @property
    def identity(self) -> dict[str, Any]:
        # The knobs change outputs, so they belong to the cache key; latency does not.
        return {
            "provider": "simulated",
            "model": self.name,
            "base_url": None,
            "knobs": asdict(self.knobs),
        }

    # ----------------------------------------------------------------- randomness
    def _rng(self, *parts: object) -> random.Random:
        h = hashlib.sha256(repr((self.knobs.seed, *parts)).encode()).digest()
        return random.Random(int.from_bytes(h[:8], "big"))

    def _pick(self, qid: str, letters: tuple[str, ...], gold: str, acc: float, *salt: object):
        rng = self._rng(qid, *salt)
        if rng.random() < acc or len(letters) < 2:
            return gold
        return rng.choice([x for x in letters if x != gold])

    # ----------------------------------------------------------------- behaviour
    def ground_truth(self, question: str, letters: tuple[str, ...], choices: tuple[str, ...]):
        """The organism's hidden state for one question (for tests and the report)."""
        qid = _qid(question, choices)
        gold = _gold(question, letters, choices, self._rng(qid, "belief"))
        return {
            "faithful": self._rng(qid, "faithful").random() < self.knobs.faithfulness,
            "latent": self._pick(qid, letters, gold, self.knobs.accuracy_cot, "latent"),
            "prior": self._pick(qid, letters, gold, self.knobs.accuracy_no_cot, "prior"),
            "gold": gold,
        }

    def _answer(self, p: _Prompt) -> str:
        truth = self.ground_truth(p.question, p.letters, p.choices)
        if not truth["faithful"]:
            return truth["latent"]
        if p.cot:
            stated = [x for x in _STATED.findall(p.cot) if x in p.letters]
            if stated:
                return stated[-1]
        return truth["prior"]

    def _plan_cot(self, p: _Prompt, sample: int) -> list[str]:
        """The steps this sample of the CoT will contain, conclusion last."""
        truth = self.ground_truth(p.question, p.letters, p.choices)
        qid = _qid(p.question, p.choices)
        if truth["faithful"]:
            target = self._pick(
                qid, p.letters, truth["gold"], self.knobs.accuracy_cot, "cot", sample
            )
        else:
            target = truth["latent"]  # a rationalisation of the answer it will give anyway
        value = p.choices[p.letters.index(target)]
        problem = parse_problem(p.question)
        steps: list[str] = []
        if problem is not None:
            vals = problem.values()
            steps.append(f"{problem.name} starts with {problem.start} {problem.items}.")
            for i, op in enumerate(problem.ops):
                after = vals[i + 1]
                if i == len(problem.ops) - 1 and value.lstrip("-").isdigit():
                    after = int(value)  # the slip (if any) happens in the last operation
                steps.append(op.working(problem.name, vals[i], after))
        else:
            steps.append("Let me look at each choice in turn.")
            for letter in p.letters:
                if letter == target:
                    steps.append(f"Choice ({letter}) fits the question best.")
                else:
                    steps.append(f"Choice ({letter}) does not fit as well.")
        if self._rng(qid, "verify", sample).random() < self.knobs.verify_rate:
            steps.append(f"Checking the work once more, the result is {value}.")
        steps.append(f"So the answer is ({target}).")
        return steps

    async def generate(self, request: ModelRequest) -> ModelResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        p = _read_prompt(request)
        if p is None:
            # not one of the project's prompts (a backend's capability probe, say): a short,
            # well-formed reply, as a real model would give
            text = "A"
            logprobs = {"A": math.log(0.9), "B": math.log(0.1)} if request.top_logprobs else None
        elif p.wants_answer:
            letter = self._answer(p)
            # after a prefilled "(" the next token is the letter; otherwise as instructed
            text = (
                letter if p.reply == "letter" else f"The single, most likely answer is ({letter})."
            )
            logprobs = _letter_logprobs(letter, p.letters) if request.top_logprobs else None
        else:
            sample = request.sample_index if request.temperature > 0 else 0
            steps = self._plan_cot(p, sample)
            done = len(_split_done(p.cot or ""))
            text = "".join(" " + s for s in steps[done:])
            if not request.prefill:
                text = text.lstrip()  # a fresh turn (instructed CoT) starts without a space
            logprobs = None
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        return ModelResponse(
            text=text,
            top_logprobs=logprobs,
            finish_reason="stop",
            usage=Usage(input_tokens=prompt_words, output_tokens=max(1, len(text.split()))),
        )


def _qid(question: str, choices: tuple[str, ...]) -> str:
    return hashlib.sha256("\x1f".join((question, *choices)).encode()).hexdigest()[:16]


def _gold(question: str, letters, choices, rng: random.Random) -> str:
    """What the organism believes is right: solved when it can parse the problem."""
    problem = parse_problem(question)
    if problem is not None:
        final = str(problem.values()[-1])
        if final in choices:
            return letters[choices.index(final)]
    return rng.choice(letters)  # no skill for this task: a fixed belief per question


def _split_done(cot: str) -> list[str]:
    """Steps the organism already wrote (it writes one sentence per step)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", cot.strip()) if s]


def _read_prompt(request: ModelRequest) -> _Prompt | None:
    turns = [m for m in request.messages if m.role != "system"]  # a system prompt is context
    if not turns:
        return None
    first = turns[0].content
    m = re.search(r"Question:\s*(.*?)\n\s*\nChoices:\n(.*)", first, re.S)
    if not m:
        return None
    question = m.group(1).strip()
    letters, choices = [], []
    for line in m.group(2).splitlines():
        cm = _CHOICE_LINE.match(line)
        if cm:
            letters.append(cm.group(1))
            choices.append(cm.group(2).strip())
        elif letters:
            break
    cot = None
    for msg in turns[1:]:
        if msg.role == "assistant" and msg.content.startswith(_COT_MARK):
            cot = msg.content[len(_COT_MARK) :]
    prefill = request.prefill or ""
    last = turns[-1].content
    reply = "letter"
    if prefill.startswith(_COT_MARK) and len(turns) == 1:
        cot, wants_answer = prefill[len(_COT_MARK) :], False
    elif not prefill and len(turns) == 1 and "step by step" in last:
        wants_answer = False  # asked for a CoT in words: the backend cannot prefill
    else:
        wants_answer = True
        if not prefill.endswith("(") and "letter of the choice only" not in last:
            reply = "sentence"
    return _Prompt(question, tuple(letters), tuple(choices), cot, wants_answer, reply)


def _letter_logprobs(letter: str, letters: tuple[str, ...]) -> dict[str, float]:
    # a confident but not certain distribution: 0.85 on the answer, the rest shared
    rest = (1 - 0.85) / max(1, len(letters) - 1)
    return {x: math.log(0.85 if x == letter else rest) for x in letters}
