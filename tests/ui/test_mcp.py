"""The MCP server through the SDK's own client, over both transports: `recagent mcp` on stdio (a real
subprocess, as a bot starts it) and streamable HTTP (with the API's token rule). List the tools, call
each; bad arguments and recagent's errors come back as tool errors and the server keeps serving."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agent.assemble import Agent
from agent.settings import Settings
from conftest import REPO, agent_with_llm, free_port
from ui.mcp import build_mcp, http_app

TOOLS = {"recommend", "start_conversation", "send_message", "feedback", "conversation_state"}


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def exercise(client: Client) -> None:
    """Every tool once, then the errors; the same checks for both transports."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    k = tools["recommend"].input_schema["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 50)
    assert tools["send_message"].input_schema["required"] == ["conversation_id", "text"]
    assert set(tools["feedback"].input_schema["properties"]["kind"]["enum"]) == {"like", "dislike", "seen"}
    assert all(tool.input_schema["additionalProperties"] is False for tool in tools.values())

    found = await client.call_tool("recommend", {"history": ["260", "1196"], "k": 3,
                                                 "filters": {"genres": "Action"}})
    assert not found.is_error, _text(found)
    items = found.structured_content["items"]
    assert len(items) == 3 and all("Action" in i["attributes"]["genres"] and i["reason"] for i in items)

    started = await client.call_tool("start_conversation", {})
    conversation = started.structured_content["id"]
    reply = await client.call_tool("send_message", {"conversation_id": conversation,
                                                    "text": "Something funny, nothing scary"})
    assert not reply.is_error, _text(reply)
    first = reply.structured_content["items"][0]["id"]
    assert reply.structured_content["reply"]
    liked = await client.call_tool("feedback", {"conversation_id": conversation, "item_id": first, "kind": "dislike"})
    assert first in liked.structured_content["disliked"]
    state = (await client.call_tool("conversation_state", {"conversation_id": conversation})).structured_content
    assert [t["role"] for t in state["turns"]] == ["user", "assistant"]
    assert "Horror" in state["exclude"]["genres"] and first in state["disliked"]

    errors = {
        "k out of range": ("recommend", {"k": 0}, "k"),
        "unknown kind": ("feedback", {"conversation_id": conversation, "item_id": first, "kind": "love"}, "kind"),
        "missing argument": ("send_message", {"text": "hi"}, "conversation_id"),
        "unknown conversation": ("send_message", {"conversation_id": "0" * 32, "text": "hi"}, "not found (404)"),
        "unknown item": ("feedback", {"conversation_id": conversation, "item_id": "nope", "kind": "like"},
                         "unknown item"),
        "bad filter": ("recommend", {"filters": {"year": {"$approx": 1}}}, "invalid request (400)"),
        "id too long": ("conversation_state", {"conversation_id": "x" * 201}, "conversation_id"),
        # as the HTTP API refuses them (each was accepted before)
        "unknown argument": ("recommend", {"k": 3, "colour": "red"}, "colour"),
        "k as a boolean": ("recommend", {"k": True}, "k"),
        "unknown filter attribute": ("recommend", {"filters": {"colour": "red"}}, "unknown filter attribute 'colour'"),
        "$or": ("recommend", {"filters": {"$or": [{"genres": "Comedy"}]}}, "'$or' is not an attribute"),
    }
    for case, (tool, arguments, expected) in errors.items():
        result = await client.call_tool(tool, arguments)
        assert result.is_error and expected in _text(result), (case, _text(result))
        print(f"{case}: {_text(result)[:160]}")
    assert (await client.call_tool("conversation_state", {"conversation_id": conversation})).is_error is False


def test_stdio_through_recagent_mcp(small_index: Settings, tmp_path: Path) -> None:
    flags = ["--data-dir", str(small_index.data.data_dir), "--dataset", "movies-small", "--chroma-path",
             str(small_index.index.path), "--no-llm", "--quiet", "--store",
             f"sqlite:///{tmp_path / 'conversations.sqlite3'}"]
    server = StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp", *flags], cwd=REPO,
                                   env={"HF_HUB_OFFLINE": "1"})

    async def main() -> None:
        async with Client(server) as client:
            await exercise(client)

    anyio.run(main)
    assert (tmp_path / "conversations.sqlite3").exists()


@pytest.fixture()
def http_server(small_agent: Agent) -> Iterator[str]:
    port = free_port()
    app = http_app(build_mcp(agent_with_llm(small_agent, None)), "127.0.0.1", "s3cret", 1_000_000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive()
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=15)


def test_streamable_http_with_a_token(http_server: str) -> None:
    for header in ({}, {"Authorization": "Bearer wrong"}):
        refused = httpx.post(http_server, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=header)
        assert refused.status_code == 401

    async def main() -> None:
        http = create_mcp_http_client(headers={"Authorization": "bearer s3cret"})
        async with http, Client(streamable_http_client(http_server, http_client=http)) as client:
            await exercise(client)

    anyio.run(main)
