"""Example requests from the catalog's own vocabulary: on movies-small (genres, years, titles) and on a
synthetic shop (category, brand, tags; no years), each read back by the real rules reader as what it says."""

from __future__ import annotations

import pytest

from agent.assemble import Agent, build_agent, index_dataset
from agent.examples import common_values, example_requests, popular_title
from agent.intent import ReadContext
from conftest import make_settings
from index.embedder import Embedder

MOVIE_WORDS = ("movie", "film", "comedy", "drama", "horror", "genre")


def test_movie_examples_read_back_as_they_say(small_agent: Agent) -> None:
    dialogue = small_agent.conversations
    values = [v for _, v in common_values(dialogue.vocabulary)]
    examples = example_requests(dialogue.vocabulary, small_agent.index)
    assert len(examples) == 4 and len(set(examples)) == 4, examples
    assert all(not v.startswith("(") for v in values)

    first = dialogue.reader.read(examples[0], ReadContext())
    assert values[1] in first.all_of.get("genres", []) + first.any_of.get("genres", []), (examples[0], first)
    assert first.none_of.get("genres") == [values[2]], (examples[0], first)
    assert first.year_min is not None and first.year_max == first.year_min + 9, (examples[0], first)

    title = popular_title(small_agent.index)
    assert title is not None and examples[1] == f"something like {title}" and ", The (" not in title
    like = dialogue.reader.read(examples[1], ReadContext())
    most_popular = small_agent.index.ids[int(small_agent.index.popularity_order[0])]
    assert like.references == [most_popular] or like.liked == [most_popular], (examples[1], like)

    third = dialogue.reader.read(examples[2], ReadContext())
    assert values[3] in third.all_of.get("genres", []) + third.any_of.get("genres", []), (examples[2], third)
    assert third.year_min is not None and third.year_max is None, (examples[2], third)


@pytest.fixture(scope="module")
def shop_agent(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Agent:
    from index.loaders import load_dataset
    from index.synth import synthesize

    root = tmp_path_factory.mktemp("shop-data")
    synthesize(root / "shop", items=400, users=120, interactions=3000, seed=3)
    settings = make_settings(root, tmp_path_factory.mktemp("shop-chroma"), dataset="shop")
    index_dataset(settings, load_dataset("shop", root), embedder, progress=False)
    return build_agent(settings, llm=None, embedder=embedder)


def test_shop_examples_use_its_own_values_and_no_movie_words(shop_agent: Agent) -> None:
    dialogue = shop_agent.conversations
    assert dialogue.vocabulary.year_attribute is None
    examples = example_requests(dialogue.vocabulary, shop_agent.index)
    assert examples, "a catalog with attributes gets examples"
    text = " ".join(examples).lower()
    assert not any(word in text for word in MOVIE_WORDS), examples
    assert "from the" not in text and "after" not in text, examples  # no years on a catalog without them
    values = common_values(dialogue.vocabulary)
    read = dialogue.reader.read(examples[0], ReadContext())
    named = {v for vs in [*read.all_of.values(), *read.any_of.values(), *read.none_of.values()] for v in vs}
    assert values[1][1] in named and values[2][1] in named, (examples[0], read)
