"""Tuning the fusion for conversations: `recagent tune --protocol crs`.

The dialogues are replayed through the conversation agent once; at each turn to score, every generator's
list (the dataset's own and its sources', e.g. ml-latest-small.collab) is kept for the request the agent
makes. Coordinate ascent then changes one weight (or the RRF constant, or the least weight of the query
text) at a time, scoring every value of it at once from the kept lists (eval.tuning.target_ranks), until a
full round changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.assemble import Agent
from agent.retrieval import BASE_GENERATORS, Ranked, fused_lists
from eval.crs import CrsCase, replay_requests
from eval.tuning import Setting, target_ranks
from index.redial import Dialogue

VALUES = (0.0, 0.25, 0.5, 1.0, 2.0)
RRF_KS = (10.0, 20.0, 60.0)
QUERY_WEIGHTS = (0.0, 0.3, 1.0)


@dataclass(frozen=True)
class TurnLists:
    case: CrsCase
    lists: dict[str, Ranked]
    has_query: bool
    has_history: bool


def generator_names(agent: Agent) -> list[str]:
    names = list(BASE_GENERATORS)
    for source in agent.recommender.context.sources:
        names += [f"{source}.{g}" for g in BASE_GENERATORS if g != "text"]  # a source shares the catalog's text
    return names


def collect(agent: Agent, dialogues: Sequence[Dialogue], titles: dict[str, str], progress: bool = True
            ) -> list[TurnLists]:
    recommender = agent.recommender
    every = {name: 1.0 for name in generator_names(agent)}
    out = []
    for dialogue in tqdm(dialogues, desc="collecting candidate lists", unit="dialogue", disable=not progress):
        for case, request in replay_requests(agent.conversations, dialogue, titles, 40):
            req = recommender.request(user=request.user, history=list(request.history) or None, query=request.query,
                                      filters=request.filters, exclude=request.exclude)
            out.append(TurnLists(case, fused_lists(recommender.context, req, every), bool(req.query),
                                 bool(req.history)))
    return out


def effective(setting: Setting, query_weight: float, turn: TurnLists) -> Setting:
    """The weights the fused generator uses for this turn (retrieval.fusion_weights' rules)."""
    weights = dict(setting.weights)
    if turn.has_query:
        weights["text"] = max(weights.get("text", 0.0), query_weight)
    if not turn.has_history:
        weights = {"text": weights.get("text", 0.0) if turn.has_query else 0.0, "popularity": 0.2}
    return Setting(weights, setting.rrf_k)


def score(turns: Sequence[TurnLists], candidates: Sequence[tuple[Setting, float]], k: int = 10) -> np.ndarray:
    """recall@k over all targets (He et al.'s headline) for each (setting, query weight)."""
    hits = np.zeros(len(candidates))
    total = 0
    for turn in turns:
        settings = [effective(s, q, turn) for s, q in candidates]
        for target in turn.case.targets:
            hits += target_ranks(turn.lists, target, settings) < k
            total += 1
    return hits / max(total, 1)


def tune_crs(turns: Sequence[TurnLists], names: Sequence[str], start: dict[str, float], rrf_k: float,
             query_weight: float, rounds: int = 3) -> dict[str, Any]:
    started = time.perf_counter()
    weights = {n: float(start.get(n, 0.0)) for n in names}
    best = float(score(turns, [(Setting(weights, rrf_k), query_weight)])[0])
    initial = best
    for _ in range(rounds):
        changed = False
        for name in [*names, "rrf_k", "query_weight"]:
            options = RRF_KS if name == "rrf_k" else QUERY_WEIGHTS if name == "query_weight" else VALUES
            candidates = []
            for value in options:
                w = dict(weights) if name in ("rrf_k", "query_weight") else {**weights, name: value}
                candidates.append((Setting(w, value if name == "rrf_k" else rrf_k),
                                   value if name == "query_weight" else query_weight))
            scores = score(turns, candidates)
            pick = int(np.argmax(scores))
            if scores[pick] > best + 1e-9:
                best, changed = float(scores[pick]), True
                setting, query_weight = candidates[pick]
                weights, rrf_k = dict(setting.weights), setting.rrf_k
        if not changed:
            break
    return {"metric": "recall@10", "start": round(initial, 5), "score": round(best, 5),
            "fusion_weights": {n: w for n, w in weights.items() if w > 0}, "rrf_k": rrf_k,
            "query_weight": query_weight, "turns": len(turns), "targets": sum(len(t.case.targets) for t in turns),
            "seconds": round(time.perf_counter() - started, 2)}
