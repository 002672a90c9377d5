"""The intents protocol: its cases file, the checks (which must be able to fail) through the real agent on the
small movie index, and the pass rates per split and kind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.assemble import Agent
from core.errors import InvalidRequest
from eval.intents import CASES, Checker, IntentCase, Outcome, pass_rates, read_cases, run_case


def test_the_shipped_cases_are_valid_and_split_by_family(data_dir: Path) -> None:
    cases = read_cases(CASES)
    assert len(cases) >= 120
    dev = {c.family for c in cases if c.split == "dev"}
    test = {c.family for c in cases if c.split == "test"}
    assert dev and test and not dev & test
    with (data_dir / "ml-latest-small" / "movies.csv").open(newline="", encoding="utf-8") as handle:
        titles = {row["title"] for row in csv.DictReader(handle)}
    named = {t for c in cases for t in [*c.intent.liked, *c.intent.disliked, *c.intent.seen, *c.intent.references,
                                        *c.intent.not_liked, *(c.items.exclude if c.items else [])]}
    assert named <= titles, sorted(named - titles)


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
