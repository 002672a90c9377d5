"""Candidate generation against a real embedded index of 300 real movies."""

from __future__ import annotations

import pytest

from agent.assemble import Agent, build_agent
from agent.filters import FilterError, matches
from agent.recommender import GENERATORS, Recommender, UnknownRanker
from agent.retrieval import reciprocal_rank_fusion
from agent.settings import Settings
from core.errors import UnknownUser
from index.embedder import Embedder


@pytest.fixture(scope="module")
def recommender(small_agent: Agent) -> Recommender:
    return small_agent.recommender


def _open(settings: Settings, embedder: Embedder) -> Recommender:
    return build_agent(settings, "movies-small", llm=None, embedder=embedder).recommender


STAR_WARS = ["260", "1196"]  # Star Wars IV, V


@pytest.mark.parametrize("ranker", sorted(GENERATORS))
def test_every_ranker_excludes_seen_items(recommender: Recommender, ranker: str) -> None:
    found = recommender.candidates(history=STAR_WARS, k=10, ranker=ranker)
    ids = [c.id for c in found]
    assert ids, ranker
    assert not set(STAR_WARS) & set(ids)
    assert len(ids) == len(set(ids))


def test_collaborative_neighbours_of_star_wars(recommender: Recommender) -> None:
    titles = [c.title for c in recommender.candidates(history=STAR_WARS, k=5, ranker="collab")]
    assert any("Star Wars" in t for t in titles), titles


def test_known_user_history_is_excluded(recommender: Recommender) -> None:
    history, times = recommender.index.user_history("1")
    assert len(history) == len(times) > 10
    assert times == sorted(times)
    found = recommender.candidates(user="1", k=20)
    assert len(found) == 20 and not set(history) & {c.id for c in found}


def test_semantic_query(recommender: Recommender) -> None:
    found = recommender.candidates(query="animated movie for children with toys", k=5)
    assert any("Animation" in c.attributes.get("genres", []) for c in found[:3]), [c.title for c in found]


def test_filters_on_genre_and_year(recommender: Recommender) -> None:
    filters = {"genres": "Comedy", "year": {"$gte": 1995, "$lt": 2000}}
    for ranker in ("fused", "collab", "text", "popularity", "item2item", "sequential"):
        found = recommender.candidates(history=STAR_WARS, k=5, filters=filters, ranker=ranker)
        for c in found:
            assert "Comedy" in c.attributes["genres"] and 1995 <= c.attributes["year"] < 2000, (ranker, c)
    assert len(recommender.candidates(history=STAR_WARS, k=5, filters=filters)) == 5


def test_cold_start_is_popularity(recommender: Recommender) -> None:
    cold = [c.id for c in recommender.candidates(k=5)]
    popular = [c.id for c in recommender.candidates(k=5, ranker="popularity")]
    assert cold == popular


def test_errors(recommender: Recommender) -> None:
    with pytest.raises(UnknownRanker, match="choose from"):
        recommender.candidates(history=STAR_WARS, ranker="magic")
    with pytest.raises(UnknownUser, match="unknown user"):
        recommender.candidates(user="no-such-user")
    with pytest.raises(FilterError, match="unknown filter operator"):
        recommender.candidates(history=STAR_WARS, filters={"year": {"$approx": 1990}})


def test_filter_semantics() -> None:
    attrs = {"genres": ["Comedy", "Drama"], "year": 1994}
    assert matches(attrs, {"genres": "comedy"})
    assert matches(attrs, {"genres": {"$in": ["Horror", "Drama"]}, "year": {"$lte": 1994}})
    assert not matches(attrs, {"genres": {"$nin": ["Drama"]}})
    assert not matches(attrs, {"director": "Nolan"})
    assert matches(attrs, {"director": {"$ne": "Nolan"}})


def test_reciprocal_rank_fusion_by_hand() -> None:
    lists = {"a": [("x", 0.9), ("y", 0.5)], "b": [("y", 3.0), ("z", 1.0)]}
    fused = reciprocal_rank_fusion(lists, {"a": 1.0, "b": 2.0}, k=1, n=3)
    # y: 1/(1+2) + 2/(1+1) = 1.333; z: 2/(1+2) = 0.667; x: 1/(1+1) = 0.5
    assert [i for i, _ in fused] == ["y", "z", "x"]
    assert fused[0][1] == pytest.approx(1 / 3 + 1)


def test_similar_users_and_items_are_vector_queries(recommender: Recommender) -> None:
    neighbours = recommender.similar_users("1", k=5)
    assert len(neighbours) == 5 and "1" not in {u for u, _ in neighbours}
    assert [score for _, score in neighbours] == sorted((score for _, score in neighbours), reverse=True)
    like = recommender.similar_items(["260"], k=5)  # Star Wars IV
    assert "1196" in {c.id for c in like} or "1210" in {c.id for c in like}, [c.title for c in like]
