"""A loopback server speaking OpenAI's chat completions, completions and models wire format.

Request translation (wire -> ModelRequest):
- chat: messages become Message turns ("developer" counts as "system"); content is a string or
  a list of {"type": "text"} parts joined. A trailing assistant turn is history (the real API
  starts a new turn) unless vLLM's `continue_final_message: true` is set, which makes it the
  prefill; like vLLM this requires `add_generation_prompt: false`.
- completions: `prompt` is ChatML, read back with `cotfaith.models.chat_template.parse` (any
  ChatML-based Hugging Face template, e.g. SmolLM2's with its default system turn, reads back
  the same way; the system turn is context to the organism).
- sample_index: header `x-cotfaith-sample`, else `metadata.sample_index` (a string, as OpenAI
  metadata values are), else `seed`, else 0.
- temperature / top_p default to 1.0 when absent, as in the real API.

llama.cpp's behaviours, as options (`LLAMACPP` turns on all of them): `continue_final_message`
ignored (the prefilled turn becomes history and a fresh turn answers: "The single, most likely
answer is (B).", its first token mostly "The"), no `GET /v1/models/{id}` route (only the list),
`max_completion_tokens` ignored (only `max_tokens` caps the output), and `GET /props` reporting
the chat template.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from cotfaith.models.base import Message, ModelRequest, ModelResponse
from cotfaith.models.chat_template import parse as parse_chatml

from .common import (
    FRESH_TURN_SHARE,
    SAMPLE_HEADER,
    STATE,
    ApiError,
    Faults,
    Responder,
    ServerState,
    add_control_routes,
    as_sentence,
    default_responder,
    json_response,
    known_models,
    parse_sample,
    phase_of,
    read_json,
    request_key,
    serve_reply,
    sorted_logprobs,
    with_key,
)

DEFAULT_MODELS = ("fake-gpt",)
LLAMACPP: dict[str, Any] = {
    "ignore_continue_final_message": True,
    "model_route": False,
    "honour_max_completion_tokens": False,
}
"""make_openai_app(**LLAMACPP): the llama.cpp server's departures from the OpenAI API."""
OWNER = "cotfaith-fake"
CHATTY_SHARE = 0.86
"""First-token share of "The" for a chatty model told to reply with the letter only (SmolLM2
through llama.cpp: a median 14% on the letters)."""
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def make_openai_app(
    *,
    key: str,
    models: Sequence[str] = DEFAULT_MODELS,
    responder: Responder | None = None,
    latency: float = 0.0,
    faults: Faults | None = None,
    no_logprobs_models: Sequence[str] = (),
    chatty_models: Sequence[str] = (),
    ignore_continue_final_message: bool = False,
    model_route: bool = True,
    honour_max_completion_tokens: bool = True,
    props_template: str | None = None,
    props_tokens: tuple[str, str] = ("", ""),
    echo_key: str | None = None,
) -> web.Application:
    """The OpenAI fake. Models in `no_logprobs_models` reject `logprobs: true` (like o-series);
    models in `chatty_models` answer "reply with the letter only" with a sentence (as small
    open models do). `model_route=False` leaves out GET /v1/models/{id} (llama.cpp has only the
    list); `props_template` serves GET /props with that chat template and the (bos, eos)
    `props_tokens`, as llama.cpp's server does. `echo_key` ("masked" or "full") makes error
    messages quote the key the client sent, as some providers and gateways do."""
    for kind in faults.kinds if faults else ():
        if kind == "529":
            raise ValueError("fault kind '529' is Anthropic's overloaded error; OpenAI has none")
    app = web.Application()
    app[STATE] = ServerState(
        key=key,
        models=known_models(models, no_logprobs_models, chatty_models),
        responder=responder or default_responder(),
        latency=latency,
        faults=faults or Faults(),
        no_logprobs_models=frozenset(no_logprobs_models),
        chatty_models=frozenset(chatty_models),
        ignore_continue_final_message=ignore_continue_final_message,
        honour_max_completion_tokens=honour_max_completion_tokens,
        echo_key=echo_key,
    )
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _list_models)
    if model_route:
        app.router.add_get("/v1/models/{model_id}", _get_model)
    if props_template is not None:
        app[PROPS] = {
            "chat_template": props_template,
            "bos_token": props_tokens[0],
            "eos_token": props_tokens[1],
            "total_slots": 1,
            "default_generation_settings": {"n_ctx": 2048},
        }
        app.router.add_get("/props", _props)
    add_control_routes(app)
    return app


PROPS = web.AppKey("props", dict)


async def _props(request: web.Request) -> web.Response:
    # llama.cpp serves /props without auth
    return json_response(request.app[PROPS])


# ------------------------------------------------------------------------ errors
def _error(e: ApiError) -> web.Response:
    return json_response(
        {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}},
        status=e.status,
    )


def _fault(kind: str, state: ServerState, request: web.Request) -> web.Response:
    """An injected fault that is an HTTP error, in OpenAI's error shape."""
    if kind.startswith("429"):
        headers = {}
        if kind.startswith("429_retry_after"):
            # the SDK reads retry-after-ms first, then retry-after (seconds)
            wait = 0.0 if kind == "429_retry_after_0" else state.faults.retry_after
            headers = {"retry-after": f"{wait:g}", "retry-after-ms": str(round(wait * 1000))}
        body = {
            "message": with_key(
                "Rate limit reached for requests on this fake server. Please try again.",
                request,
                state,
            ),
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        return json_response({"error": body}, status=429, headers=headers)
    if kind == "400":
        return _error(
            ApiError(
                400,
                "invalid_request_error",
                with_key("Invalid request (rejected by the fake server).", request, state),
            )
        )
    if kind == "401":
        return _error(_bad_key(request, state))
    body = {
        "message": with_key(
            "The server had an error while processing your request. Sorry about that!",
            request,
            state,
        ),
        "type": "server_error",
        "param": None,
        "code": None,
    }
    return json_response({"error": body}, status=500)


def _malformed(kind: str, payload: Any) -> Any:
    """The body of a bogus 200: no choices, no required fields, or an error envelope."""
    if kind == "error_200":
        return {"error": {"message": "upstream connect error", "type": "server_error"}}
    payload = dict(payload)
    if kind == "empty":
        for name in ("choices", "data"):
            if name in payload:
                payload[name] = []
        return payload
    # missing_fields: the object's kind is there, what it is for is not
    return {k: v for k, v in payload.items() if k in ("object", "created", "model")}


def _bad_key(request: web.Request, state: ServerState) -> ApiError:
    # OpenAI's 401 quotes the key masked; an echoing server (state.echo_key) quotes it
    return ApiError(
        401,
        "invalid_request_error",
        with_key("Incorrect API key provided.", request, state),
        "invalid_api_key",
    )


def _check_auth(request: web.Request, state: ServerState) -> None:
    # compare whole header values; the key is quoted only by an echoing server (echo_key)
    if request.headers.get("Authorization") != f"Bearer {state.key}":
        raise _bad_key(request, state)


def _check_model(state: ServerState, model: Any) -> str:
    if not isinstance(model, str):
        raise ApiError(400, "invalid_request_error", "you must provide a model parameter", None)
    if model not in state.models:
        raise ApiError(
            404,
            "invalid_request_error",
            f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_found",
        )
    return model


# ------------------------------------------------------------------------ translation
def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if not (isinstance(p, dict) and p.get("type") == "text" and "text" in p):
                raise ApiError(400, "invalid_request_error", f"{where}: only text parts supported")
            parts.append(str(p["text"]))
        return "".join(parts)
    raise ApiError(400, "invalid_request_error", f"{where}: content must be a string or parts")


def _sample_index(request: web.Request, body: dict[str, Any]) -> int:
    header = request.headers.get(SAMPLE_HEADER)
    if header is not None:
        return parse_sample(header, SAMPLE_HEADER)
    meta = body.get("metadata")
    if isinstance(meta, dict) and "sample_index" in meta:
        return parse_sample(meta["sample_index"], "metadata.sample_index")
    seed = body.get("seed")
    return parse_sample(seed, "seed") if seed is not None else 0


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _sampling(body: dict[str, Any], request: web.Request) -> dict[str, Any]:
    """Sampling fields shared by both endpoints, in ModelRequest's names."""
    state = request.app[STATE]
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body:
            state.stats.cap_fields[name] += 1
    out: dict[str, Any] = {
        "temperature": float(body.get("temperature", 1.0)),
        "top_p": float(body.get("top_p", 1.0)),
        "stop": _stop(body),
        "sample_index": _sample_index(request, body),
    }
    max_tokens = body.get("max_tokens")
    if state.honour_max_completion_tokens:
        max_tokens = body.get("max_completion_tokens", max_tokens)
    if max_tokens is not None:
        out["max_tokens"] = int(max_tokens)
    return out


def chat_to_request(body: dict[str, Any], request: web.Request) -> ModelRequest:
    """The canonical request a chat completion body describes."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(
            400, "invalid_request_error", "messages: must be a non-empty array", None, "messages"
        )
    messages = []
    for i, m in enumerate(raw):
        role = _ROLES.get(m.get("role")) if isinstance(m, dict) else None
        if role is None:
            raise ApiError(400, "invalid_request_error", f"messages[{i}]: unsupported role")
        messages.append(Message(role, _text(m.get("content"), f"messages[{i}].content")))
    prefill = None
    if body.get("continue_final_message") and not request.app[STATE].ignore_continue_final_message:
        if body.get("add_generation_prompt", True):
            # vLLM's own check: both at once would open a new turn and continue the old one
            raise ApiError(
                400,
                "invalid_request_error",
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            )
        if messages[-1].role != "assistant":
            raise ApiError(
                400,
                "invalid_request_error",
                "continue_final_message needs a final assistant message",
            )
        prefill = messages.pop().content
    logprobs = bool(body.get("logprobs"))
    top = body.get("top_logprobs")
    if top is not None and not logprobs:
        raise ApiError(
            400,
            "invalid_request_error",
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true.",
            "invalid_value",
            "top_logprobs",
        )
    if top is not None and not 0 <= int(top) <= 20:
        raise ApiError(
            400,
            "invalid_request_error",
            "top_logprobs must be between 0 and 20.",
            "invalid_value",
            "top_logprobs",
        )
    return ModelRequest(
        messages=tuple(messages),
        prefill=prefill,
        top_logprobs=int(top or 0) if logprobs else 0,
        **_sampling(body, request),
    )


def completion_to_request(body: dict[str, Any], request: web.Request) -> ModelRequest:
    """The canonical request a ChatML `/v1/completions` prompt describes."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "invalid_request_error", "prompt: one string expected", None, "prompt")
    try:
        messages, prefill = parse_chatml(prompt)
    except ValueError as e:
        raise ApiError(400, "invalid_request_error", f"prompt: {e}", None, "prompt") from None
    n = body.get("logprobs")
    return ModelRequest(
        messages=tuple(messages),
        prefill=prefill,
        top_logprobs=int(n or 0),
        **_sampling(body, request),
    )


async def _respond(state: ServerState, req: ModelRequest) -> ModelResponse:
    try:
        return await state.responder(req)
    except ValueError as e:
        # the organism cannot read the prompt: the client sent something unusable
        raise ApiError(400, "invalid_request_error", str(e)) from None


def _usage(resp: ModelResponse) -> dict[str, Any]:
    u = resp.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish(resp: ModelResponse) -> str:
    return "length" if resp.finish_reason in ("length", "max_tokens") else "stop"


def _entry(token: str, lp: float) -> dict[str, Any]:
    return {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8"))}


def _chat_logprobs(resp: ModelResponse, n: int) -> dict[str, Any] | None:
    if not resp.top_logprobs:
        return None
    top = sorted_logprobs(resp.top_logprobs, max(n, 1))
    chosen = _entry(*top[0])  # greedy: the most likely token is the one generated
    chosen["top_logprobs"] = [_entry(t, lp) for t, lp in top[:n]]
    return {"content": [chosen], "refusal": None}


def _completion_logprobs(resp: ModelResponse, n: int) -> dict[str, Any] | None:
    if not resp.top_logprobs:
        return None
    top = sorted_logprobs(resp.top_logprobs, max(n, 1))
    return {
        "tokens": [top[0][0]],
        "token_logprobs": [top[0][1]],
        "top_logprobs": [dict(top[:n])],
        "text_offset": [0],
    }


# ------------------------------------------------------------------------ handlers
async def _generation(request: web.Request, kind: str) -> web.Response:
    state = request.app[STATE]
    try:
        _check_auth(request, state)
        body = await read_json(request)
    except ApiError as e:
        return _error(e)
    key = request_key(body, request.headers.get(SAMPLE_HEADER))

    async def compute() -> dict[str, Any]:
        model = _check_model(state, body.get("model"))
        if kind == "chat" and body.get("logprobs") and model in state.no_logprobs_models:
            raise ApiError(
                400,
                "invalid_request_error",
                "Unsupported parameter: 'logprobs' is not supported with this model.",
                "unsupported_parameter",
                "logprobs",
            )
        try:
            translate = chat_to_request if kind == "chat" else completion_to_request
            req = translate(body, request)
        except (TypeError, ValueError, AttributeError) as e:
            # a field of the wrong type: the real API answers 400, not 500
            raise ApiError(400, "invalid_request_error", f"invalid request: {e}") from None
        for m in req.messages:
            if m.role == "system":
                state.stats.system_turns[m.content[:80]] += 1
        resp = await _respond(state, req)
        if kind == "chat" and req.prefill is None:
            ignored = body.get("continue_final_message") and state.ignore_continue_final_message
            chatty = model in state.chatty_models and req.top_logprobs > 0
            if ignored or chatty:
                # a fresh assistant turn from a real model: a sentence, mostly "The" first
                resp = as_sentence(resp, FRESH_TURN_SHARE if ignored else CHATTY_SHARE)
        n = state.stats.requests
        created = int(time.time())
        if kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": resp.text, "refusal": None},
                "finish_reason": _finish(resp),
                "logprobs": _chat_logprobs(resp, req.top_logprobs)
                if body.get("logprobs")
                else None,
            }
            return {
                "id": f"chatcmpl-fake{n}",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": _usage(resp),
            }
        choice = {
            "index": 0,
            "text": resp.text,
            "finish_reason": _finish(resp),
            "logprobs": _completion_logprobs(resp, req.top_logprobs) if req.top_logprobs else None,
        }
        return {
            "id": f"cmpl-fake{n}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": _usage(resp),
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


async def _chat(request: web.Request) -> web.Response:
    return await _generation(request, "chat")


async def _completions(request: web.Request) -> web.Response:
    return await _generation(request, "completion")


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": OWNER}


async def _list_models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        _check_auth(request, state)
    except ApiError as e:
        return _error(e)

    async def compute() -> dict[str, Any]:
        return {"object": "list", "data": [_model_object(m) for m in sorted(state.models)]}

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
