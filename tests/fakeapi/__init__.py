"""Loopback fakes of the OpenAI and Anthropic HTTP APIs, driven by the real SDKs in tests.

Nothing here mocks an SDK or its transport: the servers speak each API's wire format on
127.0.0.1, answer with the project's simulated model (or any `Responder`), inject faults
deterministically, and count what they completed (GET /_stats).

    with ServerThread(make_openai_app(key="sk-test")) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
"""

from .anthropic_app import NO_PREFILL_MESSAGE, make_anthropic_app
from .common import (
    ECHO_TEXT,
    FAULT_KINDS,
    SAMPLE_HEADER,
    Faults,
    Responder,
    ServerState,
    Stats,
    as_sentence,
    counting,
    default_responder,
    echo_responder,
    request_key,
)
from .openai_app import LLAMACPP, make_openai_app
from .runner import ServerProcess, ServerThread

__all__ = [
    "ECHO_TEXT",
    "FAULT_KINDS",
    "LLAMACPP",
    "NO_PREFILL_MESSAGE",
    "SAMPLE_HEADER",
    "Faults",
    "Responder",
    "ServerProcess",
    "ServerState",
    "ServerThread",
    "Stats",
    "as_sentence",
    "counting",
    "default_responder",
    "echo_responder",
    "make_anthropic_app",
    "make_openai_app",
    "request_key",
]
