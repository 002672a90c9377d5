"""HTTP API for support bots: thin routes over the assembled agent (no agent logic here).

Bound to loopback by default; on any other address a bearer token is required. Conversation ids are
random 128-bit values and each route touches only the conversation it names; one client may start only
`api.conversations_per_minute` of them (429). Turns pass a bounded gate (ui/gate.py: 503 with Retry-After
when full; answered without the LLM after waiting `api.turn_queue_s`) and run on threads of their own, so
the cheap routes (health, conversations, feedback) stay responsive however many turns wait for the model.
Streamed turns are server-sent events (sse-starlette) with keep-alive pings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from agent.assemble import Agent
from agent.conversations import ConversationState
from agent.dialogue import StateKind
from agent.events import ErrorEvent, TurnRequest, wire
from agent.settings import ApiConfig
from core.errors import Conflict, InvalidRequest, NotFound, RecagentError, Unavailable
from ui.auth import bearer_matches
from ui.bodies import (
    ChatBody,
    ConversationId,
    FeedbackBody,
    MessageBody,
    NewConversation,
    RecommendBody,
    check_filter_attributes,
    plain_errors,
)
from ui.gate import TurnGate
from ui.limits import BodyLimit, CreationLimit, TooManyConversations

# recagent's errors by type, most specific first: the API's status codes, the MCP server's error kinds
STATUSES: list[tuple[type[RecagentError], int]] = [(NotFound, 404), (Conflict, 409), (TooManyConversations, 429),
                                                   (Unavailable, 503), (InvalidRequest, 400), (RecagentError, 400)]


def status_of(exc: RecagentError) -> int:
    return next(code for kind, code in STATUSES if isinstance(exc, kind))


def catalog_attributes(agent: Agent) -> frozenset[str]:
    """The attribute names a filter may name: every one some item of the catalog has."""
    return frozenset(key for entry in agent.index.entries.values() for key in entry.attributes)


def create_app(agent: Agent, token: str | None = None, config: ApiConfig | None = None) -> FastAPI:
    config = config or agent.settings.api
    gate = TurnGate.for_agent(agent, config)
    dialogue = agent.conversations
    creations = CreationLimit(config.conversations_per_minute) if config.conversations_per_minute else None
    attributes = cache(lambda: catalog_attributes(agent))

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

    def new_conversation(request: Request, user: str | None = None) -> ConversationState:
        """A conversation for this client, within its creation limit (per token with one, else per address)."""
        if creations is not None:
            creations.take("bearer token" if token is not None else request.client.host if request.client else "?")
        return dialogue.create(user=user)

    @app.exception_handler(RecagentError)
    def _mapped(request: Request, exc: RecagentError) -> JSONResponse:
        retry = getattr(exc, "retry_after_s", None)
        return JSONResponse(status_code=status_of(exc), content={"detail": str(exc)},
                            headers={"Retry-After": str(retry)} if retry is not None else None)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": plain_errors(exc.errors())})

    guard = [Depends(authorize)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "turns_in_progress": gate.active, "agent": agent.describe()}

    @app.post("/v1/recommend", dependencies=guard)
    async def recommend(body: RecommendBody) -> dict[str, Any]:
        if body.filters:
            await anyio.to_thread.run_sync(check_filter_attributes, body.filters, attributes())
        request = TurnRequest(user=body.user, history=tuple(body.history or ()), query=body.query, k=body.k,
                              filters=body.filters)
        async with gate.admit() as without_llm:
            response = await gate.run(agent.pipeline.recommend, request, without_llm)
        return response.model_dump()

    @app.post("/v1/conversations", dependencies=guard, status_code=201)
    def create(body: NewConversation, request: Request) -> dict[str, Any]:
        return new_conversation(request, body.user).model_dump()

    @app.get("/v1/conversations/{conversation_id}", dependencies=guard)
    def read(conversation_id: ConversationId) -> dict[str, Any]:
        return dialogue.store.get(conversation_id).model_dump()

    @app.delete("/v1/conversations/{conversation_id}", dependencies=guard, status_code=204)
    def delete(conversation_id: ConversationId) -> None:
        dialogue.delete(conversation_id)

    @app.post("/v1/conversations/{conversation_id}/feedback", dependencies=guard)
    def feedback(conversation_id: ConversationId, body: FeedbackBody) -> dict[str, Any]:
        return dialogue.feedback(conversation_id, body.item_id, body.kind).model_dump()

    @app.delete("/v1/conversations/{conversation_id}/state/{kind}/{value:path}", dependencies=guard)
    def forget(conversation_id: ConversationId, kind: StateKind, value: str) -> dict[str, Any]:
        """Take one entry out of the state (ConversationAgent.forget); the state as it is now."""
        return dialogue.forget(conversation_id, kind, value).model_dump()

    async def events(conversation_id: str, text: str) -> AsyncIterator[dict[str, Any]]:
        """A turn's events as JSON, pulled from its worker thread; the gate's slot is held to the end.
        Errors before the first event propagate (real status codes); later ones become an error event."""
        async with gate.admit() as without_llm:
            iterator: Iterator[Any] = dialogue.stream(conversation_id, text, without_llm)
            first = await gate.run(next, iterator)
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
                with anyio.CancelScope(shield=True):  # a client that went away still ends the turn (its lock)
                    await gate.run(iterator.close)  # type: ignore[attr-defined]

    async def started(conversation_id: str, text: str) -> AsyncIterator[dict[str, Any]]:
        """The turn's events with the first one already computed: what fails before it is a status code."""
        stream = events(conversation_id, text)
        first = await stream.__anext__()

        async def chained() -> AsyncIterator[dict[str, Any]]:
            yield first
            async for event in stream:
                yield event

        return chained()

    def event_stream(frames: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
        return EventSourceResponse(frames, ping=config.sse_ping_s, sep="\n")

    @app.post("/v1/conversations/{conversation_id}/messages", dependencies=guard, response_model=None)
    async def message(conversation_id: ConversationId, body: MessageBody, request: Request) -> Any:
        if body.stream or "text/event-stream" in request.headers.get("accept", ""):
            turn = await started(conversation_id, body.text)

            async def frames() -> AsyncIterator[ServerSentEvent]:
                async for event in turn:
                    yield ServerSentEvent(data=json.dumps(event), event=event["type"])

            return event_stream(frames())
        async with gate.admit() as without_llm:
            response = await gate.run(dialogue.respond, conversation_id, body.text, without_llm)
        return {"conversation_id": conversation_id, **response.model_dump()}

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    async def chat(body: ChatBody, request: Request) -> Any:
        """OpenAI-compatible facade: the last user message is a turn of conversation `user` (or a new one)."""
        user_messages = [m.text() for m in body.messages if m.role == "user"]
        if not user_messages or not user_messages[-1].strip():
            raise HTTPException(status_code=422, detail="messages: the last user message must have text")
        text = user_messages[-1]
        # an unknown conversation is 404, not silently a new one
        conversation_id = dialogue.store.get(body.user).id if body.user else new_conversation(request).id
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"

        def chunk(delta: dict[str, str], finish: str | None) -> str:
            return json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                               "model": body.model, "conversation_id": conversation_id,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        if body.stream:
            turn = await started(conversation_id, text)

            async def frames() -> AsyncIterator[ServerSentEvent]:
                async for event in turn:
                    if event["type"] == "delta":
                        yield ServerSentEvent(data=chunk({"content": event["text"]}, None))
                    elif event["type"] in ("done", "error"):
                        yield ServerSentEvent(data=chunk({}, "stop" if event["type"] == "done" else "error"))
                yield ServerSentEvent(data="[DONE]")

            return event_stream(frames())
        async with gate.admit() as without_llm:
            response = await gate.run(dialogue.respond, conversation_id, text, without_llm)
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "conversation_id": conversation_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": response.reply},
                             "finish_reason": "stop"}],
                "recagent": {"items": [i.model_dump() for i in response.items], "fallback": response.fallback,
                             "fallback_reason": response.fallback_reason},
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app
