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
from functools import cache
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ConfigDict

from agent.assemble import Agent
from agent.conversations import ConversationState
from agent.dialogue import Feedback
from agent.events import RecommendationResponse, TurnRequest
from agent.settings import ApiConfig
from core.errors import RecagentError
from ui.api import catalog_attributes, status_of
from ui.auth import bearer_matches
from ui.bodies import Filters, History, Id, K, Message, Query, check_filter_attributes
from ui.gate import TurnGate
from ui.limits import CreationLimit

T = TypeVar("T")
KINDS = {400: "invalid request", 404: "not found", 409: "conflict", 429: "rate limited", 503: "unavailable"}
INSTRUCTIONS = ("Recommends items from one catalog. Use `recommend` for a one-off list, or start a conversation "
                "and send the user's messages to it: the conversation remembers likes, dislikes and constraints. "
                "Recommend only the items the tools return, with the reasons they give.")


def build_mcp(agent: Agent, config: ApiConfig | None = None) -> MCPServer:
    """The MCP server over an assembled agent; it closes the agent when it stops."""
    config = config or agent.settings.api
    gate = TurnGate.for_agent(agent, config)
    dialogue = agent.conversations
    # one client as the API counts them: over stdio the bot that started us, over HTTP the token or loopback
    creations = CreationLimit(config.conversations_per_minute) if config.conversations_per_minute else None
    attributes = cache(lambda: catalog_attributes(agent))

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            agent.close()

    async def call(fn: Callable[..., T], *args: Any) -> T:
        """Run agent code on a worker thread; its errors become tool errors."""
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except RecagentError as exc:
            raise tool_error(exc) from exc

    async def turn(fn: Callable[..., T], *args: Any) -> T:
        """A turn through the API's gate: `fn(*args, without_llm)`."""
        try:
            async with gate.admit() as without_llm:
                return await gate.run(fn, *args, without_llm)
        except RecagentError as exc:
            raise tool_error(exc) from exc

    async def recommend(user: Id | None = None, history: History | None = None, query: Query | None = None,
                        filters: Filters | None = None, k: K = 5) -> RecommendationResponse:
        """Ranked catalog items with the reason for each and a grounded reply. Give a known user id, a history
        of item ids (oldest first), free text, and/or filters on catalog attributes such as
        {"genres": "Comedy", "year": {"$gte": 1990}} (operators $eq $ne $gt $gte $lt $lte $in $nin)."""
        if filters:
            await call(check_filter_attributes, filters, attributes())
        request = TurnRequest(user=user, history=tuple(history or ()), query=query, k=k, filters=filters)
        return await turn(agent.pipeline.recommend, request)

    async def start_conversation(user: Id | None = None) -> ConversationState:
        """A new conversation (optionally for a known user id, whose history it then uses); returns its state
        with the id to pass to send_message."""
        if creations is not None:
            await call(creations.take, "mcp client")
        return await call(dialogue.create, user)

    async def send_message(conversation_id: Id, text: Message) -> RecommendationResponse:
        """One turn of a conversation: the user's message in, recommendations and a grounded reply out. The
        conversation keeps what the user liked, disliked and asked for."""
        return await turn(dialogue.respond, conversation_id, text)

    async def feedback(conversation_id: Id, item_id: Id, kind: Feedback) -> ConversationState:
        """The user liked, disliked or has already seen an item; disliked and seen items never come back."""
        return await call(dialogue.feedback, conversation_id, item_id, kind)

    async def conversation_state(conversation_id: Id) -> ConversationState:
        """What the conversation knows: likes, dislikes, constraints, recommended items and the transcript."""
        return await call(dialogue.store.get, conversation_id)

    tools = [closed_tool(fn) for fn in (recommend, start_conversation, send_message, feedback, conversation_state)]
    return MCPServer("recagent", instructions=INSTRUCTIONS, version="0.2.0", lifespan=lifespan, log_level="WARNING",
                     tools=tools)


def tool_error(exc: RecagentError) -> ToolError:
    """recagent's error as a tool error that names its kind and HTTP status."""
    status = status_of(exc)
    return ToolError(f"{KINDS.get(status, 'error')} ({status}): {exc}")


def closed_tool(fn: Callable[..., Any]) -> Tool:
    """The tool for `fn`, refusing arguments it does not name (as the HTTP API refuses unknown fields); its
    schema says so (additionalProperties: false)."""
    tool = Tool.from_function(fn)
    model = tool.fn_metadata.arg_model

    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    tool.fn_metadata.arg_model = type(model.__name__, (model,), {"model_config": config, "__module__": __name__})
    tool.parameters = {**tool.parameters, "additionalProperties": False}
    return tool


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
