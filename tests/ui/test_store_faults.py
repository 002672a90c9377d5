"""The HTTP API over a faulty conversation store (real SQLite files): a corrupt row is quarantined and the
rest is served; a read-only database answers every write with 503 and a reason, and changes nothing; a
damaged file stops `recagent serve` at start with one line naming it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from agent.assemble import Agent, build_agent
from agent.conversations import ConversationsConfig, open_conversation_store
from agent.settings import Settings
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


def test_serve_refuses_a_damaged_conversation_file_in_one_line(small_index: Settings, small_data_dir: Path,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    store = open_conversation_store(ConversationsConfig(url=f"sqlite:///{path}"), "movies-small")
    for _ in range(50):
        store.create()
    store.close()
    connection = sqlite3.connect(path)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'conversations'").fetchone()[0]
    connection.close()
    with path.open("r+b") as file:  # the conversations table's root page overwritten, as by a failing disk
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)
    env = {**os.environ, "RECAGENT_CONVERSATIONS__URL": f"sqlite:///{path}", "RECAGENT_LLM__BACKEND": "none",
           "RECAGENT_TUNED_DIR": str(tmp_path / "tuned")}
    command = [sys.executable, "-m", "app.cli", "serve", "--data-dir", str(small_data_dir), "--dataset",
               "movies-small", "--chroma-path", str(small_index.index.path), "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    assert "recagent API at" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}: the conversation store is damaged (PRAGMA quick_check: "), last
