"""Faults found by trying the API as a new user and as an attacker; each of these failed before the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from scripted_llm import ScriptedLLM, reason_reply

from agent.assemble import Agent
from agent.settings import Settings, load_settings
from app.serving import _token
from conftest import REPO, agent_with_llm, free_port
from core.errors import InvalidRequest
from core.titles import natural_title
from ui.api import create_app
from ui.auth import requires_token


class PoliteLLM(ScriptedLLM):
    """Ranks in the retriever's order and writes one grounded sentence per label it was shown (its reason)."""

    name = "polite"

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        return [reason_reply(p) for p in prompts]


def _labels(prompt: str) -> list[str]:
    return [line[1] for line in prompt.splitlines() if len(line) > 3 and line[0] == "[" and line[2] == "]"]


@pytest.fixture()
def llm_client(small_agent: Agent) -> TestClient:
    return TestClient(create_app(agent_with_llm(small_agent, PoliteLLM())))


def test_k_beyond_the_label_alphabet_is_answered(llm_client: TestClient) -> None:
    response = llm_client.post("/v1/recommend", json={"history": ["260", "1196"], "k": 30})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == 30 and body["reranked_by"] == "llm" and body["reply_by"] == "llm"
    assert all(natural_title(item["title"]) in body["reply"] for item in body["items"][:5])


def test_an_empty_result_is_not_reranked_by_the_llm(llm_client: TestClient) -> None:
    body = llm_client.post("/v1/recommend", json={"filters": {"year": {"$gt": 3000}}, "k": 5}).json()
    assert body["items"] == [] and body["reranked_by"] == "retriever" and body["reply_by"] == "template"


def test_tokens_schemes_and_loopback(small_agent: Agent) -> None:
    client = TestClient(create_app(agent_with_llm(small_agent, None), token="sécret"))
    good = {"Authorization": "Bearer sécret".encode()}
    assert client.post("/v1/recommend", json={"k": 2}, headers=good).status_code == 200
    assert client.post("/v1/recommend", json={"k": 2}, headers={"Authorization": "bearer sécret".encode()}
                       ).status_code == 200  # the scheme is case-insensitive
    for bad in ("Bearer secret", "Bearer sécrét".encode(), "Basic sécret".encode(), b"Bearer \xff\xfe"):
        assert client.post("/v1/recommend", json={"k": 2}, headers={"Authorization": bad}).status_code == 401
    assert requires_token("0.0.0.0") and requires_token("127.example.com") and requires_token("10.1.2.3")
    assert not requires_token("127.0.0.1") and not requires_token("::1") and not requires_token("localhost")


def test_lone_surrogates_and_oversize_input_are_4xx(small_agent: Agent) -> None:
    client = TestClient(create_app(agent_with_llm(small_agent, None)))
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    for path, raw in [("/v1/recommend", '{"query": "a\\ud800b"}'), ("/v1/recommend", '{"history": ["\\udfff"]}'),
                      ("/v1/conversations", '{"user": "\\ud800"}'),
                      (f"/v1/conversations/{conversation}/messages", '{"text": "hi \\ud800"}'),
                      ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800"}]}')]:
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.status_code, response.text)
        assert "surrogate" in response.text
    assert client.post("/v1/recommend", json={"history": ["x" * 201]}).status_code == 422
    big = client.post("/v1/recommend", content=b'{"query": "' + b"x" * 2_000_000 + b'"}',
                      headers={"content-type": "application/json"})
    assert big.status_code == 413


def test_openai_facade_edges(small_agent: Agent) -> None:
    client = TestClient(create_app(agent_with_llm(small_agent, None)))
    unknown = client.post("/v1/chat/completions", json={"user": "0" * 32, "messages": [
        {"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": ""}]}
                       ).status_code == 422
    parts = client.post("/v1/chat/completions", json={"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Something "}, {"type": "text", "text": "animated"}]}]})
    assert parts.status_code == 200 and parts.json()["choices"][0]["message"]["content"]


def test_concurrent_messages_to_one_conversation_over_http(small_agent: Agent) -> None:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(agent_with_llm(small_agent, None)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        conversation = httpx.post(f"{base}/v1/conversations", json={}).json()["id"]
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: httpx.post(f"{base}/v1/conversations/{conversation}/messages",
                                                       json={"text": f"message {n}"}, timeout=60).status_code,
                                  range(8)))
        turns = httpx.get(f"{base}/v1/conversations/{conversation}").json()["turns"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert codes == [200] * 8
    assert "".join(t["role"][0] for t in turns) == "ua" * 8


def test_token_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(environ={"RECAGENT_API_TOKEN": "from-env", "RECAGENT_MODEL_CACHE": str(tmp_path)})
    assert settings.api.token is not None and settings.api.token.get_secret_value() == "from-env"
    assert settings.llm.model_cache == tmp_path
    assert "from-env" not in repr(settings)  # a secret, not printed
    assert _token(settings, "0.0.0.0") == "from-env"
    with pytest.raises(InvalidRequest, match="needs a bearer token"):
        _token(load_settings(environ={}), "0.0.0.0")


def test_chat_off_loopback_needs_a_token(small_index: Settings) -> None:
    flags = ["--data-dir", str(small_index.data.data_dir), "--dataset", "movies-small", "--chroma-path",
             str(small_index.index.path), "--skip-build", "--no-llm"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-m", "app.cli", "chat", "--host", "0.0.0.0", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "needs a bearer token" in done.stderr


def test_chat_with_a_token_refuses_its_api_without_login(small_agent: Agent) -> None:
    from ui.chat import build_ui, launch

    agent = agent_with_llm(small_agent, None)
    demo = build_ui(lambda name: agent, ["movies-small"], "movies-small")
    with pytest.raises(InvalidRequest, match="needs a token"):
        launch(demo, "0.0.0.0", free_port(), token=None, block=False)
    port = free_port()
    launch(demo, "127.0.0.1", port, token="s3cret", block=False)
    try:
        info = httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=10)
        assert info.status_code in (401, 403), info.status_code
        login = httpx.post(f"http://127.0.0.1:{port}/login", data={"username": "me", "password": "wrong"}, timeout=10)
        assert login.status_code in (400, 401)
    finally:
        demo.close()


def test_quiet_prints_no_progress_bars(small_index: Settings) -> None:
    done = subprocess.run([sys.executable, "-m", "app.cli", "recommend", "--data-dir", str(small_index.data.data_dir),
                           "--dataset", "movies-small", "--chroma-path", str(small_index.index.path),
                           "--query", "space adventure", "--k", "3", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stdout.strip().splitlines()) == 3
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr, done.stderr[-2000:]


def test_llm_failure_mid_reply_keeps_what_was_sent(small_agent: Agent) -> None:
    """The LLM failing after the first sentence: the stream ends with 'done', the reply keeps what was
    sent, and fallback says why."""

    class Breaks(PoliteLLM):
        def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                            adapter: str | None = None) -> Iterator[str]:
            from agent.llm.base import LLMUnavailable

            yield "[A] is fine. "
            raise LLMUnavailable("the server went away mid-reply")

    client = TestClient(create_app(agent_with_llm(small_agent, Breaks())))
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    with client.stream("POST", f"/v1/conversations/{conversation}/messages",
                       json={"text": "Something animated", "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200 and events[0]["type"] == "items"
    assert events[-1]["type"] == "done" and events[-1]["fallback"] and "went away" in events[-1]["fallback_reason"]
