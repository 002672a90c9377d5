"""The HTTP API over a faulty conversation store (real SQLite files): a corrupt row is quarantined and the
rest is served; a read-only database answers every write with 503 and a reason, and changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from agent.assemble import Agent, build_agent
from agent.conversations import ConversationsConfig, open_conversation_store
from ui.api import create_app


def _client(agent: Agent, url: str) -> TestClient:
    store = open_conversation_store(ConversationsConfig(url=url), agent.namespace)
    return TestClient(create_app(build_agent(agent.settings, llm=None, index=agent.index, encoder=agent.encoder,
                                             conversations=store)))


def test_a_corrupt_conversation_is_set_aside_and_the_rest_served(small_agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    client = _client(small_agent, f"sqlite:///{path}")
    broken, fine = (client.post("/v1/conversations", json={}).json()["id"] for _ in range(2))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE conversations SET state = substr(state, 1, 30) WHERE id = ?", (broken,))
    restarted = _client(small_agent, f"sqlite:///{path}")  # starting over a corrupt row is no problem
    gone = restarted.get(f"/v1/conversations/{broken}")
    assert gone.status_code == 404 and "quarantine" in gone.json()["detail"] and broken in gone.json()["detail"]
    assert restarted.post(f"/v1/conversations/{broken}/messages", json={"text": "hi"}).status_code == 404
    assert restarted.get(f"/v1/conversations/{fine}").status_code == 200
    assert restarted.post(f"/v1/conversations/{fine}/messages", json={"text": "Something funny"}).status_code == 200
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT id FROM quarantined_conversations").fetchall() == [(broken,)]


def test_a_read_only_store_answers_503_and_changes_nothing(small_agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    client = _client(small_agent, f"sqlite:///{path}")
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    assert client.post(f"/v1/conversations/{conversation}/messages", json={"text": "Something funny"}
                       ).status_code == 200
    before = client.get(f"/v1/conversations/{conversation}").json()
    item = before["turns"][1]["items"][0]

    frozen = _client(small_agent, f"sqlite:///{path}?mode=ro")
    base = f"/v1/conversations/{conversation}"
    attempts = [frozen.post(f"{base}/messages", json={"text": "Nothing scary please"}),
                frozen.post(f"{base}/messages", json={"text": "Nothing scary please", "stream": True}),
                frozen.post(f"{base}/feedback", json={"item_id": item, "kind": "dislike"}),
                frozen.delete(base),
                frozen.post("/v1/conversations", json={})]
    for response in attempts:
        assert response.status_code == 503, (response.status_code, response.text)
        assert "read-only" in response.json()["detail"] and response.headers["retry-after"]
    assert frozen.get(base).json() == before  # reads still work, and nothing changed
    assert client.get(base).json() == before


def test_conversation_ids_are_bounded(small_agent: Agent, tmp_path: Path) -> None:
    client = _client(small_agent, f"sqlite:///{tmp_path / 'c.sqlite3'}")
    assert client.get(f"/v1/conversations/{'x' * 201}").status_code == 422
    assert client.get(f"/v1/conversations/{'x' * 200}").status_code == 404
