"""Conversational evaluation on ReDial, the protocol of He et al. (2023).

At each recommender turn that mentions movies, the dialogue so far is replayed through the chat's own
ConversationAgent (the same state tracking, retrieval and reranking as a chat turn): seeker turns are
read as user messages, earlier recommender turns are recorded as the assistant's replies. The agent's
top-K is then scored against the movies that turn mentions, one sample per mentioned movie, in two
variants: `all` (every mentioned movie, the output as it is) and `new_items` (only movies not mentioned
earlier in the dialogue, with earlier-mentioned movies removed from the output).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.assemble import Agent, build_agent, index_with_sources, make_configured_llm
from agent.dialogue import ConversationAgent
from agent.events import TurnRequest
from agent.llm.base import LLM
from agent.settings import Settings
from core.errors import InvalidRequest
from eval.harness import git_commit
from eval.stats import bootstrap_interval, standard_error
from index.dataset import Dataset
from index.embedder import Embedder
from index.loaders import resolve_dataset_folder
from index.redial import Dialogue, read_dialogues, render, split_files
from index.transfer import load_with_transfer

CUTOFFS = (1, 5, 10, 20)
CRS_RANKERS = ("fused", "llm", "comention")
SPLITS = {"validation": "validation", "valid": "validation", "test": "test", "train": "train"}


@dataclass(frozen=True)
class CrsCase:
    """One recommender turn to score: the movies it mentions and those mentioned before it."""

    dialogue: str
    turn: int
    targets: tuple[str, ...]
    earlier: frozenset[str]

    @property
    def new_targets(self) -> tuple[str, ...]:
        return tuple(t for t in self.targets if t not in self.earlier)


def crs_cases(dialogue: Dialogue, catalog: Callable[[str], bool]) -> list[CrsCase]:
    """The dialogue's recommender turns that mention catalog movies, in order."""
    cases = []
    earlier: set[str] = set()
    for index, turn in enumerate(dialogue.turns):
        targets = tuple(m for m in turn.movies if catalog(m))
        if turn.role == "recommender" and targets:
            cases.append(CrsCase(dialogue.id, index, targets, frozenset(earlier)))
        earlier.update(turn.movies)
    return cases


@dataclass(frozen=True)
class CrsOutput:
    case: CrsCase
    ranked: list[str]  # the agent's order, best first
    seconds: float
    reranked: bool


def replay_requests(conversations: ConversationAgent, dialogue: Dialogue, titles: dict[str, str], depth: int
                    ) -> Iterator[tuple[CrsCase, TurnRequest]]:
    """Run the dialogue through the agent's state tracking; at every recommender turn to score, yield the
    request the agent would answer (the consumer ranks it), then record the recommender's turn."""
    in_catalog = conversations.pipeline.index.entries.__contains__
    to_score = {c.turn: c for c in crs_cases(dialogue, in_catalog)}
    state = conversations.create()
    last_message: str | None = None
    try:
        for index, turn in enumerate(dialogue.turns):
            text = render(turn.text, {**titles, **dialogue.titles})
            if turn.role == "seeker":
                conversations.read_message(state, text)
                last_message = text
                continue
            case = to_score.get(index)
            if case is not None:
                yield case, conversations.request(state, last_message, k=depth)
            conversations.record_reply(state, text, [m for m in turn.movies if in_catalog(m)])
    finally:
        conversations.store.delete(state.id)


def replay(conversations: ConversationAgent, dialogue: Dialogue, titles: dict[str, str], depth: int
           ) -> list[CrsOutput]:
    """The agent's ranking (retrieval, then the reranker when there is one) at every turn to score."""
    pipeline = conversations.pipeline
    outputs = []
    for case, request in replay_requests(conversations, dialogue, titles, depth):
        started = time.perf_counter()
        retrieved = pipeline.retrieve(request)
        order, reranked, _ = pipeline.rerank(request, retrieved)
        outputs.append(CrsOutput(case, order[:depth], time.perf_counter() - started, reranked))
    return outputs


def hits(output: CrsOutput, variant: str, k: int) -> list[float]:
    """One value per scored target: 1 if it is in the top k of the (variant's) output."""
    if variant == "all":
        top = output.ranked[:k]
        return [float(t in top) for t in output.case.targets]
    top = [i for i in output.ranked if i not in output.case.earlier][:k]
    return [float(t in top) for t in output.case.new_targets]


def crs_metrics(outputs: Sequence[CrsOutput], variant: str, bootstrap: int = 1000, seed: int = 0
                ) -> dict[str, dict[str, Any]]:
    """recall@K per target (He et al.): mean, standard error and a 95% bootstrap interval over targets."""
    out: dict[str, dict[str, Any]] = {}
    for k in CUTOFFS:
        values = np.array([h for o in outputs for h in hits(o, variant, k)])
        low, high = bootstrap_interval(values, bootstrap, seed)
        out[f"recall@{k}"] = {"value": round(float(values.mean()) if len(values) else 0.0, 5),
                              "se": round(standard_error(values), 5), "ci95": [round(low, 5), round(high, 5)]}
    return out


def dialogues_for(folder: Path, split: str, file: Path | None = None) -> list[Dialogue]:
    if file is not None:
        return read_dialogues(file)
    paths = split_files(folder, SPLITS[split])
    if not paths:
        raise FileNotFoundError(f"no {split} dialogues in {folder}")
    return [d for p in paths for d in read_dialogues(p)]


def run_dialogues(agent: Agent, dialogues: Sequence[Dialogue], titles: dict[str, str], depth: int = 40,
                  progress: bool = True) -> list[CrsOutput]:
    """Replay every dialogue, with a progress bar that shows the running recall@10 (all variant)."""
    outputs: list[CrsOutput] = []
    found = total = 0
    with tqdm(dialogues, desc="replaying dialogues", unit="dialogue", disable=not progress) as bar:
        for dialogue in bar:
            for output in replay(agent.conversations, dialogue, titles, depth):
                outputs.append(output)
                scored = hits(output, "all", 10)
                found += int(sum(scored))
                total += len(scored)
            bar.set_postfix(turns=len(outputs), recall10=f"{found / max(total, 1):.3f}")
    return outputs


def output_rows(outputs: Sequence[CrsOutput]) -> list[dict[str, Any]]:
    """One JSON-able row per scored turn, for the run's raw results."""
    return [{"dialogue": o.case.dialogue, "turn": o.case.turn, "targets": list(o.case.targets),
             "new_targets": list(o.case.new_targets), "earlier": sorted(o.case.earlier), "ranked": o.ranked,
             "reranked": o.reranked, "seconds": round(o.seconds, 4),
             **{f"hits@{k}": sum(hits(o, "all", k)) for k in CUTOFFS},
             **{f"new_hits@{k}": sum(hits(o, "new_items", k)) for k in CUTOFFS}} for o in outputs]


def prepare_crs(settings: Settings, dataset: str, llm: LLM | None = None, progress: bool = True,
                embedder: Embedder | None = None) -> tuple[Agent, Dataset, dict[str, Dataset]]:
    """Index the dataset's training part (the catalog, the training dialogues and the configured transfer)
    under a namespace named by its content, and the agent over it."""
    data, views = load_with_transfer(dataset, settings.data)
    fingerprint = data.content_hash() + "".join(v.content_hash() for v in views.values())
    train = replace(data, name=f"{data.name}-crs-{hashlib.sha256(fingerprint.encode()).hexdigest()[:8]}")
    index_with_sources(settings, train, views, embedder, progress=progress, purpose="eval")
    return build_agent(settings, namespace=train.name, llm=llm, embedder=embedder), data, views


def evaluate_crs(settings: Settings, dataset: str, split: str, ranker: str = "fused", dialogues: Path | None = None,
                 limit: int | None = None, llm: LLM | None = None, progress: bool = True, bootstrap: int = 1000,
                 embedder: Embedder | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Index the dataset's training part (with its configured transfer), replay the split's dialogues (or
    a given ReDial-format file) through the conversational agent, and score both variants.

    `ranker` is 'fused' (the agent without an LLM: the retriever's order), 'llm' (the configured LLM
    reranks, as in the chat) or 'comention' (the baseline of eval/comention.py, no agent). Returns the result
    (the shape of the other protocols' results) and one row per scored turn.
    """
    if ranker not in CRS_RANKERS:
        raise InvalidRequest(f"the crs protocol's rankers: {', '.join(CRS_RANKERS)} (got {ranker!r})")
    if ranker == "comention":
        return _evaluate_comention(settings, dataset, split, dialogues, limit, progress, bootstrap)
    if ranker == "llm":
        llm = llm or make_configured_llm(settings)
        if llm is None:
            raise InvalidRequest("the llm ranker needs an LLM (llm.backend is 'none')")
    agent, data, views = prepare_crs(settings, dataset, llm if ranker == "llm" else None, progress, embedder)
    folder = resolve_dataset_folder(dataset, settings.data.data_dir)
    chosen = dialogues_for(folder, split, dialogues)
    chosen = chosen[:limit] if limit else chosen
    titles = {item_id: item.title for item_id, item in data.items.items()}
    started = time.perf_counter()
    outputs = run_dialogues(agent, chosen, titles, progress=progress)
    seconds = time.perf_counter() - started
    return _result(settings, dataset, split, ranker, dialogues, limit, chosen, outputs, seconds, bootstrap,
                   agent.describe(), data, views)


def _evaluate_comention(settings: Settings, dataset: str, split: str, dialogues: Path | None, limit: int | None,
                        progress: bool, bootstrap: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The co-mention baseline over the same cases (the catalog's movies, the training dialogues' counts)."""
    from eval.comention import ComentionModel

    data, views = load_with_transfer(dataset, settings.data)
    folder = resolve_dataset_folder(dataset, settings.data.data_dir)
    chosen = dialogues_for(folder, split, dialogues)
    chosen = chosen[:limit] if limit else chosen
    started = time.perf_counter()
    model = ComentionModel.fit(data.interactions, list(data.items))
    outputs = []
    for dialogue in tqdm(chosen, desc="co-mention baseline", unit="dialogue", disable=not progress):
        for case in crs_cases(dialogue, data.items.__contains__):
            turn_started = time.perf_counter()
            ranked = model.rank(sorted(case.earlier), 40)
            outputs.append(CrsOutput(case, ranked, time.perf_counter() - turn_started, False))
    seconds = time.perf_counter() - started
    describe = {"ranker": "comention", "source": "mention and co-mention counts of the training dialogues",
                "prompts": {}}
    return _result(settings, dataset, split, "comention", dialogues, limit, chosen, outputs, seconds, bootstrap,
                   describe, data, views)


def _result(settings: Settings, dataset: str, split: str, ranker: str, dialogues: Path | None, limit: int | None,
            chosen: Sequence[Dialogue], outputs: Sequence[CrsOutput], seconds: float, bootstrap: int,
            describe: dict[str, Any], data: Dataset, views: dict[str, Dataset]
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result = {"dataset": dataset, "protocol": "crs", "ranker": ranker, "split": SPLITS.get(split, split),
              "dialogues_file": str(dialogues) if dialogues else None, "users": len(chosen),
              "dialogues": len(chosen), "subset": bool(limit), "turns": len(outputs),
              "targets": sum(len(o.case.targets) for o in outputs),
              "targets_new_items": sum(len(o.case.new_targets) for o in outputs),
              "metrics": crs_metrics(outputs, "all", bootstrap), "metrics_new_items": crs_metrics(outputs, "new_items",
                                                                                                    bootstrap),
              "reranked_turns": sum(o.reranked for o in outputs), "agent": describe,
              "counts": {"items": len(data.items), "train_interactions": len(data.interactions)},
              "notes": data.notes, "sources": sorted(views), "seconds": round(seconds, 2),
              "seconds_per_turn": round(seconds / max(len(outputs), 1), 4), "data_hash": data.content_hash(),
              "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
    return result, output_rows(outputs)
