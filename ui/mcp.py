"""The agent as Model Context Protocol tools, for support bots (`recagent mcp`, stdio or streamable HTTP).

Tools: recommend, start_conversation, send_message, feedback and conversation_state. They call the same
agent as the HTTP API, with the same bounds on their inputs (typed; the JSON Schema comes from the
signatures), the same grounding, and the same errors: recagent's errors come back as tool errors that
name their kind and HTTP status ("not found (404): ..."), never as a crash. Turns pass the API's
bounded gate. Over HTTP the API's token rule holds (ui/auth.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, StringConstraints

from agent.assemble import Agent
from agent.conversations import ConversationState
from agent.dialogue import Feedback
from agent.events import RecommendationResponse, TurnRequest
from agent.settings import ApiConfig
from core.errors import RecagentError
from ui.api import MAX_TEXT, Id, Text, TurnGate, status_of
from ui.auth import bearer_matches

T = TypeVar("T")
KINDS = {400: "invalid request", 404: "not found", 409: "conflict", 503: "unavailable"}
Message = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT)]
Query = Annotated[Text, StringConstraints(max_length=MAX_TEXT)]
INSTRUCTIONS = ("Recommends items from one catalog. Use `recommend` for a one-off list, or start a conversation "
                "and send the user's messages to it: the conversation remembers likes, dislikes and constraints. "
                "Recommend only the items the tools return, with the reasons they give.")


def build_mcp(agent: Agent, config: ApiConfig | None = None) -> MCPServer:
    """The MCP server over an assembled agent; it closes the agent when it stops."""
    config = config or agent.settings.api
    gate = TurnGate.for_agent(agent, config)
    dialogue = agent.conversations

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            agent.close()

    mcp = MCPServer("recagent", instructions=INSTRUCTIONS, version="0.2.0", lifespan=lifespan, log_level="WARNING")

    async def call(fn: Callable[..., T], *args: Any, turn: bool = False) -> T:
        """Run agent code on a worker thread (turns through the gate); its errors become tool errors."""
        try:
            if turn:
                async with gate.admit():
                    return await gate.run(fn, *args)
            return await anyio.to_thread.run_sync(fn, *args)
        except RecagentError as exc:
            status = status_of(exc)
            raise ToolError(f"{KINDS.get(status, 'error')} ({status}): {exc}") from exc

    @mcp.tool()
    async def recommend(user: Id | None = None, history: Annotated[list[Id], Field(max_length=2000)] | None = None,
                        query: Query | None = None, filters: dict[Id, Any] | None = None,
                        k: Annotated[int, Field(ge=1, le=50)] = 5) -> RecommendationResponse:
        """Ranked catalog items with the reason for each and a grounded reply. Give a known user id, a history
        of item ids (oldest first), free text, and/or filters on catalog attributes such as
        {"genres": "Comedy", "year": {"$gte": 1990}} (operators $eq $ne $gt $gte $lt $lte $in $nin)."""
        request = TurnRequest(user=user, history=tuple(history or ()), query=query, k=k, filters=filters)
        return await call(agent.pipeline.recommend, request, turn=True)

    @mcp.tool()
    async def start_conversation(user: Id | None = None) -> ConversationState:
        """A new conversation (optionally for a known user id, whose history it then uses); returns its state
        with the id to pass to send_message."""
        return await call(dialogue.create, user)

    @mcp.tool()
    async def send_message(conversation_id: Id, text: Message) -> RecommendationResponse:
        """One turn of a conversation: the user's message in, recommendations and a grounded reply out. The
        conversation keeps what the user liked, disliked and asked for."""
        return await call(dialogue.respond, conversation_id, text, turn=True)

    @mcp.tool()
    async def feedback(conversation_id: Id, item_id: Id, kind: Feedback) -> ConversationState:
        """The user liked, disliked or has already seen an item; disliked and seen items never come back."""
        return await call(dialogue.feedback, conversation_id, item_id, kind)

    @mcp.tool()
    async def conversation_state(conversation_id: Id) -> ConversationState:
        """What the conversation knows: likes, dislikes, constraints, recommended items and the transcript."""
        return await call(dialogue.store.get, conversation_id)

    return mcp


class BearerRequired:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>` (else 401)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization")
            if not bearer_matches(header.decode("latin-1") if header is not None else None, self.token):
                body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(mcp: MCPServer, host: str, token: str | None, max_body_bytes: int) -> Any:
    """The streamable HTTP app at /mcp; with a token, every request must carry it."""
    app = mcp.streamable_http_app(host=host, max_request_body_size=max_body_bytes)
    return BearerRequired(app, token) if token is not None else app
