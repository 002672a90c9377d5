"""`recagent data synth`: a synthetic shop catalog in the generic format, deterministic for a seed, with
power-law popularity; `index build` and the dialogue's catalog constraints work on it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.assemble import build_agent, index_named_dataset
from agent.evidence import evidence_for
from conftest import REPO, make_settings
from core.errors import InvalidRequest
from core.titles import natural_title
from index.embedder import Embedder
from index.loaders import load_dataset
from index.synth import synthesize


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with 'shop', written by the command itself."""
    data = tmp_path_factory.mktemp("synth-data")
    done = subprocess.run([sys.executable, "-m", "app.cli", "data", "synth", "shop", "--items", "400", "--users",
                           "80", "--interactions", "3000", "--seed", "7", "--data-dir", str(data)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (report["items"], report["users"], report["interactions"]) == (400, 80, 3000)
    again = subprocess.run([sys.executable, "-m", "app.cli", "data", "synth", "shop", "--data-dir", str(data)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr  # never writes over a dataset by accident
    return data


def test_the_data_has_the_promised_shape(shop: Path) -> None:
    dataset = load_dataset("shop", shop)
    frame = dataset.interactions
    assert len(dataset.items) == 400 and len(frame) == 3000 and frame["user"].nunique() == 80
    assert not frame.duplicated(["user", "item"]).any()
    assert frame.groupby("user").size().min() >= 5
    assert frame.groupby("user")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    counts = Counter(frame["item"])
    top_tenth = sum(n for _, n in counts.most_common(40))
    assert top_tenth / len(frame) > 0.35, top_tenth  # a power law, not uniform (which gives about 0.1)
    item = next(iter(dataset.items.values()))
    assert set(item.attributes) == {"category", "brand", "tags"} and len(item.attributes["tags"]) == 2
    assert item.attributes["brand"] in item.title and item.description
    assert dataset.item_noun == "product"


def test_the_same_seed_writes_the_same_data(shop: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "same", 400, 80, 3000, seed=7)
    synthesize(tmp_path / "other", 400, 80, 3000, seed=8)
    for name in ("catalog.parquet", "interactions.parquet"):
        original = pq.read_table(shop / "shop" / name)
        assert pq.read_table(tmp_path / "same" / name).equals(original)
        assert not pq.read_table(tmp_path / "other" / name).equals(original)
    with pytest.raises(InvalidRequest, match="dataset name"):
        synthesize(tmp_path / "bad name!", 400, 80, 3000)


def test_index_build_and_dialogue_constraints(shop: Path, tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(shop, tmp_path / "chroma", dataset="shop")
    _, report = index_named_dataset(settings, embedder=embedder, progress=False)
    assert report.as_dict()["items"] == 400
    agent = build_agent(settings, llm=None, embedder=embedder)
    brands = Counter(str(e.attributes["brand"]) for e in agent.index.entries.values())
    brand = brands.most_common(1)[0][0]
    dialogue = agent.conversations
    conversation = dialogue.create()
    reply = dialogue.respond(conversation.id, f"Something for the kitchen, nothing from {brand}")
    state = dialogue.store.get(conversation.id)
    assert state.include.get("category") == ["Kitchen"] and state.exclude.get("brand") == [brand]
    assert reply.items and all(i.attributes["category"] == "Kitchen" and i.attributes["brand"] != brand
                               for i in reply.items)

    # a descriptive attribute with one value per item (a category, not a list of tags) still gives a reason
    by_category = copy.copy(agent.index)
    by_category.__dict__["descriptive_attribute"] = "category"
    kitchen = [i for i, e in agent.index.entries.items() if e.attributes["category"] == "Kitchen"]
    reason, evidence = evidence_for(by_category, kitchen[0], kitchen[1:4], None)
    first = natural_title(agent.index.entries[kitchen[1]].title)
    assert f"it shares Kitchen with {first} and 2 more of yours" in reason and "category:Kitchen" in evidence
