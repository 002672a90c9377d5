"""Evaluation runs end to end, as `recagent eval` starts them: score rankers on a protocol (`run_protocol`) or
compare prompt and model variants (`run_variants`), and write each run's folder under runs/ (eval.report).

The caller passes the settings with the dataset's tuned values already applied and what was applied (`tuned`),
which every record carries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.settings import Settings
from core.errors import InvalidRequest
from eval.report import write_run


def recorded_prompts(ids: Sequence[str]) -> dict[str, str]:
    """The text of each prompt file version a run used ("rerank_listwise.v2"), for its record."""
    from prompts.loader import load_prompt

    texts = {}
    for prompt_id in ids:
        name, _, version = prompt_id.rpartition(".v")
        try:
            texts[prompt_id] = load_prompt(name, int(version)).template
        except (ValueError, Exception):  # a prompt from a --prompt-dir is recorded by eval prompts itself
            continue
    return texts


def run_protocol(settings: Settings, dataset: str, protocol: str, ranker: str, split: str, *, tuned: dict[str, Any],
                 limit: int | None = None, bootstrap: int = 1000, dialogues: Path | None = None,
                 progress: bool = True) -> tuple[list[dict[str, Any]], Path]:
    """Score `ranker` ("all": every available retriever) on the protocol's split; one run folder for them all.
    Each result gets `tuned` and `saved_to`; returns the results and the folder."""
    if protocol == "crs":
        from eval.crs import evaluate_crs
        from eval.units import crs_units

        chosen = "fused" if ranker in ("all", "fused") else ranker
        result, rows = evaluate_crs(settings, dataset, split, chosen, dialogues, limit, progress=progress,
                                    bootstrap=bootstrap)
        result["tuned"] = tuned
        folder = write_run(result, rows, crs_units(rows), settings.runs_dir,
                           prompts=recorded_prompts(list((result["agent"]["prompts"] or {}).values())))
        result["saved_to"] = str(folder / "result.json")
        return [result], folder
    from eval.harness import available_rankers, evaluate, prepare

    prepared = prepare(settings, dataset, protocol, progress=progress)
    rankers = available_rankers(settings) if ranker == "all" else [ranker]
    results, rows = [], []
    for name in rankers:
        ranker_rows: list[dict[str, Any]] = []
        result = evaluate(prepared, name, split, settings, dataset, progress=progress, bootstrap=bootstrap,
                          limit=limit, rows=ranker_rows)
        result["tuned"] = tuned
        results.append(result)
        rows += ranker_rows
    prompts = recorded_prompts([r["llm"]["prompt"] for r in results if "llm" in r])
    record = results[0] if len(results) == 1 else {
        **{k: results[0][k] for k in ("dataset", "protocol", "split", "users", "data_hash", "git_commit",
                                      "settings")}, "ranker": "all", "results": results}
    folder = write_run(record, rows, rows, settings.runs_dir, prompts=prompts)
    for result in results:
        result["saved_to"] = str(folder / "result.json")
    return results, folder


def run_variants(settings: Settings, dataset: str, protocol: str, split: str, variants_spec: str,
                 models: str | None = None, *, tuned: dict[str, Any], limit: int | None = None, requests: int = 4,
                 benchmark: bool = False, progress: bool = True) -> tuple[dict[str, Any], Path]:
    """Compare prompt/model variants (eval.variants; the first is the baseline) on the same cases through one
    cached LLM: each variant's summary and its paired bootstrap difference to the baseline on every metric.
    Reply variants with `benchmark`: the dataset's intents cases and 60 ReDial seeker openings besides the
    generated requests (eval.reply_eval); `limit` then keeps an even sample of that many requests."""
    from agent.assemble import make_configured_llm
    from eval.harness import git_commit, prepare, rank_cases
    from eval.llm_cache import CachedLLM
    from eval.prompt_eval import rerank_rows, summarize_variant, with_request_metrics
    from eval.reply_eval import build_requests, diversity, reply_rows
    from eval.stats import paired_bootstrap
    from eval.variants import kind_of, parse_variants, prompt_texts, variant_agent

    variants = parse_variants(variants_spec, models, settings.llm.adapters)
    kind = kind_of(next((v.prompt for v in variants if v.prompt), None))
    llm = make_configured_llm(settings)
    if llm is None:
        raise InvalidRequest("eval prompts needs an LLM (llm.backend is 'none')")
    started = time.perf_counter()
    prepared = prepare(settings, dataset, protocol, progress=progress)
    cases = prepared.split.cases(split)
    cases = cases[:limit] if limit and not (benchmark and kind == "reply") else cases
    cached = CachedLLM(llm, settings.runs_dir / "cache" / "llm.sqlite")
    agents = {v.label: variant_agent(prepared.agent, settings, v, kind, cached) for v in variants}
    rows: list[dict[str, Any]] = []
    if kind == "rerank":
        shown = [list(c.candidates or []) for c in cases] if cases and cases[0].candidates is not None else \
            rank_cases(prepared.agent, cases, "fused", k=settings.rerank.candidates, progress=progress)
        for label, agent in agents.items():
            rows += rerank_rows(agent, cached, label, cases, shown, progress)
    else:
        asked = build_requests(prepared.agent, cases, per_kind=requests, dataset=dataset,
                               intents=1000 if benchmark else 0, redial=60 if benchmark else 0,
                               data_dir=settings.data.data_dir)
        if limit and benchmark and len(asked) > limit:  # an even sample of the set, every kind in it
            step = len(asked) / limit
            asked = [asked[int(n * step)] for n in range(limit)]
        for label, agent in agents.items():
            rows += reply_rows(agent, label, asked, progress)
    units = with_request_metrics(rows)
    labels = list(agents)
    summaries = {}
    for label in labels:
        mine = [r for r in rows if r["entry"] == label]
        agent = agents[label]
        summaries[label] = {"prompt": (agent.prompts or {}).get(kind), "model": llm.name,
                            "adapter": agent.rerank_adapter if kind == "rerank" else agent.reply_adapter,
                            **summarize_variant(mine)}
        if kind == "reply":
            summaries[label]["distinct_2_across"] = diversity(mine)
    differences = []
    base = {u["unit"]: u for u in units if u["entry"] == labels[0]}
    for label in labels[1:]:
        other = {u["unit"]: u for u in units if u["entry"] == label}
        shared = [unit for unit in base if unit in other]
        metrics = list(dict.fromkeys(m for u in shared for m in base[u]["metrics"]))
        for metric in metrics:  # over the units both have it for (acknowledged: requests with constraints)
            both = [u for u in shared if metric in base[u]["metrics"] and metric in other[u]["metrics"]]
            if not both:
                continue
            d = paired_bootstrap([base[u]["metrics"][metric] for u in both],
                                 [other[u]["metrics"][metric] for u in both])
            differences.append({"entry": label, "baseline": labels[0], "metric": metric, **d.as_dict()})
    result = {"dataset": dataset, "protocol": prepared.split.protocol, "split": split, "ranker": "variants",
              "kind": kind, "users": len(cases), "subset": bool(limit), "baseline": labels[0],
              "variants": summaries, "differences": differences, "tuned": tuned,
              "llm_calls": {"computed": sum(not c.cached for c in cached.calls),
                            "cached": sum(c.cached for c in cached.calls)},
              "seconds": round(time.perf_counter() - started, 2), "data_hash": prepared.data_hash,
              "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
    folder = write_run(result, rows, units, settings.runs_dir, prompts=prompt_texts(agents, kind),
                       name=f"{dataset}_{prepared.split.protocol}_prompts_{split}")
    cached.close()
    result["saved_to"] = str(folder / "result.json")
    result["differences"] = differences  # write_run's forest covers the headline metrics; keep all of them
    return result, folder
