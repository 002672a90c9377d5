"""The `intents` protocol: messages as people write them, checked against what the agent understood and returned.

Each catalog has its own file of cases: eval/cases/intents.jsonl for ml-latest-small (the default) and
eval/cases/intents-<dataset>.jsonl for the others: ml-100k, lastfm-hetrec2011 and `shop`, the synthetic shop that
`recagent data synth shop --items 3000 --users 600 --interactions 15000 --seed 0` writes (SYNTHETIC_SHOP; its
brands and titles depend on those numbers). `recagent eval --protocol intents --dataset NAME` runs NAME's file (a
dataset given as a folder path goes by the folder's name). Every case names its `dataset` and a file holds one
dataset's cases; a phrasing family belongs to one file and one split, so no family is in both splits anywhere.

A case (one JSON line) is one or more messages to one fresh conversation, a phrasing `family` and the `split`
(dev or test) that family belongs to, and the checks:
- `intent`: on the last message's Intent (liked, disliked, seen, references: catalog titles that must be there;
  all_of, any_of, none_of: values that must be there; not_all_of; year_min, year_max: exact; residual_lacks: words
  the residual must not contain; residual_empty; correction) and on the conversation's state after it
  (state_include, state_exclude, state_not_include, not_liked: titles that must not be liked, no_liked) and on
  the turn before's items (references_shown: positions referred to; newer_than_shown / older_than_shown: the
  year bound is one past the newest / before the oldest of them);
- `items`: on the last turn's items against the catalog's attributes (all_have, any_have, none_have: attribute
  values; year_min, year_max; exclude: titles that must not come back; count: how many at least).
Every check is one unit. The agent is the real ConversationAgent without an LLM (the retriever's order, template
replies). Pass rates are reported per check kind and per split, with 95% bootstrap intervals over checks.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.assemble import Agent, build_agent, index_named_dataset
from agent.conversations import ConversationState
from agent.events import RecommendationResponse
from agent.intent import Intent
from agent.settings import Settings
from core.errors import InvalidRequest
from eval.harness import git_commit
from eval.stats import bootstrap_interval, paired_bootstrap

CASES_DIR = Path(__file__).parent / "cases"
DEFAULT_DATASET = "ml-latest-small"
CASES = CASES_DIR / "intents.jsonl"  # ml-latest-small's; the others are intents-<dataset>.jsonl
# the synthetic shop the `shop` cases are written for: `recagent data synth shop` with these numbers
SYNTHETIC_SHOP = {"items": 3000, "users": 600, "interactions": 15000, "seed": 0}
SPLITS = ("dev", "test")
INTENT_LISTS = ("liked", "disliked", "seen", "references")
INTENT_VALUES = ("all_of", "any_of", "none_of")
ITEM_VALUES = ("all_have", "any_have", "none_have")
READERS = ("rules", "llm")


class IntentChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    liked: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    all_of: dict[str, list[str]] = Field(default_factory=dict)
    any_of: dict[str, list[str]] = Field(default_factory=dict)
    none_of: dict[str, list[str]] = Field(default_factory=dict)
    not_all_of: dict[str, list[str]] = Field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    residual_lacks: list[str] = Field(default_factory=list)
    residual_empty: bool | None = None
    correction: bool | None = None
    state_include: dict[str, list[str]] = Field(default_factory=dict)
    state_exclude: dict[str, list[str]] = Field(default_factory=dict)
    state_not_include: dict[str, list[str]] = Field(default_factory=dict)
    not_liked: list[str] = Field(default_factory=list)
    no_liked: bool | None = None
    references_shown: list[int] = Field(default_factory=list, description="positions (0-based) of the turn "
                                                                        "before's items")
    newer_than_shown: bool | None = None
    older_than_shown: bool | None = None


class ItemChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all_have: dict[str, list[str]] = Field(default_factory=dict)
    any_have: dict[str, list[str]] = Field(default_factory=dict)
    none_have: dict[str, list[str]] = Field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    exclude: list[str] = Field(default_factory=list)
    count: int = 1


class IntentCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    family: str
    split: str
    dataset: str = DEFAULT_DATASET
    messages: list[str] = Field(min_length=1)
    intent: IntentChecks = Field(default_factory=IntentChecks)
    items: ItemChecks | None = None
    note: str = ""


def read_cases(path: Path = CASES) -> list[IntentCase]:
    """The cases of a file; an InvalidRequest names the line of a bad case or a family found in both splits."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            cases.append(IntentCase.model_validate_json(line))
        except ValueError as exc:
            raise InvalidRequest(f"{path}:{number}: {exc}") from exc
    for case in cases:
        if case.split not in SPLITS:
            raise InvalidRequest(f"case {case.id}: split must be one of {', '.join(SPLITS)}")
    mixed = _families_spanning(cases, "split")
    if mixed:
        raise InvalidRequest(f"families in both splits: {', '.join(mixed)}")
    if _ids_repeat(cases):
        raise InvalidRequest("case ids repeat")
    datasets = sorted({c.dataset for c in cases})
    if len(datasets) > 1:
        raise InvalidRequest(f"{path}: one dataset's cases to a file, found {', '.join(datasets)}")
    return cases


def cases_path(dataset: str) -> Path:
    """The file of a dataset's cases (by the dataset's name; a folder path counts by its last part)."""
    name = Path(dataset).name
    path = CASES if name == DEFAULT_DATASET else CASES_DIR / f"intents-{name}.jsonl"
    if not path.exists():
        known = sorted([DEFAULT_DATASET, *(p.stem.removeprefix("intents-") for p in CASES_DIR.glob("intents-*.jsonl"))])
        raise InvalidRequest(f"no intents cases for dataset {name!r} (there are cases for {', '.join(known)})")
    return path


def read_all_cases() -> list[IntentCase]:
    """Every shipped case of every dataset; an InvalidRequest when a family or an id is in two files, or a file
    holds another dataset's cases than its name says."""
    cases: list[IntentCase] = []
    for path in sorted(CASES_DIR.glob("intents*.jsonl")):
        found = read_cases(path)
        expected = DEFAULT_DATASET if path == CASES else path.stem.removeprefix("intents-")
        wrong = sorted({c.id for c in found if c.dataset != expected})
        if wrong:
            raise InvalidRequest(f"{path}: cases of another dataset than {expected}: {', '.join(wrong[:5])}")
        cases += found
    shared = _families_spanning(cases, "dataset")
    if shared:
        raise InvalidRequest(f"families in more than one dataset's file: {', '.join(shared)}")
    if _ids_repeat(cases):
        raise InvalidRequest("case ids repeat across the files")
    return cases


def _families_spanning(cases: Sequence[IntentCase], field: str) -> list[str]:
    """The families whose cases have more than one value of `field` (split, dataset), sorted."""
    found: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        found[case.family].add(getattr(case, field))
    return sorted(family for family, values in found.items() if len(values) > 1)


def _ids_repeat(cases: Sequence[IntentCase]) -> bool:
    ids = [c.id for c in cases]
    return len(ids) != len(set(ids))


@dataclass
class Outcome:
    case: IntentCase
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # kind, passed, what was found
    seconds: float = 0.0
    fallbacks: list[str] = field(default_factory=list)  # why the reader fell back to the rules, per message


class Checker:
    """Checks one case's Intent, state and items against the catalog (titles by their exact catalog name)."""

    def __init__(self, agent: Agent) -> None:
        self.entries = agent.index.entries
        self.by_title = {entry.title: item_id for item_id, entry in self.entries.items()}

    def item(self, title: str) -> str:
        if title not in self.by_title:
            raise InvalidRequest(f"no item titled {title!r} in the catalog")
        return self.by_title[title]

    def titles(self, ids: Sequence[str]) -> list[str]:
        return [self.entries[i].title if i in self.entries else i for i in ids]

    def intent(self, expected: IntentChecks, intent: Intent, state: ConversationState,
               shown: Sequence[str] = ()) -> list[tuple[str, bool, str]]:
        out = []
        for position in expected.references_shown:
            wanted = shown[position] if position < len(shown) else None
            out.append(("intent.references", wanted is not None and wanted in intent.references,
                        str(self.titles(intent.references))))
        years = [y for y in (self.entries[i].attributes.get("year") for i in shown) if isinstance(y, int)]
        if expected.newer_than_shown is not None:
            out.append(("intent.year_min", bool(years) and intent.year_min == max(years) + 1, str(intent.year_min)))
        if expected.older_than_shown is not None:
            out.append(("intent.year_max", bool(years) and intent.year_max == min(years) - 1, str(intent.year_max)))
        if expected.no_liked is not None:
            out.append(("state.not_liked", (not state.liked) == expected.no_liked, str(self.titles(state.liked))))
        for name in INTENT_LISTS:
            got = getattr(intent, name)
            for title in getattr(expected, name):
                out.append((f"intent.{name}", self.item(title) in got, str(self.titles(got))))
        for name in (*INTENT_VALUES, "not_all_of"):
            got = getattr(intent, "all_of" if name == "not_all_of" else name)
            for attribute, values in getattr(expected, name).items():
                for value in values:
                    present = value in got.get(attribute, [])
                    out.append((f"intent.{name}", present != (name == "not_all_of"), str(got)))
        for name in ("year_min", "year_max"):
            if getattr(expected, name) is not None:
                out.append((f"intent.{name}", getattr(intent, name) == getattr(expected, name),
                            str(getattr(intent, name))))
        for word in expected.residual_lacks:
            out.append(("intent.residual", word.lower() not in intent.residual.lower(), intent.residual))
        if expected.residual_empty is not None:
            out.append(("intent.residual", (intent.residual == "") == expected.residual_empty, intent.residual))
        if expected.correction is not None:
            out.append(("intent.correction", intent.correction == expected.correction, str(intent.correction)))
        for name, source, want in (("state_include", state.include, True), ("state_exclude", state.exclude, True),
                                   ("state_not_include", state.include, False)):
            for attribute, values in getattr(expected, name).items():
                for value in values:
                    out.append((f"state.{name.removeprefix('state_')}",
                                (value in source.get(attribute, [])) == want, str(source)))
        for title in expected.not_liked:
            out.append(("state.not_liked", self.item(title) not in state.liked, str(self.titles(state.liked))))
        return out

    def items(self, expected: ItemChecks, response: RecommendationResponse) -> list[tuple[str, bool, str]]:
        items = response.items
        found = str([i.title for i in items])
        out = [("items.count", len(items) >= expected.count, str(len(items)))]

        def values(attributes: dict[str, Any], attribute: str) -> set[str]:
            value = attributes.get(attribute)
            return {str(v) for v in value} if isinstance(value, list) else {str(value)} if value is not None else set()

        for name in ITEM_VALUES:
            for attribute, wanted in getattr(expected, name).items():
                for item in items:
                    have = values(item.attributes, attribute)
                    ok = set(wanted) <= have if name == "all_have" else bool(set(wanted) & have) \
                        if name == "any_have" else not set(wanted) & have
                    out.append((f"items.{name}", ok, f"{item.title}: {sorted(have)}"))
        for name, bound in (("year_min", expected.year_min), ("year_max", expected.year_max)):
            if bound is None:
                continue
            for item in items:
                year = item.attributes.get("year")
                ok = isinstance(year, int) and (year >= bound if name == "year_min" else year <= bound)
                out.append((f"items.{name}", ok, f"{item.title}: {year}"))
        for title in expected.exclude:
            out.append(("items.exclude", self.item(title) not in {i.id for i in items}, found))
        return out


def run_case(agent: Agent, checker: Checker, case: IntentCase) -> Outcome:
    conversations = agent.conversations
    started = time.perf_counter()
    state = conversations.create()
    try:
        response = None
        shown: list[str] = []
        fallbacks = []
        for message in case.messages:
            shown = [i.id for i in response.items] if response is not None else []
            response = conversations.respond(state.id, message)
            if response.intent is not None and response.intent.fallback_reason:
                fallbacks.append(response.intent.fallback_reason)
        assert response is not None and response.intent is not None
        final = conversations.store.get(state.id)
        checks = checker.intent(case.intent, response.intent, final, shown)
        if case.items is not None:
            checks += checker.items(case.items, response)
    finally:
        conversations.delete(state.id)
    return Outcome(case, checks, time.perf_counter() - started, fallbacks)


def pass_rates(outcomes: Sequence[Outcome], bootstrap: int = 1000) -> dict[str, dict[str, Any]]:
    """Per split: per check kind, per group (intent.* and state.* as 'intent', items.* as 'items') and overall,
    the share of checks passed with a 95% bootstrap interval."""
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        chosen = [o for o in outcomes if o.case.split == split]
        by_kind: dict[str, list[float]] = defaultdict(list)
        for outcome in chosen:
            for kind, passed, _ in outcome.checks:
                by_kind[kind].append(float(passed))
                by_kind["intent" if not kind.startswith("items.") else "items"].append(float(passed))
                by_kind["all"].append(float(passed))
        table = {}
        for kind in sorted(by_kind):
            values = by_kind[kind]
            low, high = bootstrap_interval(values, bootstrap)
            table[kind] = {"pass_rate": round(sum(values) / len(values), 4), "checks": len(values),
                           "ci95": [round(low, 4), round(high, 4)]}
        out[split] = {"cases": len(chosen), "cases_all_passed": sum(all(p for _, p, _ in o.checks) for o in chosen),
                      "families": len({o.case.family for o in chosen}), "checks": table}
    return out


def prepare_intents(settings: Settings, dataset: str, progress: bool = True) -> Agent:
    """The dataset's whole catalog indexed (incrementally: nothing is redone when it is already built) and the
    agent over it, without an LLM."""
    index_named_dataset(settings, dataset, progress=progress)
    return build_agent(settings, dataset, llm=None)


def evaluate_intents(settings: Settings, dataset: str, cases_file: Path | None = None, limit: int | None = None,
                     progress: bool = True, bootstrap: int = 1000, readers: Sequence[str] = ("rules",),
                     split: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the dataset's cases through the real agent with each reader (`rules`, `llm`: the fine-tuned model
    over the rules); the result (pass rates per reader, split and kind, and each reader's paired difference
    from the first) and one row per reader and case with every check."""
    path = cases_file or cases_path(dataset)
    cases = [c for c in read_cases(path) if c.dataset == Path(dataset).name and (split is None or c.split == split)]
    if not cases:
        raise InvalidRequest(f"no intents cases for dataset {dataset!r} in {path}")
    unknown = [r for r in readers if r not in READERS]
    if unknown or not readers:
        raise InvalidRequest(f"unknown reader(s) {', '.join(unknown) or '(none)'}; known: {', '.join(READERS)}")
    cases = cases[:limit] if limit else cases
    agent = prepare_intents(settings, dataset, progress)
    checker = Checker(agent)
    rules = agent.conversations.reader
    llm = None
    by_reader: dict[str, dict[str, Any]] = {}
    outcomes_by: dict[str, list[Outcome]] = {}
    rows: list[dict[str, Any]] = []
    try:
        for name in readers:
            if name == "llm":
                from agent.assemble import intent_reader, make_configured_llm

                llm = llm or make_configured_llm(settings)
                reader = intent_reader(settings, agent.conversations, llm)
                if reader is rules:
                    raise InvalidRequest("the llm reader needs an LLM (llm.backend) and the intent adapter "
                                         f"({settings.intent.adapter!r} in llm.adapters)")
                agent.conversations.reader = reader
            else:
                agent.conversations.reader = rules
            started = time.perf_counter()
            outcomes = [run_case(agent, checker, case) for case in cases]
            seconds = time.perf_counter() - started
            outcomes_by[name] = outcomes
            by_reader[name] = {"splits": pass_rates(outcomes, bootstrap), "seconds": round(seconds, 2),
                               "seconds_per_case": round(seconds / len(cases), 4)}
            rows += [{"reader": name, "case": o.case.id, "family": o.case.family, "split": o.case.split,
                      "messages": o.case.messages, "seconds": round(o.seconds, 3),
                      "passed": all(p for _, p, _ in o.checks), "fallbacks": o.fallbacks,
                      "checks": [{"kind": k, "passed": p, "found": f} for k, p, f in o.checks]} for o in outcomes]
    finally:
        agent.conversations.reader = rules
        describe = agent.describe()
        agent.close()
        if llm is not None:
            llm.close()
    first = readers[0]
    result = {"dataset": dataset, "protocol": "intents", "ranker": first, "readers": by_reader,
              "split": split or "dev+test", "cases_file": str(path), "users": len(cases), "cases": len(cases),
              "subset": bool(limit), "splits": by_reader[first]["splits"],
              "paired": {name: paired_differences(outcomes_by[first], outcomes_by[name], bootstrap)
                         for name in readers[1:]},
              "agent": {**describe, "intent_readers": list(readers)},
              "seconds": sum(r["seconds"] for r in by_reader.values()),
              "seconds_per_case": by_reader[first]["seconds_per_case"],
              "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
    return result, rows


def _case_shares(outcome: Outcome) -> dict[str, float | None]:
    intent = [p for k, p, _ in outcome.checks if not k.startswith("items.")]
    items = [p for k, p, _ in outcome.checks if k.startswith("items.")]
    return {"intent": sum(intent) / len(intent) if intent else None,
            "items": sum(items) / len(items) if items else None,
            "all": float(all(p for _, p, _ in outcome.checks))}


def paired_differences(baseline: Sequence[Outcome], variant: Sequence[Outcome], bootstrap: int = 1000
                       ) -> dict[str, dict[str, Any]]:
    """Per split: the variant's mean per-case share of intent checks and of item checks passed (and of cases
    wholly passed) minus the baseline's, over the same cases, with a paired bootstrap interval."""
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        pairs = [(_case_shares(a), _case_shares(b)) for a, b in zip(baseline, variant, strict=True)
                 if a.case.split == split]
        table = {}
        for metric in ("intent", "items", "all"):
            kept = [(a[metric], b[metric]) for a, b in pairs if a[metric] is not None and b[metric] is not None]
            if not kept:
                continue
            d = paired_bootstrap([a or 0.0 for a, _ in kept], [b or 0.0 for _, b in kept], samples=max(bootstrap, 200))
            table[metric] = {"difference": round(d.mean, 4), "ci95": [round(d.ci_low, 4), round(d.ci_high, 4)],
                             "p_value": round(d.p_value, 4), "cases": d.units}
        out[split] = table
    return out


def intent_units(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One unit per reader and case for the report: the share of its intent and item checks passed, and whether
    all did."""
    units = []
    for row in rows:
        checks = row["checks"]
        intent = [c["passed"] for c in checks if not c["kind"].startswith("items.")]
        items = [c["passed"] for c in checks if c["kind"].startswith("items.")]
        units.append({"entry": f"{row.get('reader', 'rules')}/{row['split']}", "unit": row["case"],
                      "latency_s": row["seconds"],
                      "metrics": {"intent_checks": sum(intent) / len(intent) if intent else 1.0,
                                  "item_checks": sum(items) / len(items) if items else 1.0,
                                  "all_passed": float(row["passed"])}})
    return units


def intents_table(result: dict[str, Any]) -> str:
    lines = [f"{'reader':<7}{'split':<6}{'check':<26}{'pass rate':>10}  {'95% interval':<18}{'checks':>7}", "-" * 77]
    readers = result.get("readers") or {result.get("ranker", "rules"): {"splits": result["splits"]}}
    for reader, run in readers.items():
        for split, summary in run["splits"].items():
            for kind, value in summary["checks"].items():
                low, high = value["ci95"]
                lines.append(f"{reader:<7}{split:<6}{kind:<26}{value['pass_rate']:>10.3f}  [{low:.3f}, {high:.3f}]    "
                             f"{value['checks']:>7}")
            lines.append(f"{reader:<7}{split:<6}{summary['cases']} cases ({summary['cases_all_passed']} all passed), "
                         f"{summary['families']} phrasing families")
    for reader, splits in result.get("paired", {}).items():
        for split, table in splits.items():
            for metric, d in table.items():
                low, high = d["ci95"]
                lines.append(f"{reader} - {next(iter(readers))} ({split}, per-case {metric} checks): "
                             f"{d['difference']:+.3f} [{low:+.3f}, {high:+.3f}] over {d['cases']} cases")
    lines.append(f"{result['dataset']} / intents: {result['seconds']} s")
    return "\n".join(lines)


def run_intents(settings: Settings, dataset: str, *, tuned: dict[str, Any], cases_file: Path | None = None,
                limit: int | None = None, bootstrap: int = 1000, progress: bool = True,
                readers: Sequence[str] = ("rules",), split: str | None = None) -> tuple[dict[str, Any], Path]:
    """`recagent eval --protocol intents`: the run, its folder (report, rows, units) and the result."""
    from eval.report import write_run

    result, rows = evaluate_intents(settings, dataset, cases_file, limit, progress, bootstrap, readers, split)
    result["tuned"] = tuned
    folder = write_run(result, rows, intent_units(rows), settings.runs_dir, name=f"{Path(dataset).name}_intents")
    result["saved_to"] = str(folder / "result.json")
    return result, folder
