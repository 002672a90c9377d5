"""HTTP API for support bots: thin routes over the assembled agent (no agent logic here).

Bound to loopback by default; on any other address a bearer token is required. Conversation ids are
random 128-bit values and each route touches only the conversation it names. Turns are admitted by a
bounded gate (503 with Retry-After when it is full) and run on their own worker threads, so the cheap
routes (health, conversations, feedback) stay responsive however many turns wait for the model.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from agent.assemble import Agent
from agent.dialogue import Feedback
from agent.events import ErrorEvent, TurnRequest, wire
from agent.settings import ApiConfig
from core.errors import Conflict, InvalidRequest, NotFound, Overloaded, RecagentError, Unavailable
from ui.auth import bearer_matches

MAX_TEXT = 4000
T = TypeVar("T")


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired surrogate (not valid Unicode)") from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
Id = Annotated[Text, StringConstraints(max_length=200)]
ConversationId = Annotated[str, PathParam(max_length=200)]
# recagent's errors by type, most specific first: the API's status codes, the MCP server's error kinds
STATUSES: list[tuple[type[RecagentError], int]] = [(NotFound, 404), (Conflict, 409), (Unavailable, 503),
                                                   (InvalidRequest, 400), (RecagentError, 400)]


def status_of(exc: RecagentError) -> int:
    return next(code for kind, code in STATUSES if isinstance(exc, kind))


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id | None = None
    history: list[Id] | None = Field(None, max_length=2000)
    query: Annotated[Text, StringConstraints(max_length=MAX_TEXT)] | None = None
    filters: dict[Id, Any] | None = None
    k: int = Field(5, ge=1, le=50)


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id | None = None


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    stream: bool = False


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Id
    kind: Feedback


class ContentPart(BaseModel):
    type: Literal["text"]
    text: Annotated[Text, StringConstraints(max_length=MAX_TEXT)]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Annotated[Text, StringConstraints(max_length=MAX_TEXT)] | list[ContentPart] = Field(max_length=50)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatBody(BaseModel):
    model: Id = "recagent"
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    user: Id | None = Field(None, description="a conversation id to continue")


class TurnGate:
    """Admits at most `limit` turns at once (the rest are refused, not queued) and runs their steps on
    `workers` threads of their own."""

    def __init__(self, limit: int, workers: int) -> None:
        self.limit = limit
        self.active = 0
        self.limiter = anyio.CapacityLimiter(workers)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.active >= self.limit:
            raise Overloaded(f"{self.active} turns are in progress; try again shortly", retry_after_s=2)
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    @classmethod
    def for_agent(cls, agent: Agent, config: ApiConfig) -> TurnGate:
        """The gate for an agent's turns: with a served LLM its threads mostly wait, so more of them."""
        return cls(config.max_pending_turns, config.turn_threads(agent.llm is not None and agent.settings.llm.served))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


def _errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without the echoed input (it may not even be encodable)."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")).encode("utf-8", "replace").decode(),
             "type": e.get("type")} for e in exc.errors()]


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before the route sees it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(agent: Agent, token: str | None = None, config: ApiConfig | None = None) -> FastAPI:
    config = config or agent.settings.api
    gate = TurnGate.for_agent(agent, config)
    dialogue = agent.conversations

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        agent.close()  # stops generation in progress, so shutdown does not wait on the model

    app = FastAPI(title="recagent", version="0.2.0", lifespan=lifespan,
                  description="Grounded recommendations and conversations over a catalog.")
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    def authorize(request: Request) -> None:
        if token is not None and not bearer_matches(request.headers.get("authorization"), token):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RecagentError)
    def _mapped(request: Request, exc: RecagentError) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Unavailable) else None
        return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _errors(exc)})

    guard = [Depends(authorize)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "turns_in_progress": gate.active, "agent": agent.describe()}

    @app.post("/v1/recommend", dependencies=guard)
    async def recommend(body: RecommendBody) -> dict[str, Any]:
        request = TurnRequest(user=body.user, history=tuple(body.history or ()), query=body.query, k=body.k,
                              filters=body.filters)
        async with gate.admit():
            response = await gate.run(agent.pipeline.recommend, request)
        return response.model_dump()

    @app.post("/v1/conversations", dependencies=guard, status_code=201)
    def create(body: NewConversation) -> dict[str, Any]:
        return dialogue.create(user=body.user).model_dump()

    @app.get("/v1/conversations/{conversation_id}", dependencies=guard)
    def read(conversation_id: ConversationId) -> dict[str, Any]:
        return dialogue.store.get(conversation_id).model_dump()

    @app.delete("/v1/conversations/{conversation_id}", dependencies=guard, status_code=204)
    def delete(conversation_id: ConversationId) -> None:
        dialogue.delete(conversation_id)

    @app.post("/v1/conversations/{conversation_id}/feedback", dependencies=guard)
    def feedback(conversation_id: ConversationId, body: FeedbackBody) -> dict[str, Any]:
        return dialogue.feedback(conversation_id, body.item_id, body.kind).model_dump()

    async def events(conversation_id: str, text: str) -> AsyncIterator[dict[str, Any]]:
        """A turn's events as JSON, pulled from its worker thread; the gate's slot is held to the end.
        Errors before the first event propagate (real status codes); later ones become an error event."""
        async with gate.admit():
            iterator: Iterator[Any] = dialogue.stream(conversation_id, text)
            first = await gate.run(next, iterator)

            async def rest() -> AsyncIterator[dict[str, Any]]:
                try:
                    yield wire(first)
                    while True:
                        try:
                            event = await gate.run(next, iterator, None)
                        except RecagentError as exc:
                            yield wire(ErrorEvent(message=str(exc), status=503))
                            return
                        if event is None:
                            return
                        yield wire(event)
                finally:
                    await gate.run(iterator.close)  # type: ignore[attr-defined]

            async for item in rest():
                yield item

    async def sse(conversation_id: str, text: str) -> StreamingResponse:
        stream = events(conversation_id, text)
        first = await stream.__anext__()  # raises before any byte is sent: a proper status code

        async def body() -> AsyncIterator[str]:
            yield f"event: {first['type']}\ndata: {json.dumps(first)}\n\n"
            async for event in stream:
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.post("/v1/conversations/{conversation_id}/messages", dependencies=guard, response_model=None)
    async def message(conversation_id: ConversationId, body: MessageBody, request: Request) -> Any:
        if body.stream or "text/event-stream" in request.headers.get("accept", ""):
            return await sse(conversation_id, body.text)
        async with gate.admit():
            response = await gate.run(dialogue.respond, conversation_id, body.text)
        return {"conversation_id": conversation_id, **response.model_dump()}

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    async def chat(body: ChatBody) -> Any:
        """OpenAI-compatible facade: the last user message is a turn of conversation `user` (or a new one)."""
        user_messages = [m.text() for m in body.messages if m.role == "user"]
        if not user_messages or not user_messages[-1].strip():
            raise HTTPException(status_code=422, detail="the last user message must have text")
        text = user_messages[-1]
        # an unknown conversation is 404, not silently a new one
        conversation_id = dialogue.store.get(body.user).id if body.user else dialogue.create().id
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            stream = events(conversation_id, text)
            first = await stream.__anext__()

            async def chunks() -> AsyncIterator[str]:
                async for event in _chain(first, stream):
                    if event["type"] == "delta":
                        delta = {"content": event["text"]}
                    elif event["type"] in ("done", "error"):
                        delta = {}
                    else:
                        continue
                    chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": body.model, "conversation_id": conversation_id,
                             "choices": [{"index": 0, "delta": delta,
                                          "finish_reason": "stop" if event["type"] == "done" else
                                          "error" if event["type"] == "error" else None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(chunks(), media_type="text/event-stream")
        async with gate.admit():
            response = await gate.run(dialogue.respond, conversation_id, text)
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "conversation_id": conversation_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": response.reply},
                             "finish_reason": "stop"}],
                "recagent": {"items": [i.model_dump() for i in response.items], "fallback": response.fallback},
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app


async def _chain(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for item in rest:
        yield item

