"""Reasons state facts about the item and this user only: their own items, the constraints it meets, named."""

from __future__ import annotations

from pathlib import Path

from agent.assemble import Agent, build_agent
from agent.conversations import ConversationsConfig, open_conversation_store
from agent.evidence import evidence_for, request_facts
from core.titles import natural_title


def _genres(agent: Agent, item_id: str) -> list[str]:
    return list(agent.index.entries[item_id].attributes.get("genres", []))


def test_earlier_recommendations_are_never_cited_as_the_users(small_agent: Agent, tmp_path: Path) -> None:
    store = open_conversation_store(ConversationsConfig(url=f"sqlite:///{tmp_path / 'c.sqlite3'}"),
                                    small_agent.namespace)
    dialogue = build_agent(small_agent.settings, llm=None, index=small_agent.index, encoder=small_agent.encoder,
                           conversations=store).conversations
    conversation = dialogue.create()
    first = dialogue.respond(conversation.id, "a comedy please")
    shown = {i.id for i in first.items}
    titles = {natural_title(small_agent.index.entries[i].title) for i in shown}
    second = dialogue.respond(conversation.id, "more please")
    state = dialogue.store.get(conversation.id)
    assert state.liked == [] and shown <= set(state.recommended)
    for item in second.items:
        assert not shown & set(item.evidence), item  # nothing shown before is evidence of their taste
        assert not any(f"liked {t}" in item.reason or f"with {t}" in item.reason for t in titles), item.reason
        assert "what you asked for" not in item.reason


def test_a_constraint_is_named_only_where_the_item_meets_it(small_agent: Agent) -> None:
    index = small_agent.index
    comedy = next(i for i in index.entries if "Comedy" in _genres(small_agent, i) and
                  "Horror" not in _genres(small_agent, i))
    other = next(i for i in index.entries if "Comedy" not in _genres(small_agent, i))
    filters = {"genres": {"$all": ["Comedy"], "$nin": ["Horror"]}}
    phrases, evidence = request_facts(index, comedy, filters)
    assert phrases[:2] == ["Comedy, as you asked", "no Horror"]
    assert "asked:genres:Comedy" in evidence and "excluded:genres:Horror" in evidence
    phrases, evidence = request_facts(index, other, filters)
    assert not any("as you asked" in p for p in phrases) and "asked:genres:Comedy" not in evidence
    year = index.entries[comedy].attributes["year"]
    phrases, _ = request_facts(index, comedy, {"year": {"$gte": year - 1, "$lte": year + 1}})
    assert phrases == [f"from {year}, in the years you asked for"]


def test_without_history_or_constraints_the_reason_is_the_catalogs_own_figure(small_agent: Agent) -> None:
    item = next(iter(small_agent.index.entries))
    reason, evidence = evidence_for(small_agent.index, item, [], "something fun")
    assert evidence == [] and "here" in reason and "taste" not in reason and "asked" not in reason
