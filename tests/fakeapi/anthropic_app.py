"""A loopback server speaking Anthropic's Messages and Models wire format.

Request translation (wire -> ModelRequest):
- `system` (a string or text blocks) becomes a leading system turn;
- a trailing assistant message is the prefill: the reply continues it (Anthropic semantics).
  As the real API does, a prefill may not end in whitespace, and models in `no_prefill_models`
  refuse it with the real 400 message;
- `stop_sequences` -> stop; temperature / top_p default to 1.0 when absent, as in the API;
- auth: `x-api-key` or `Authorization: Bearer` (the 2.x SDK sends the latter), plus the
  `anthropic-version` header;
- sample_index: the `x-cotfaith-sample` header, else 0 (Anthropic's `metadata` holds only
  `user_id`, so there is no body field to carry it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from cotfaith.models.base import Message, ModelRequest, ModelResponse

from .common import (
    SAMPLE_HEADER,
    STATE,
    ApiError,
    Faults,
    Responder,
    ServerState,
    add_control_routes,
    default_responder,
    json_response,
    known_models,
    parse_sample,
    phase_of,
    read_json,
    request_key,
    serve_reply,
    with_key,
)

DEFAULT_MODELS = ("claude-fake",)
NO_PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. "
    "The conversation must end with a user message."
)
_STATUS_TYPE = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


def make_anthropic_app(
    *,
    key: str,
    models: Sequence[str] = DEFAULT_MODELS,
    responder: Responder | None = None,
    latency: float = 0.0,
    faults: Faults | None = None,
    no_prefill_models: Sequence[str] = (),
    echo_key: str | None = None,
) -> web.Application:
    """The Anthropic fake. Models in `no_prefill_models` refuse a trailing assistant message;
    `echo_key` ("masked" or "full") makes error messages quote the key the client sent."""
    app = web.Application()
    app[STATE] = ServerState(
        key=key,
        models=known_models(models, no_prefill_models),
        responder=responder or default_responder(),
        latency=latency,
        faults=faults or Faults(),
        no_prefill_models=frozenset(no_prefill_models),
        echo_key=echo_key,
    )
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/v1/models", _list_models)
    app.router.add_get("/v1/models/{model_id}", _get_model)
    add_control_routes(app)
    return app


# ------------------------------------------------------------------------ errors
def _request_id() -> str:
    return "req_fake" + uuid.uuid4().hex[:20]


def _envelope(type_: str, message: str, status: int, headers: dict[str, str] | None = None):
    rid = _request_id()
    return json_response(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": rid},
        status=status,
        headers={"request-id": rid, **(headers or {})},
    )


def _error(e: ApiError) -> web.Response:
    # ApiError types are OpenAI-flavoured where shared code raises them; map by status
    return _envelope(_STATUS_TYPE.get(e.status, e.type), e.message, e.status)


def _fault(kind: str, state: ServerState, request: web.Request) -> web.Response:
    """An injected fault that is an HTTP error, in Anthropic's error shape."""
    if kind.startswith("429"):
        headers = {}
        if kind.startswith("429_retry_after"):
            wait = 0.0 if kind == "429_retry_after_0" else state.faults.retry_after
            headers = {"retry-after": f"{wait:g}", "retry-after-ms": str(round(wait * 1000))}
        msg = "Number of request tokens has exceeded your per-minute rate limit (fake server)."
        return _envelope("rate_limit_error", with_key(msg, request, state), 429, headers)
    if kind == "529":
        return _envelope("overloaded_error", with_key("Overloaded", request, state), 529)
    if kind == "400":
        msg = with_key("Invalid request (rejected by the fake server).", request, state)
        return _envelope("invalid_request_error", msg, 400)
    if kind == "401":
        return _error(_bad_key(request, state))
    return _envelope("api_error", with_key("Internal server error", request, state), 500)


def _malformed(kind: str, payload: Any) -> Any:
    """The body of a bogus 200: no content, no required fields, or an error envelope."""
    if kind == "error_200":
        return {"type": "error", "error": {"type": "api_error", "message": "upstream error"}}
    payload = dict(payload)
    if kind == "empty":
        for name in ("content", "data"):
            if name in payload:
                payload[name] = []
        return payload
    # missing_fields: the object's kind is there, what it is for is not
    return {k: v for k, v in payload.items() if k in ("type", "role", "model")}


def _bad_key(request: web.Request, state: ServerState) -> ApiError:
    return ApiError(401, "authentication_error", with_key("invalid x-api-key", request, state))


def _check_auth(request: web.Request, state: ServerState) -> None:
    # anthropic 2.x sends the key as `Authorization: Bearer`, older SDKs and curl examples as
    # `x-api-key`; the API takes either. The key is quoted only by an echoing server.
    bearer = request.headers.get("Authorization") == f"Bearer {state.key}"
    if not bearer and request.headers.get("x-api-key") != state.key:
        raise _bad_key(request, state)
    if "anthropic-version" not in request.headers:
        raise ApiError(400, "invalid_request_error", "anthropic-version: header is required")


def _check_model(state: ServerState, model: Any) -> str:
    if not isinstance(model, str):
        raise ApiError(400, "invalid_request_error", "model: Field required")
    if model not in state.models:
        raise ApiError(404, "not_found_error", f"model: {model}")
    return model


# ------------------------------------------------------------------------ translation
def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, b in enumerate(content):
            if not (isinstance(b, dict) and b.get("type") == "text" and "text" in b):
                raise ApiError(400, "invalid_request_error", f"{where}.{i}: only text blocks")
            parts.append(str(b["text"]))
        return "".join(parts)
    raise ApiError(400, "invalid_request_error", f"{where}: must be a string or a list of blocks")


def messages_to_request(
    body: dict[str, Any], request: web.Request, state: ServerState, model: str
) -> ModelRequest:
    """The canonical request a Messages body describes (prefill = trailing assistant turn)."""
    if "max_tokens" not in body:
        raise ApiError(400, "invalid_request_error", "max_tokens: Field required")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalid_request_error", "messages: at least one message is required")
    messages: list[Message] = []
    if body.get("system") is not None:
        messages.append(Message("system", _text(body["system"], "system")))
    for i, m in enumerate(raw):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise ApiError(400, "invalid_request_error", f"messages.{i}.role: user or assistant")
        messages.append(Message(role, _text(m.get("content"), f"messages.{i}.content")))
    prefill = None
    if messages[-1].role == "assistant":
        if model in state.no_prefill_models:
            raise ApiError(400, "invalid_request_error", NO_PREFILL_MESSAGE)
        prefill = messages.pop().content
        if prefill != prefill.rstrip():
            raise ApiError(
                400,
                "invalid_request_error",
                "messages: final assistant content cannot end with trailing whitespace",
            )
    header = request.headers.get(SAMPLE_HEADER)
    return ModelRequest(
        messages=tuple(messages),
        prefill=prefill,
        temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)),
        max_tokens=int(body["max_tokens"]),
        stop=tuple(body.get("stop_sequences") or ()),
        top_logprobs=0,  # the Messages API has no logprobs
        sample_index=parse_sample(header, SAMPLE_HEADER) if header is not None else 0,
    )


def _stop_reason(resp: ModelResponse) -> str:
    if resp.finish_reason in ("length", "max_tokens"):
        return "max_tokens"
    return "stop_sequence" if resp.finish_reason == "stop_sequence" else "end_turn"


# ------------------------------------------------------------------------ handlers
async def _messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        _check_auth(request, state)
        body = await read_json(request)
    except ApiError as e:
        return _error(e)
    key = request_key(body, request.headers.get(SAMPLE_HEADER))

    async def compute() -> dict[str, Any]:
        model = _check_model(state, body.get("model"))
        try:
            req = messages_to_request(body, request, state, model)
        except (TypeError, ValueError, AttributeError) as e:
            raise ApiError(400, "invalid_request_error", f"invalid request: {e}") from None
        try:
            resp = await state.responder(req)
        except ValueError as e:
            raise ApiError(400, "invalid_request_error", str(e)) from None
        u = resp.usage
        return {
            "id": f"msg_fake{state.stats.requests}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": resp.text}],
            "stop_reason": _stop_reason(resp),
            "stop_sequence": None,
            "usage": {
                # Anthropic's input_tokens exclude cache reads (they are counted separately)
                "input_tokens": u.input_tokens - u.cached_input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_input_tokens": u.cached_input_tokens,
                "cache_creation_input_tokens": 0,
            },
        }

    return await serve_reply(
        request,
        state,
        phase=phase_of(body),
        key=key,
        compute=compute,
        render_error=_error,
        render_fault=_fault,
        malformed=_malformed,
    )


def _model_object(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "2025-01-01T00:00:00Z",
        "lifecycle": "active",
    }


async def _list_models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        _check_auth(request, state)
    except ApiError as e:
        return _error(e)

    async def compute() -> dict[str, Any]:
        data = [_model_object(m) for m in sorted(state.models)]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    return await _models_reply(request, state, compute)


async def _get_model(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        _check_auth(request, state)
    except ApiError as e:
        return _error(e)

    async def compute() -> dict[str, Any]:
        return _model_object(_check_model(state, request.match_info["model_id"]))

    return await _models_reply(request, state, compute)


async def _models_reply(
    request: web.Request, state: ServerState, compute: Any
) -> web.StreamResponse:
    return await serve_reply(
        request,
        state,
        phase="models",
        key=None,
        compute=compute,
        render_error=_error,
        render_fault=_fault,
        malformed=_malformed,
    )
