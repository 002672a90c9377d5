"""Forgetting one entry of a conversation's state, through the HTTP API over the real movies-small index:
`DELETE /v1/conversations/{id}/state/{kind}/{value}` takes out exactly that entry, stores it, and the next
turn's filters follow; bad kinds, values and conversations get clear errors and change nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from agent.assemble import Agent
from agent.examples import common_values, example_requests
from conftest import agent_with_llm
from ui.api import create_app


def test_forget_takes_out_one_entry_and_the_next_turn_follows(small_agent: Agent) -> None:
    agent = agent_with_llm(small_agent, None)
    client = TestClient(create_app(agent))
    values = [v for _, v in common_values(agent.conversations.vocabulary)]
    wanted, ruled_out = values[1], values[2]
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    turn = client.post(f"/v1/conversations/{conversation}/messages",
                       json={"text": example_requests(agent.conversations.vocabulary, agent.index)[0]})
    assert turn.status_code == 200, turn.text
    first, second, third = [item["id"] for item in turn.json()["items"][:3]]
    for item, kind in ((first, "like"), (second, "like"), (third, "dislike")):
        assert client.post(f"/v1/conversations/{conversation}/feedback",
                           json={"item_id": item, "kind": kind}).status_code == 200
    state = client.get(f"/v1/conversations/{conversation}").json()
    assert state["liked"] == [first, second] and state["disliked"] == [third]
    assert state["include"] == {"genres": [wanted]} and state["exclude"] == {"genres": [ruled_out]}
    assert state["year_min"] is not None and state["year_max"] is not None

    forgot = client.delete(f"/v1/conversations/{conversation}/state/liked/{first}")
    assert forgot.status_code == 200, forgot.text
    assert forgot.json()["liked"] == [second] and forgot.json()["disliked"] == [third]
    assert client.delete(f"/v1/conversations/{conversation}/state/exclude/{ruled_out}").json()["exclude"] == {}
    after_years = client.delete(f"/v1/conversations/{conversation}/state/years/all").json()
    assert after_years["year_min"] is None and after_years["year_max"] is None
    assert client.delete(f"/v1/conversations/{conversation}/state/disliked/{third}").json()["disliked"] == []

    stored = agent.conversations.store.get(conversation)
    assert stored.liked == [second] and stored.include == {"genres": [wanted]} and stored.exclude == {}
    filters = agent.conversations.filters(stored)
    assert filters == {"genres": {"$all": [wanted]}}, filters  # no $nin, no years any more

    # bad input: clear errors, nothing changed
    again = client.delete(f"/v1/conversations/{conversation}/state/liked/{first}")
    assert again.status_code == 404 and first in again.json()["detail"]
    assert client.delete(f"/v1/conversations/{conversation}/state/wishes/x").status_code == 422
    bad_years = client.delete(f"/v1/conversations/{conversation}/state/years/sometime")
    assert bad_years.status_code == 400 and "min, max or all" in bad_years.json()["detail"]
    assert client.delete(f"/v1/conversations/{'0' * 32}/state/liked/{second}").status_code == 404
    assert agent.conversations.store.get(conversation).model_dump() == stored.model_dump()
