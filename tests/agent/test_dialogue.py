"""Conversation state over turns on the real small index (no LLM: templated replies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.catalog import LoadedIndex
from agent.dialogue import ConversationAgent, ConversationNotFound, ConversationStore
from agent.recommender import Recommender
from agent.settings import Settings
from index.embedder import Embedder
from index.store import IndexStore, chroma_client


@pytest.fixture(scope="module")
def recommender(small_index: Settings, embedder: Embedder) -> Recommender:
    index = LoadedIndex(IndexStore(chroma_client(small_index.index), "movies-small"))
    return Recommender(index, small_index, embedder_factory=lambda: embedder)


def test_constraints_titles_and_feedback(recommender: Recommender, tmp_path: Path) -> None:
    agent = ConversationAgent(recommender, ConversationStore(tmp_path / "conversations"))
    state = agent.store.create()
    first = agent.respond(state.id, "I loved The Matrix and Toy Story. Something funny from the 90s, nothing scary.")
    state = agent.store.get(state.id)
    titles = {recommender.index.entries[i].title for i in state.liked}
    assert {"Matrix, The (1999)", "Toy Story (1995)"} <= titles
    assert "Comedy" in state.include_genres and "Horror" in state.exclude_genres
    assert (state.year_min, state.year_max) == (1990, 1999)
    assert len(first.items) == 5
    for item in first.items:
        assert "Comedy" in item.attributes["genres"] and "Horror" not in item.attributes["genres"]
        assert 1990 <= item.attributes["year"] <= 1999
        assert item.id not in state.liked

    disliked = first.items[0].id
    agent.feedback(state.id, disliked, "dislike")
    for _ in range(2):
        again = agent.respond(state.id, "More like that please.")
        assert disliked not in {i.id for i in again.items}

    restarted = ConversationAgent(recommender, ConversationStore(tmp_path / "conversations"))
    kept = restarted.store.get(state.id)
    assert disliked in kept.disliked and len(kept.turns) == 6


def test_known_user_and_isolation(recommender: Recommender) -> None:
    agent = ConversationAgent(recommender)
    one, two = agent.store.create(user="1"), agent.store.create()
    agent.respond(one.id, "No horror please.")
    assert agent.store.get(two.id).exclude_genres == []
    seen = set(recommender.index.user_history("1")[0])
    reply = agent.respond(one.id, "What else?")
    assert not seen & {i.id for i in reply.items}
    agent.store.delete(two.id)
    with pytest.raises(ConversationNotFound):
        agent.store.get(two.id)


def test_stream_events(recommender: Recommender) -> None:
    agent = ConversationAgent(recommender)
    state = agent.store.create()
    events = list(agent.stream(state.id, "An animated movie for kids"))
    assert events[0]["type"] == "items" and events[-1]["type"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "delta") == events[-1]["reply"]
