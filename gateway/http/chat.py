"""`POST /v1/chat/completions` and `GET /v1/models`, OpenAI-compatible.

`stream: true` relays the reply as server-sent `chat.completion.chunk` events ending with
`[DONE]`; a client that goes away cancels the work. The work itself is `completion.Completion`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.http import completion
from gateway.http.chat_schema import ChatCompletionRequest
from gateway.http.errors import documented
from gateway.services import Services

router = APIRouter(responses=documented(401, 429))


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    s = request.app.state.services.settings
    ids = [s.served_model_name, *s.model_aliases, s.asr_served_name, s.tts_served_name]
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "mmstream"} for i in ids]}


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "description": "A `chat.completion` object, or with `stream` true `chat.completion.chunk` events.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **documented(400, 404, 413, 503),
    },
)
async def create_chat_completion(request: Request, body: ChatCompletionRequest) -> Response:
    services: Services = request.app.state.services
    answer = await completion.start(services, body, completion.Ids.new())
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(answer.chunks(include_usage=usage), media_type="text/event-stream")
    status, payload = await answer.whole()
    return JSONResponse(payload, status_code=status)
