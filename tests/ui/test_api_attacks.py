"""Faults an attack on the landed API found, each with the test that failed before its fix: the OpenAI
facade's bounds, validation errors that printed internals, chunked bodies, filters that matched nothing
silently, booleans taken for numbers, turns that queued for minutes and unlimited conversation creation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from scripted_llm import ScriptedLLM, reason_sentence

from agent.assemble import Agent
from agent.settings import ApiConfig
from conftest import agent_with_llm
from ui.api import create_app
from ui.limits import CreationLimit, TooManyConversations

REPRS = ("functools", "<function", " at 0x", "function-after", "constrained-str", "list[", "partial(")


@pytest.fixture()
def client(small_agent: Agent) -> TestClient:
    return TestClient(create_app(agent_with_llm(small_agent, None)))


def _chat(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def test_openai_facade_bounds_strings_and_parts_apart(client: TestClient) -> None:
    long_message = "Something animated and funny for the whole family, please, nothing scary"
    assert len(long_message) > 50
    ok = client.post("/v1/chat/completions", json=_chat(long_message))
    assert ok.status_code == 200, ok.text  # was 422 "at most 50 items": the parts' list limit applied to strings
    assert ok.json()["choices"][0]["message"]["content"]

    too_long = client.post("/v1/chat/completions", json=_chat("x" * 4001))
    assert too_long.status_code == 422
    [error] = too_long.json()["detail"]
    assert error["field"] == "messages[0].content" and "at most 4000 characters" in error["msg"]

    parts = client.post("/v1/chat/completions", json=_chat([{"type": "text", "text": "y" * 3999}] * 50))
    assert parts.status_code == 422, "50 parts of 3,999 characters were accepted as one 199,950-character turn"
    [error] = parts.json()["detail"]
    assert error["field"] == "messages[0].content" and "together must have at most 4000 characters" in error["msg"]
    many = client.post("/v1/chat/completions", json=_chat([{"type": "text", "text": "a"}] * 51))
    assert many.status_code == 422 and "at most 50 items" in many.json()["detail"][0]["msg"]
    within = client.post("/v1/chat/completions", json=_chat([{"type": "text", "text": "z" * 2000}] * 2))
    assert within.status_code == 200, within.text


BAD_BODIES: list[tuple[str, str, str]] = [  # (path, raw body, the field the error must name)
    ("/v1/chat/completions", json.dumps(_chat("x" * 5000)), "messages[0].content"),
    ("/v1/chat/completions", json.dumps(_chat(5)), "messages[0].content"),
    ("/v1/chat/completions", json.dumps(_chat([{"type": "image", "text": "x"}])), "messages[0].content[0].type"),
    ("/v1/chat/completions", json.dumps({"messages": [{"role": "bot", "content": "hi"}]}), "messages[0].role"),
    ("/v1/chat/completions", json.dumps({"messages": [], "stream": "yes"}), "messages"),
    ("/v1/recommend", json.dumps({"query": "x" * 4001}), "query"),
    ("/v1/recommend", json.dumps({"k": True}), "k"),
    ("/v1/recommend", json.dumps({"k": "3"}), "k"),
    ("/v1/recommend", json.dumps({"history": ["x" * 201]}), "history[0]"),
    ("/v1/recommend", json.dumps({"colour": "red"}), "colour"),
    ("/v1/recommend", '{"query": "a\\ud800b"}', "query"),
    ("/v1/recommend", '{"filters": {"genres": "Com\\udc00edy"}}', "filters"),
    ("/v1/recommend", '{"filters": {"genres": {"$in": ["\\ud800"]}}}', "filters"),
    ("/v1/recommend", '{"query": "unfinished', "body"),
    ("/v1/conversations", json.dumps({"user": 7}), "user"),
    ("/v1/conversations/{c}/messages", json.dumps({"text": ""}), "text"),
    ("/v1/conversations/{c}/messages", json.dumps({"text": "hi", "stream": 1}), "stream"),
    ("/v1/conversations/{c}/feedback", json.dumps({"item_id": "1", "kind": "love"}), "kind"),
]


def test_every_422_names_the_field_and_the_rule_in_plain_words(client: TestClient) -> None:
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    for path, raw, field in BAD_BODIES:
        response = client.post(path.format(c=conversation), content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, raw[:80], response.status_code, response.text[:300])
        assert not any(r in response.text for r in REPRS), (path, response.text[:500])
        errors = response.json()["detail"]
        assert field in {e["field"] for e in errors}, (path, raw[:80], errors)
        assert all(e["msg"].startswith(f"{e['field']}: ") and len(e["msg"]) > len(e["field"]) + 5 for e in errors)
    surrogate = client.post("/v1/recommend", content='{"filters": {"genres": "Com\\udc00edy"}}',
                            headers={"content-type": "application/json"})
    assert "unpaired surrogate" in surrogate.json()["detail"][0]["msg"]  # was 200: filter values went unchecked


def test_a_chunked_body_over_the_limit_is_413(small_agent: Agent) -> None:
    client = TestClient(create_app(agent_with_llm(small_agent, None), config=ApiConfig(max_body_bytes=2048)))

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body arrives in chunks
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, (response.status_code, response.text)  # was 400
    assert "larger than 2048 bytes" in response.json()["detail"]

    def small() -> Iterator[bytes]:
        yield b'{"query": "space'
        yield b' adventure", "k": 2}'

    fine = client.post("/v1/recommend", content=small(), headers={"content-type": "application/json"})
    assert fine.status_code == 200 and len(fine.json()["items"]) == 2


def test_filters_that_would_match_nothing_are_400_naming_the_problem(client: TestClient) -> None:
    cases = [({"colour": "red"}, "unknown filter attribute 'colour'"),
             ({"$or": [{"genres": "Comedy"}, {"genres": "Drama"}]}, "'$or' is not an attribute"),
             ({"genres": {"$in": [{"$eq": "Comedy"}]}}, "$in compares with strings, numbers or booleans, not an obj"),
             ({"genres": {"$in": [["Comedy"]]}}, "not a list"),
             ({"genres": ["Comedy", "Drama"]}, "a condition is a string, number or boolean"),
             ({"genres": None}, "not null")]
    for filters, expected in cases:
        response = client.post("/v1/recommend", json={"filters": filters, "k": 3})
        assert response.status_code == 400, (filters, response.status_code, response.text)  # was 200 with no items
        assert expected in response.json()["detail"], (filters, response.json())
    unknown = client.post("/v1/recommend", json={"filters": {"colour": "red"}}).json()["detail"]
    assert "genres" in unknown  # says which attributes there are
    ok = client.post("/v1/recommend", json={"filters": {"genres": {"$in": ["Comedy", "Drama"]}}, "k": 3})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 3


class BlockingLLM(ScriptedLLM):
    """The first ranking call blocks until released: a model that is slow for as long as the test says."""

    name = "blocking"

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(timeout=120), "never released"
        return super().label_logprobs(prompts, labels, adapter)

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        return [reason_sentence(p, "A") for p in prompts]


def test_a_turn_that_queued_past_its_budget_is_answered_without_the_llm(small_agent: Agent) -> None:
    """One worker, held by a turn stuck in the LLM: the next turn waits turn_queue_s for a worker, then gets
    the retriever's grounded answer with the reason, while the first is still in the LLM; the first then
    finishes with the LLM's ranking. Control flow, not timing: the first turn stays stuck until released."""
    llm = BlockingLLM()
    agent = agent_with_llm(small_agent, llm)
    app = create_app(agent, config=ApiConfig(turn_workers=1, turn_queue_s=0.5))
    body = {"history": ["260", "1196"], "k": 3}
    results: dict[str, httpx.Response] = {}
    while_stuck: dict[str, Any] = {}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as http:
            conversation = (await http.post("/v1/conversations", json={})).json()["id"]

            async def first() -> None:
                results["first"] = await http.post("/v1/recommend", json=body)

            async with anyio.create_task_group() as group:
                group.start_soon(first)
                try:  # the first turn's thread cannot be cancelled: it must be released, whatever fails here
                    assert await anyio.to_thread.run_sync(llm.entered.wait, 60), "the first turn never reached the LLM"
                    results["queued"] = await http.post("/v1/recommend", json=body)
                    results["message"] = await http.post(f"/v1/conversations/{conversation}/messages",
                                                         json={"text": "Something animated", "stream": True})
                    while_stuck.update(first_done="first" in results, calls=llm.calls)
                finally:
                    llm.release.set()

    anyio.run(main)
    assert while_stuck == {"first_done": False, "calls": 1}  # answered while the first was in the LLM
    queued = results["queued"].json()
    assert results["queued"].status_code == 200 and len(queued["items"]) == 3
    assert queued["fallback"] and queued["reranked_by"] == "retriever" and queued["reply_by"] == "template"
    assert "waited 0.5 s for one of 1 turn workers" in queued["fallback_reason"]
    events = [json.loads(line[6:]) for line in results["message"].text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "items" and events[-1]["type"] == "done"
    assert events[0]["fallback"] and "busy" in events[0]["fallback_reason"] and events[-1]["reply_by"] == "template"
    first = results["first"].json()
    assert results["first"].status_code == 200 and first["reranked_by"] == "llm" and not first["fallback"]


def test_conversation_creation_is_limited_per_client(small_agent: Agent) -> None:
    app = create_app(agent_with_llm(small_agent, None), config=ApiConfig(conversations_per_minute=3))
    one, other = TestClient(app, client=("10.0.0.1", 5000)), TestClient(app, client=("10.0.0.2", 5000))
    assert [one.post("/v1/conversations", json={}).status_code for _ in range(3)] == [201] * 3
    refused = one.post("/v1/conversations", json={})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "at most 3 new conversations a minute" in refused.json()["detail"]
    facade = one.post("/v1/chat/completions", json=_chat("hi"))  # starting one through the facade counts too
    assert facade.status_code == 429
    assert other.post("/v1/conversations", json={}).status_code == 201  # another address has its own allowance

    secured = create_app(agent_with_llm(small_agent, None), token="s3cret",
                         config=ApiConfig(conversations_per_minute=2))
    auth = {"Authorization": "Bearer s3cret"}
    first, second = TestClient(secured, client=("10.0.0.1", 1)), TestClient(secured, client=("10.0.0.2", 1))
    codes = [c.post("/v1/conversations", json={}, headers=auth).status_code for c in (first, second, first)]
    assert codes == [201, 201, 429]  # with a token, the token is the client, whatever the address


def test_the_creation_limit_refills_over_time() -> None:
    now = [0.0]
    limit = CreationLimit(per_minute=2, clock=lambda: now[0])
    limit.take("a")
    limit.take("a")
    with pytest.raises(TooManyConversations) as refused:
        limit.take("a")
    assert refused.value.retry_after_s == 30  # one more every 30 s at 2 a minute
    now[0] = 29.0
    with pytest.raises(TooManyConversations):
        limit.take("a")
    now[0] = 30.5
    limit.take("a")
    limit.take("b")  # others are not affected
