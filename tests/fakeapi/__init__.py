"""Loopback fakes of the OpenAI and Anthropic HTTP APIs, driven by the real SDKs in tests.

Nothing here mocks an SDK or its transport: the servers speak each API's wire format on
127.0.0.1, answer with the project's simulated model (or any `Responder`), inject faults
deterministically (every kind real servers and proxies produce: see FAULT_KINDS; confined to
a phase such as the model check or a probe with `Faults(phases=...)`, or scripted per arrival
with `Faults(sequence=...)`), can answer with fixed or scripted replies (`fixed_responder`,
`scripted_responder`) and quote the client's key in error text (`echo_key=`), and count what
they completed (GET /_stats).

    with ServerThread(make_openai_app(key="sk-test")) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
"""

from .anthropic_app import NO_PREFILL_MESSAGE, make_anthropic_app
from .common import (
    ECHO_TEXT,
    FAULT_KINDS,
    PHASES,
    SAMPLE_HEADER,
    Faults,
    Responder,
    ServerState,
    Stats,
    as_sentence,
    counting,
    default_responder,
    echo_responder,
    fixed_responder,
    is_answer_request,
    phase_of,
    request_key,
    scripted_responder,
)
from .openai_app import LLAMACPP, make_openai_app
from .runner import ServerProcess, ServerThread

__all__ = [
    "ECHO_TEXT",
    "FAULT_KINDS",
    "PHASES",
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
    "fixed_responder",
    "is_answer_request",
    "make_anthropic_app",
    "make_openai_app",
    "phase_of",
    "request_key",
    "scripted_responder",
]
