"""The intents protocol: its cases file, the checks (which must be able to fail) through the real agent on the
small movie index, and the pass rates per split and kind."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agent.assemble import Agent, LazyEncoder
from agent.catalog import CatalogEntry, LoadedIndex
from agent.understanding import CatalogVocabulary
from core.errors import InvalidRequest
from eval.intents import (
    CASES,
    SYNTHETIC_SHOP,
    Checker,
    IntentCase,
    ItemChecks,
    Outcome,
    cases_path,
    pass_rates,
    read_all_cases,
    read_cases,
    run_case,
)
from index.embedder import Embedder
from index.loaders import load_dataset
from index.synth import synthesize

TITLE_CHECKS = ("liked", "disliked", "seen", "references", "not_liked")
VALUE_CHECKS = ("all_of", "any_of", "none_of", "not_all_of", "state_include", "state_exclude", "state_not_include")


def named_titles(case: IntentCase) -> set[str]:
    return {t for name in TITLE_CHECKS for t in getattr(case.intent, name)} | set(case.items.exclude if case.items
                                                                                     else [])


def named_values(case: IntentCase) -> set[tuple[str, str]]:
    groups = [getattr(case.intent, name) for name in VALUE_CHECKS]
    if case.items is not None:
        groups += [case.items.all_have, case.items.any_have, case.items.none_have]
    return {(attribute, value) for group in groups for attribute, values in group.items() for value in values}


def test_the_shipped_cases_are_valid_and_split_by_family() -> None:
    cases = read_all_cases()
    assert len(cases) >= 300
    assert len(read_cases(CASES)) >= 120
    by_dataset = {c.dataset for c in cases}
    assert by_dataset == {"ml-latest-small", "ml-100k", "lastfm-hetrec2011", "shop"}
    for dataset in by_dataset:
        mine = read_cases(cases_path(dataset))
        assert {c.dataset for c in mine} == {dataset}
        dev = {c.family for c in mine if c.split == "dev"}
        test = {c.family for c in mine if c.split == "test"}
        assert dev and test and not dev & test, dataset
    dev = {c.family for c in cases if c.split == "dev"}
    test = {c.family for c in cases if c.split == "test"}
    assert not dev & test


def meets(expected: ItemChecks, attributes: dict[str, Any]) -> bool:
    """Whether an item with these attributes passes every per-item check of a case."""
    def values(name: str) -> set[str]:
        value = attributes.get(name)
        return {str(v) for v in value} if isinstance(value, list) else {str(value)} if value is not None else set()

    year = attributes.get("year")
    return all(set(w) <= values(a) for a, w in expected.all_have.items()) and \
        all(set(w) & values(a) for a, w in expected.any_have.items()) and \
        not any(set(w) & values(a) for a, w in expected.none_have.items()) and \
        (expected.year_min is None or (isinstance(year, int) and year >= expected.year_min)) and \
        (expected.year_max is None or (isinstance(year, int) and year <= expected.year_max))


def test_every_case_names_what_its_catalog_has_and_asks_for_what_it_can_give(data_dir: Path,
                                                                              tmp_path: Path) -> None:
    """Titles and attribute values exist in the case's own catalog, and at least five items (a turn's worth)
    pass each case's item checks, so that no check asks for the impossible."""
    shop = tmp_path / "shop"
    synthesize(shop, **SYNTHETIC_SHOP)
    for dataset in ("ml-latest-small", "ml-100k", "lastfm-hetrec2011", "shop"):
        items = list(load_dataset(str(shop) if dataset == "shop" else dataset, data_dir).items.values())
        titles = {item.title for item in items}
        values = {(attribute, str(v)) for item in items for attribute, value in item.attributes.items()
                  for v in (value if isinstance(value, list) else [value])}
        cases = read_cases(cases_path(dataset))
        named = set().union(*(named_titles(c) for c in cases))
        assert named <= titles, (dataset, sorted(named - titles))
        wanted = set().union(*(named_values(c) for c in cases))
        assert wanted <= values, (dataset, sorted(wanted - values))
        assert dataset == "ml-latest-small" or named or wanted
        for case in cases:
            if case.items is not None:
                possible = sum(meets(case.items, item.attributes) for item in items)
                assert possible >= 5, (case.id, possible)


def test_a_dataset_finds_its_own_cases_file() -> None:
    assert cases_path("ml-latest-small") == CASES
    assert cases_path("/somewhere/else/shop").name == "intents-shop.jsonl"
    with pytest.raises(InvalidRequest, match=r"no intents cases for dataset 'redial'.*ml-100k"):
        cases_path("redial")


def vocabulary_of(dataset: str, data_dir: Path, embedder: Embedder | None = None) -> CatalogVocabulary:
    """A catalog's vocabulary straight from its files (what the agent builds from the index's entries)."""
    data = load_dataset(dataset, data_dir)
    entries = {i: CatalogEntry(i, item.title, item.attributes) for i, item in data.items.items()}
    catalog = SimpleNamespace(entries=entries, noun=data.item_noun)
    return CatalogVocabulary(cast(LoadedIndex, catalog), LazyEncoder(lambda: embedder) if embedder else None)


def test_the_vocabulary_reads_the_other_catalogs_words(data_dir: Path, tmp_path: Path, embedder: Embedder) -> None:
    """Faults the dev cases found: ml-100k's "Children's" was never matched (nor "family" or "kids" mapped to it),
    "family" on a catalog without such a value recursed without end, a shop's Books and Music categories were
    stop words, and "supplies" took the shop's "Art Supplies" by the embedding."""
    movies = vocabulary_of("ml-100k", data_dir)
    read = {(c.value, c.negated) for c in movies.constraints("family movie, nothing scary", embed=False)}
    assert read == {("Children's", False), ("Horror", True)}
    assert [c.value for c in movies.constraints("a movie for the kids", embed=False)] == ["Children's"]
    synthesize(tmp_path / "shop", **SYNTHETIC_SHOP)
    shop = vocabulary_of(str(tmp_path / "shop"), data_dir, embedder)
    assert shop.constraints("for the family, familly friendly", embed=False) == []
    assert [c.value for c in shop.constraints("actually, books instead")] == ["Books"]
    assert sorted(c.value for c in shop.constraints("a book about music")) == ["Books", "Music"]
    assert [c.value for c in shop.constraints("office supplies")] == ["Office"]


def test_bad_case_files_are_refused(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    rows = [{"id": "a", "family": "f", "split": "dev", "messages": ["no horror"]},
            {"id": "b", "family": "f", "split": "test", "messages": ["no horror"]}]
    mixed.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InvalidRequest, match="families in both splits: f"):
        read_cases(mixed)
    typo = tmp_path / "typo.jsonl"
    typo.write_text(json.dumps({"id": "a", "family": "f", "split": "dev", "messages": ["x"],
                                "intent": {"non_of": {}}}) + "\n")
    with pytest.raises(InvalidRequest, match=r"typo.jsonl:1"):
        read_cases(typo)
    two = tmp_path / "two.jsonl"
    rows = [{"id": "a", "family": "f", "split": "dev", "messages": ["no horror"]},
            {"id": "b", "family": "g", "split": "dev", "dataset": "ml-100k", "messages": ["no horror"]}]
    two.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InvalidRequest, match="one dataset's cases to a file"):
        read_cases(two)


def test_checks_pass_and_fail_on_the_real_agent(small_agent: Agent) -> None:
    checker = Checker(small_agent)
    right = IntentCase.model_validate({
        "id": "right", "family": "f", "split": "test", "messages": ["a comedy, no horror, before 1990"],
        "intent": {"none_of": {"genres": ["Horror"]}, "all_of": {"genres": ["Comedy"]}, "year_max": 1989},
        "items": {"all_have": {"genres": ["Comedy"]}, "none_have": {"genres": ["Horror"]}, "year_max": 1989,
                  "count": 3}})
    outcome = run_case(small_agent, checker, right)
    assert outcome.checks and all(passed for _, passed, _ in outcome.checks), outcome.checks
    wrong = IntentCase.model_validate({
        "id": "wrong", "family": "g", "split": "dev", "messages": ["no horror"],
        "intent": {"all_of": {"genres": ["Horror"]}, "year_min": 2000},
        "items": {"all_have": {"genres": ["Horror"]}}})
    failed = run_case(small_agent, checker, wrong)
    kinds = {kind for kind, passed, _ in failed.checks if not passed}
    assert {"intent.all_of", "intent.year_min", "items.all_have"} <= kinds
    with pytest.raises(InvalidRequest, match="no item titled"):
        checker.item("No Such Movie (2099)")


def test_pass_rates_by_split_and_kind() -> None:
    case = IntentCase(id="a", family="f", split="test", messages=["x"])
    other = IntentCase(id="b", family="g", split="dev", messages=["x"])
    outcomes = [Outcome(case, [("intent.none_of", True, ""), ("items.none_have", False, ""),
                               ("items.none_have", True, "")]), Outcome(other, [("intent.liked", True, "")])]
    rates = pass_rates(outcomes, bootstrap=50)
    test = rates["test"]["checks"]
    assert test["intent"]["pass_rate"] == 1.0 and test["items"]["pass_rate"] == 0.5
    assert test["all"]["checks"] == 3 and test["all"]["pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert rates["test"]["cases_all_passed"] == 0 and rates["dev"]["cases_all_passed"] == 1
