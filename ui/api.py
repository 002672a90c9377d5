"""HTTP API for support bots: thin routes over agent.dialogue.ConversationAgent (no agent logic here).

Bound to loopback by default; on any other address a bearer token is required. Conversation ids are
random 128-bit values and each route touches only the conversation it names.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.dialogue import ConversationAgent, ConversationNotFound, Feedback
from index.errors import IndexStateError, RecagentError

MAX_TEXT = 4000


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, max_length=200)
    history: list[str] | None = Field(None, max_length=2000)
    query: str | None = Field(None, max_length=MAX_TEXT)
    filters: dict[str, Any] | None = None
    k: int = Field(5, ge=1, le=50)


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, max_length=200)


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    stream: bool = False


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(max_length=200)
    kind: Feedback


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_TEXT)


class ChatBody(BaseModel):
    model: str = "recagent"
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    user: str | None = Field(None, max_length=200, description="a conversation id to continue")


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        public = {key: value for key, value in event.items() if key != "response"}
        yield f"event: {event['type']}\ndata: {json.dumps(public)}\n\n"


def create_app(agent: ConversationAgent, token: str | None = None) -> FastAPI:
    app = FastAPI(title="recagent", version="0.1.0",
                  description="Grounded recommendations and conversations over a catalog.")

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given, f"Bearer {token}"):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    @app.exception_handler(ConversationNotFound)
    def _not_found(request: Request, exc: ConversationNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(IndexStateError)
    def _unknown(request: Request, exc: IndexStateError) -> JSONResponse:
        status = 404 if "unknown user" in str(exc) else 503
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.exception_handler(RecagentError)
    def _bad(request: Request, exc: RecagentError) -> JSONResponse:  # bad filters, unknown items, ...
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    guard = [Depends(authorize)]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/recommend", dependencies=guard)
    def recommend(body: RecommendBody) -> dict[str, Any]:
        response = agent.recommender.recommend(user=body.user, history=body.history, query=body.query,
                                               k=body.k, filters=body.filters)
        return response.model_dump()

    @app.post("/v1/conversations", dependencies=guard, status_code=201)
    def create(body: NewConversation) -> dict[str, Any]:
        if body.user is not None:
            agent.recommender.index.user_history(body.user)  # 404 for an unknown user, now
        return agent.store.create(user=body.user).model_dump()

    @app.get("/v1/conversations/{conversation_id}", dependencies=guard)
    def read(conversation_id: str) -> dict[str, Any]:
        return agent.store.get(conversation_id).model_dump()

    @app.delete("/v1/conversations/{conversation_id}", dependencies=guard, status_code=204)
    def delete(conversation_id: str) -> None:
        agent.store.delete(conversation_id)

    @app.post("/v1/conversations/{conversation_id}/messages", dependencies=guard, response_model=None)
    def message(conversation_id: str, body: MessageBody, request: Request) -> Any:
        agent.store.get(conversation_id)
        wants_stream = body.stream or "text/event-stream" in request.headers.get("accept", "")
        if wants_stream:
            return StreamingResponse(_sse(agent.stream(conversation_id, body.text)), media_type="text/event-stream")
        response = agent.respond(conversation_id, body.text)
        return {"conversation_id": conversation_id, **response.model_dump()}

    @app.post("/v1/conversations/{conversation_id}/feedback", dependencies=guard)
    def feedback(conversation_id: str, body: FeedbackBody) -> dict[str, Any]:
        return agent.feedback(conversation_id, body.item_id, body.kind).model_dump()

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    def chat(body: ChatBody) -> Any:
        """OpenAI-compatible facade: the last user message is a turn of conversation `user` (or a new one)."""
        user_messages = [m.content for m in body.messages if m.role == "user"]
        if not user_messages:
            raise HTTPException(status_code=422, detail="messages need at least one user message")
        try:
            conversation_id = agent.store.get(body.user).id if body.user else agent.store.create().id
        except ConversationNotFound:
            conversation_id = agent.store.create().id
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            def chunks() -> Iterator[str]:
                for event in agent.stream(conversation_id, user_messages[-1]):
                    if event["type"] == "delta":
                        delta = {"content": event["text"]}
                    elif event["type"] == "done":
                        delta = {}
                    else:
                        continue
                    chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": body.model, "conversation_id": conversation_id,
                             "choices": [{"index": 0, "delta": delta,
                                          "finish_reason": "stop" if event["type"] == "done" else None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(chunks(), media_type="text/event-stream")
        response = agent.respond(conversation_id, user_messages[-1])
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "conversation_id": conversation_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": response.reply},
                             "finish_reason": "stop"}],
                "recagent": {"items": [i.model_dump() for i in response.items], "fallback": response.fallback},
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app


def requires_token(host: str) -> bool:
    return host not in {"127.0.0.1", "localhost", "::1"} and not host.startswith("127.")
