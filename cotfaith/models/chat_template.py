"""Chat templates for raw-text completion (`continuation=completion`).

A raw `/v1/completions` endpoint continues any text, so a partial assistant turn can be
continued exactly: render the conversation with the model's chat template and leave the final
assistant turn open. ChatML is what Qwen, many vLLM and llama.cpp models use; `render` and
`parse` are inverse so loopback test servers can read the conversation back.
"""

from __future__ import annotations

from cotfaith.models.base import Message

TEMPLATES = ("chatml",)
_START, _END = "<|im_start|>", "<|im_end|>"


def render(messages: tuple[Message, ...], prefill: str | None, template: str = "chatml") -> str:
    """The conversation as text, ending inside an open assistant turn (holding `prefill`)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; known: {', '.join(TEMPLATES)}")
    # content holding the delimiters would forge turns (a prompt injection on raw endpoints)
    for text in (*(m.content for m in messages), prefill or ""):
        if _START in text or _END in text:
            raise ValueError("ChatML delimiters inside a message or prefill cannot be rendered")
    parts = [f"{_START}{m.role}\n{m.content}{_END}\n" for m in messages]
    parts.append(f"{_START}assistant\n{prefill or ''}")
    return "".join(parts)


def parse(text: str) -> tuple[list[Message], str]:
    """Inverse of `render`: the closed turns and the text of the open assistant turn."""
    if not text.startswith(_START):
        raise ValueError("not a ChatML prompt")
    messages: list[Message] = []
    chunks = text.split(_START)[1:]
    for i, chunk in enumerate(chunks):
        role, _, body = chunk.partition("\n")
        if i == len(chunks) - 1:
            if role != "assistant" or _END in body:
                raise ValueError("a ChatML completion prompt must end in an open assistant turn")
            return messages, body
        if not body.endswith(f"{_END}\n"):
            raise ValueError(f"ChatML turn {i} ({role}) is not closed")
        messages.append(Message(role, body[: -len(_END) - 1]))  # type: ignore[arg-type]
    raise ValueError("empty ChatML prompt")
