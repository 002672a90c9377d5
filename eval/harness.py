"""Run rankers over a protocol's cases and score them, each result with what produced it (eval.runs saves it)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.assemble import Agent, build_agent, index_dataset, make_configured_llm
from agent.llm.base import LLM
from agent.rerank import RerankList, RerankResult, blend_with_retriever
from agent.settings import Settings
from core.errors import InvalidRequest
from eval.metrics import per_user_metrics, summarize
from eval.protocols import PROTOCOLS, Case, Split
from eval.units import user_rows
from index.embedder import Embedder
from index.loaders import load_dataset

RANKERS = ("popularity", "item2item", "text", "collab", "sequential", "fused", "linear")  # retrievers; "llm" reranks


@dataclass
class Prepared:
    split: Split
    agent: Agent  # over the protocol's training part, without an LLM
    data_hash: str


def prepare(settings: Settings, dataset: str, protocol: str, progress: bool = True,
            embedder: Embedder | None = None) -> Prepared:
    """Load the dataset, apply the protocol and build (or reuse) the index of its training part."""
    if protocol not in PROTOCOLS:
        raise InvalidRequest(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    data = load_dataset(dataset, settings.data.data_dir)
    split = PROTOCOLS[protocol](data)
    index_dataset(settings, split.train, embedder, progress=progress, purpose="eval")
    agent = build_agent(settings, namespace=split.train.name, llm=None, embedder=embedder)
    return Prepared(split, agent, data.content_hash())


def rank_cases(agent: Agent, cases: Sequence[Case], ranker: str, k: int = 20,
               progress: bool = True) -> list[list[str]]:
    """Each case's top-k by a retriever; a case with fixed candidates ranks only those."""
    rankings = []
    for case in tqdm(cases, desc=f"ranking ({ranker})", unit="user", disable=not progress):
        found = agent.recommender.candidates(history=case.history, timestamps=case.timestamps, k=k, ranker=ranker,
                                             only=case.candidates)
        rankings.append([c.id for c in found])
    return rankings


def llm_agent(prepared: Prepared, llm: LLM) -> Agent:
    """The evaluation agent with an LLM (and its adapters and prompts), sharing the loaded index."""
    base = prepared.agent
    return build_agent(base.settings, llm=llm, index=base.index, encoder=base.encoder)


BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class Reranked:
    """What the LLM ranker made of a set of cases."""

    rankings: list[list[str]]  # the evaluated lists: the LLM's scores blended with the retriever's order
    shown: list[list[str]]  # the lists as the LLM saw them
    retriever: list[list[str]]  # the same candidates in the retriever's order (`retriever_for`)
    raw: list[RerankResult]  # the LLM's own results, before the blend
    blend: float  # the weight of the retriever's order in `rankings`


def rerank_cases(agent: Agent, cases: Sequence[Case], progress: bool = True) -> Reranked:
    """The LLM ranker: the fused top-N (or the case's fixed candidates) reordered by the LLM and blended with the
    retriever's order of the same items.

    Fixed candidates are shown as the protocol shuffled them and blended only with a `rerank.blend` set
    explicitly: the adapter's own blend was chosen on the retriever's top N, not on random candidates. Their
    retriever order is the linear ranker's when it has weights (it was fitted for such lists), else fused.
    """
    assert agent.reranker is not None and agent.llm is not None
    fixed = fixed_candidates(cases)
    retriever = rank_cases(agent, cases, retriever_for(agent.settings, fixed),
                           k=len(cases[0].candidates or []) if fixed else agent.settings.rerank.candidates,
                           progress=progress)
    shown = [list(c.candidates or []) for c in cases] if fixed else retriever
    with tqdm(total=len(cases), desc=f"reranking ({agent.llm.name})", unit="user", disable=not progress) as bar:
        results = agent.reranker.rerank([RerankList(c.history, s) for c, s in zip(cases, shown, strict=True)],
                                        bar.update, blend=0.0)
    weight = rerank_blend(agent, fixed)
    return Reranked([blend_with_retriever(r, o, weight).order for r, o in zip(results, retriever, strict=True)],
                    shown, retriever, results, weight)


def retriever_for(settings: Settings, fixed: bool) -> str:
    """The retriever whose order the LLM's scores are blended with: the linear ranker on fixed lists once it
    has weights (`recagent tune --protocol candidates20`), the fused one otherwise."""
    return "linear" if fixed and settings.retrieval.linear_weights else "fused"


def available_rankers(settings: Settings) -> list[str]:
    """The retrievers `--ranker all` scores: the linear one only once it has weights (else it is fused)."""
    return [r for r in RANKERS if r != "linear" or settings.retrieval.linear_weights]


def fixed_candidates(cases: Sequence[Case]) -> bool:
    """Whether the protocol gives each case its candidates (candidates20) instead of the retriever's top N."""
    return bool(cases) and cases[0].candidates is not None


def rerank_blend(agent: Agent, fixed: bool) -> float:
    """The weight of the retriever's order in the evaluated ranking (see rerank_cases)."""
    if agent.reranker is None or (fixed and "blend" not in agent.settings.rerank.model_fields_set):
        return 0.0
    return agent.reranker.blend


def blend_search(results: Sequence[RerankResult], shown: Sequence[Sequence[str]], cases: Sequence[Case],
                 grid: Sequence[float] = BLEND_GRID) -> dict[str, Any]:
    """ndcg@10 of the LLM's scores blended with the retriever's order at each weight of `grid` (no new LLM
    call): on the validation split, where the blend is chosen (the adapter's manifest keeps it)."""
    ndcg = {}
    for weight in grid:
        orders = [blend_with_retriever(r, s, weight).order for r, s in zip(results, shown, strict=True)]
        ndcg[str(weight)] = round(float(per_user_metrics(orders, [{c.target} for c in cases])["ndcg@10"].mean()), 5)
    best = max(grid, key=lambda w: (ndcg[str(w)], -w))
    return {"ndcg@10": ndcg, "best": best}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _metrics(rankings: Sequence[Sequence[str]], cases: Sequence[Case], bootstrap: int) -> dict[str, Any]:
    summary = summarize(per_user_metrics(rankings, [{c.target} for c in cases]), samples=bootstrap)
    return {key: {"value": round(v["mean"], 5), "ci95": [round(v["ci_low"], 5), round(v["ci_high"], 5)]}
            for key, v in summary.items()}


def evaluate(prepared: Prepared, ranker: str, split: str, settings: Settings, dataset: str,
             progress: bool = True, bootstrap: int = 1000, limit: int | None = None,
             llm: LLM | None = None, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score one ranker on one split. `limit` takes the first N users (a subset, said in the result).

    `rows`, when given, receives one row per user (its ranking and metrics) for the run's report.
    """
    if ranker == "linear" and not prepared.agent.settings.retrieval.linear_weights:
        raise InvalidRequest("the linear ranker has no weights for this dataset: run recagent tune --protocol "
                             "candidates20 first (without them it would be the fused ranker under another name)")
    cases = prepared.split.cases(split)[:limit] if limit else prepared.split.cases(split)
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if ranker == "llm":
        llm = llm or make_configured_llm(settings)
        if llm is None:
            raise InvalidRequest("the llm ranker needs an LLM (llm.backend is 'none')")
        agent = llm_agent(prepared, llm)
        reranked = rerank_cases(agent, cases, progress)
        rankings, shown, retriever = reranked.rankings, reranked.shown, reranked.retriever
        inside = [i for i, (c, s) in enumerate(zip(cases, shown, strict=True)) if c.target in s]
        extra = {"retriever": retriever_for(agent.settings, fixed_candidates(cases)),
                 "llm": {"backend": settings.llm.backend, "model": llm.name, "adapter": agent.rerank_adapter,
                         "method": settings.rerank.method, "prompt": agent.prompts["rerank"],
                         "permutations": settings.rerank.permutations,
                         "blend": reranked.blend},
                 "users_target_in_candidates": len(inside),
                 "metrics_target_in_candidates": _metrics([rankings[i] for i in inside],
                                                          [cases[i] for i in inside], bootstrap),
                 "retriever_metrics_target_in_candidates": _metrics([retriever[i] for i in inside],
                                                                    [cases[i] for i in inside], bootstrap)}
        if split == "validation":  # where a blend may be chosen
            extra["blend_search"] = blend_search(reranked.raw, retriever, cases)
    else:
        rankings = rank_cases(prepared.agent, cases, ranker, k=20, progress=progress)
    seconds = time.perf_counter() - started
    if rows is not None:
        user = user_rows(ranker, cases, rankings, shown if ranker == "llm" else None)
        if ranker == "llm":  # what any other blend needs, offline: the LLM's own scores and the retriever's order
            for row, result, order in zip(user, reranked.raw, retriever, strict=True):
                row.update({"llm_scores": {item: float(result.scores[item]) for item in order},
                            "retriever_order": list(order)})
        rows.extend(user)
    return {"dataset": dataset, "protocol": prepared.split.protocol, "ranker": ranker, "split": split,
            "users": len(cases), "subset": bool(limit), "metrics": _metrics(rankings, cases, bootstrap), **extra,
            "counts": prepared.split.counts, "seconds": round(seconds, 2), "data_hash": prepared.data_hash,
            "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
