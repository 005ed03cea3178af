"""Answer read-out strategies: how the answer letter is asked for and read.

- `logprobs`: prefill the answer phrase up to "(" and read the distribution over the choice
  letters from the first token's logprobs (the paper's method);
- `prefill`: the same prompt, the letter read from the generated text;
- `parse`: no prefill; an instructed reply parsed by a robust parser (unparseable is recorded).
The strategy is chosen once per run from the backend's capabilities and stored in every record,
so analyses never mix them.

Every read-out is checked, per call, for the two ways a real server turns a non-answer into a
plausible letter: a logprob answer needs `min_mass` of probability on the letters (else
`low_mass`), and a reply after the prefilled answer phrase must continue it, not begin it again
(else `new_turn`: the server ignored the prefill and opened a new assistant turn).
"""

from __future__ import annotations

from dataclasses import dataclass

from cotfaith.answers import (
    DEFAULT_MIN_MASS,
    NEW_TURN,
    ParsedAnswer,
    parse_free_text,
    read_logprobs,
    read_prefill,
    restarts_prefill,
)
from cotfaith.errors import ConfigError
from cotfaith.models.base import Capabilities, ModelRequest, ModelResponse
from cotfaith.prompts import PromptTemplates
from cotfaith.tasks.base import Question

STRATEGIES = ("logprobs", "prefill", "parse")


def choose_strategy(requested: str, caps: Capabilities) -> str:
    """The requested strategy if the backend supports it; `auto` picks the most precise.

    `logprobs` works with prefill (the letter is the next token after "(") and without (the
    model is told to reply with the letter only, and the first token's alternatives are read).
    """
    if requested == "auto":
        if caps.logprobs:
            return "logprobs"
        return "prefill" if caps.prefill else "parse"
    if requested not in STRATEGIES:
        raise ConfigError(
            f"answer.strategy: unknown strategy {requested!r}; use auto or one of {STRATEGIES}"
        )
    if requested == "prefill" and not caps.prefill:
        raise ConfigError("answer.strategy=prefill: this backend cannot prefill the answer")
    if requested == "logprobs" and not caps.logprobs:
        raise ConfigError("answer.strategy=logprobs: this backend returns no logprobs")
    return requested


@dataclass(frozen=True)
class AnswerReader:
    strategy: str
    templates: PromptTemplates
    prefill: bool = True
    """Whether the backend can continue a prefilled answer phrase."""
    min_mass: float = DEFAULT_MIN_MASS
    """Logprob read-out: least probability the valid letters must hold on the first token
    (config `answer.min_letter_mass`; why 0.5: see `answers.DEFAULT_MIN_MASS`)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_mass <= 1.0:
            raise ConfigError(
                f"answer.min_letter_mass must be between 0 and 1, got {self.min_mass}"
            )

    @property
    def mode(self) -> str:
        """How the answer is asked for: `prefill`, `letter` or `sentence` (see prompts)."""
        if self.strategy == "parse":
            return "sentence"
        return "prefill" if self.prefill else "letter"

    def request(self, q: Question, cot: str | None) -> ModelRequest:
        """The answer request after `cot` (None: the no-CoT baseline). Greedy: we read argmax."""
        mode = self.mode
        return ModelRequest(
            messages=self.templates.answer_messages(q, cot, mode=mode),
            prefill=self.templates.answer_prefix if mode == "prefill" else None,
            temperature=0.0,
            top_p=1.0,
            max_tokens=64 if mode == "sentence" else 1,
            top_logprobs=20 if self.strategy == "logprobs" else 0,
        )

    def read(self, q: Question, response: ModelResponse) -> ParsedAnswer:
        if self.strategy == "logprobs":
            # no fallback to the text: a record says exactly how its answer was read
            parsed = read_logprobs(response.top_logprobs, q.letters, self.min_mass)
        elif self.strategy == "prefill" or self.mode == "letter":
            parsed = read_prefill(response.text, q.letters)
        else:
            parsed = parse_free_text(response.text, q.letters, q.choices)
        if self.mode == "prefill" and restarts_prefill(response.text, self.templates.answer_prefix):
            # whatever the letters say, they were not read after the prefilled "("
            return ParsedAnswer(None, NEW_TURN, parsed.probs, parsed.mass)
        return parsed
