"""`recagent eval` (protocol runs, `eval prompts`, `eval report`) and `recagent tune`.

Every run writes a folder under runs/ (eval.report). Tuned settings for the dataset apply unless set
explicitly (agent.tuned); the run records which were applied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.options import settings_from


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="run", choices=["run", "prompts", "report"],
                   help="run a protocol (default), compare prompt/model variants, or lay saved runs side by side")
    p.add_argument("runs", nargs="*", type=Path, help="run folders (eval report)")
    p.add_argument("--dialogues", type=Path, help="crs protocol: score this ReDial-format file instead of a split")
    p.add_argument("--variants", help="eval prompts: e.g. rerank_listwise@2,rerank_listwise@3 (the first is the "
                                      "baseline); a model name or PROMPT@N:MODEL also works")
    p.add_argument("--models", help="eval prompts: base and/or adapter names, crossed with every prompt variant")
    p.add_argument("--prompt-dir", type=Path, help="extra prompt files (NAME.vN.yaml) searched before prompts/")
    p.add_argument("--requests", type=int, default=4, help="eval prompts (reply): requests of each kind")
    p.add_argument("--fail-if-worse", metavar="METRIC",
                   help="eval prompts: exit 1 when a variant is significantly worse than the baseline on METRIC")


def _split(args: argparse.Namespace) -> str:
    return "validation" if args.split == "valid" else args.split


def _prompt_texts(ids: Sequence[str]) -> dict[str, str]:
    from prompts.loader import load_prompt

    texts = {}
    for prompt_id in ids:
        name, _, version = prompt_id.rpartition(".v")
        try:
            texts[prompt_id] = load_prompt(name, int(version)).template
        except (ValueError, Exception):  # a prompt from a --prompt-dir is recorded by eval prompts itself
            continue
    return texts


def eval_command(args: argparse.Namespace) -> int:
    if args.action == "report":
        return report_command(args)
    if args.action == "prompts":
        return prompts_command(args)
    return run_command(args)


def _settings(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    from agent.tuned import with_tuned

    settings = settings_from(args)
    if getattr(args, "prompt_dir", None) is not None:
        settings = settings.model_copy(update={"prompt_dir": args.prompt_dir})
    dataset = args.dataset or settings.data.dataset
    settings, tuned = with_tuned(settings, dataset)
    return settings, dataset, tuned


def run_command(args: argparse.Namespace) -> int:
    from eval.report import write_run

    settings, dataset, tuned = _settings(args)
    progress = not args.quiet
    if args.protocol == "crs":
        from eval.crs import evaluate_crs
        from eval.units import crs_units

        ranker = "fused" if args.ranker in ("all", "fused") else args.ranker
        result, rows = evaluate_crs(settings, dataset, args.split, ranker, args.dialogues, args.limit,
                                    progress=progress, bootstrap=args.bootstrap)
        result["tuned"] = tuned
        folder = write_run(result, rows, crs_units(rows), settings.runs_dir,
                           prompts=_prompt_texts(list((result["agent"]["prompts"] or {}).values())))
        result["saved_to"] = str(folder / "result.json")
        results = [result]
    else:
        from eval.harness import available_rankers, evaluate, prepare

        prepared = prepare(settings, dataset, args.protocol, progress=progress)
        rankers = available_rankers(settings) if args.ranker == "all" else [args.ranker]
        results, rows, units = [], [], []
        for ranker in rankers:
            ranker_rows: list[dict[str, Any]] = []
            result = evaluate(prepared, ranker, _split(args), settings, dataset, progress=progress,
                              bootstrap=args.bootstrap, limit=args.limit, rows=ranker_rows)
            result["tuned"] = tuned
            results.append(result)
            rows += ranker_rows
            units += ranker_rows
        prompts = _prompt_texts([r["llm"]["prompt"] for r in results if "llm" in r])
        record = results[0] if len(results) == 1 else {
            **{k: results[0][k] for k in ("dataset", "protocol", "split", "users", "data_hash", "git_commit",
                                          "settings")}, "ranker": "all", "results": results}
        folder = write_run(record, rows, units, settings.runs_dir, prompts=prompts)
        for result in results:
            result["saved_to"] = str(folder / "result.json")
    if args.format == "json":
        for result in results:
            print(json.dumps(result))
    elif args.protocol == "crs":
        print(_crs_table(results[0]))
    else:
        print(_eval_table(results))
    print(f"report: {folder / 'report.html'}", file=sys.stderr)
    return 0


def _eval_table(results: list[dict[str, Any]]) -> str:
    keys = [f"{m}@{k}" for k in (1, 5, 10, 20) for m in ("recall", "ndcg") if f"{m}@{k}" in results[0]["metrics"]]
    header = f"{'ranker':<12}" + "".join(f"{k:>12}" for k in keys)
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['ranker']:<12}" + "".join(f"{r['metrics'][k]['value']:>12.4f}" for k in keys))
    first = results[0]
    lines.append(f"{first['dataset']} / {first['protocol']} / {first['split']}: {first['users']} users"
                 f"{' (a subset)' if first.get('subset') else ''}; "
                 f"95% bootstrap intervals are in the saved runs and in --format json")
    return "\n".join(lines)


def _crs_table(result: dict[str, Any]) -> str:
    lines = [f"{'variant':<12}" + "".join(f"{k:>16}" for k in result["metrics"]), "-" * 76]
    for name, key in (("all", "metrics"), ("new_items", "metrics_new_items")):
        lines.append(f"{name:<12}" + "".join(f"{v['value']:>9.4f} ±{v['se']:.3f}" for v in result[key].values()))
    lines.append(f"{result['dataset']} / crs / {result['split']}: {result['dialogues']} dialogues, {result['turns']} "
                 f"turns, {result['targets']} targets ({result['targets_new_items']} new); ± = standard error; "
                 f"{result['seconds']} s")
    return "\n".join(lines)


def prompts_command(args: argparse.Namespace) -> int:
    from agent.assemble import make_configured_llm
    from core.errors import InvalidRequest
    from eval.harness import git_commit, prepare, rank_cases
    from eval.llm_cache import CachedLLM
    from eval.prompt_eval import rerank_rows, summarize_variant, with_request_metrics, worse_than_baseline
    from eval.reply_eval import build_requests, diversity, reply_rows
    from eval.report import write_run
    from eval.stats import paired_bootstrap
    from eval.variants import kind_of, parse_variants, prompt_texts, variant_agent

    if not args.variants:
        raise InvalidRequest("eval prompts needs --variants")
    settings, dataset, tuned = _settings(args)
    progress = not args.quiet
    variants = parse_variants(args.variants, args.models, settings.llm.adapters)
    kind = kind_of(next((v.prompt for v in variants if v.prompt), None))
    llm = make_configured_llm(settings)
    if llm is None:
        raise InvalidRequest("eval prompts needs an LLM (llm.backend is 'none')")
    started = time.perf_counter()
    prepared = prepare(settings, dataset, args.protocol, progress=progress)
    cases = prepared.split.cases(_split(args))
    cases = cases[: args.limit] if args.limit else cases
    cached = CachedLLM(llm, settings.runs_dir / "cache" / "llm.sqlite")
    agents = {v.label: variant_agent(prepared.agent, settings, v, kind, cached) for v in variants}
    rows: list[dict[str, Any]] = []
    if kind == "rerank":
        shown = [list(c.candidates or []) for c in cases] if cases and cases[0].candidates is not None else \
            rank_cases(prepared.agent, cases, "fused", k=settings.rerank.candidates, progress=progress)
        for label, agent in agents.items():
            rows += rerank_rows(agent, cached, label, cases, shown, progress)
    else:
        requests = build_requests(prepared.agent, cases, per_kind=args.requests)
        for label, agent in agents.items():
            rows += reply_rows(agent, cached, label, requests, progress,
                               workers=8 if settings.llm.served else 1)
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
            summaries[label]["distinct_2"] = diversity(mine)
    differences = []
    base = {u["unit"]: u for u in units if u["entry"] == labels[0]}
    for label in labels[1:]:
        other = {u["unit"]: u for u in units if u["entry"] == label}
        shared = [unit for unit in base if unit in other]
        for metric in base[shared[0]]["metrics"] if shared else []:
            d = paired_bootstrap([base[u]["metrics"][metric] for u in shared],
                                 [other[u]["metrics"][metric] for u in shared])
            differences.append({"entry": label, "baseline": labels[0], "metric": metric, **d.as_dict()})
    result = {"dataset": dataset, "protocol": prepared.split.protocol, "split": _split(args), "ranker": "variants",
              "kind": kind, "users": len(cases), "subset": bool(args.limit), "baseline": labels[0],
              "variants": summaries, "differences": differences, "tuned": tuned,
              "llm_calls": {"computed": sum(not c.cached for c in cached.calls),
                            "cached": sum(c.cached for c in cached.calls)},
              "seconds": round(time.perf_counter() - started, 2), "data_hash": prepared.data_hash,
              "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
    folder = write_run(result, rows, units, settings.runs_dir, prompts=prompt_texts(agents, kind),
                       name=f"{dataset}_{prepared.split.protocol}_prompts_{_split(args)}")
    cached.close()
    result["saved_to"] = str(folder / "result.json")
    result["differences"] = differences  # write_run's forest covers the headline metrics; keep all of them
    if args.format == "json":
        print(json.dumps(result))
    else:
        print(_variants_table(result))
    print(f"report: {folder / 'report.html'}", file=sys.stderr)
    if args.fail_if_worse:
        worse = worse_than_baseline(differences, args.fail_if_worse)
        if worse:
            print("significantly worse than the baseline " + labels[0] + ":\n  " + "\n  ".join(worse), file=sys.stderr)
            return 1
    return 0


def _variants_table(result: dict[str, Any]) -> str:
    first = next(iter(result["variants"].values()))
    keys = [k for k in ("ndcg@10", "recall@10", "recall@20", "grounded", "accepted_sentences", "items_mentioned",
                        "length_words") if k in first["metrics"]]
    lines = [f"{'variant':<28}" + "".join(f"{k:>14}" for k in keys) + f"{'latency_s':>11}{'tokens':>8}"]
    for label, s in result["variants"].items():
        lines.append(f"{label:<28}" + "".join(f"{s['metrics'][k]['value']:>14.4f}" for k in keys) +
                     f"{s.get('latency_s', {}).get('mean', 0):>11.3f}{s.get('tokens_per_request') or 0:>8.0f}")
    for d in result["differences"]:
        if d["metric"] in keys:
            lines.append(f"  {d['entry']} − {d['baseline']} {d['metric']}: {d['mean']:+.4f} "
                         f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] p={d['p_value']:.4f}")
    return "\n".join(lines)


def report_command(args: argparse.Namespace) -> int:
    from eval.report import compare_runs

    settings = settings_from(args)
    folder = compare_runs(list(args.runs), settings.runs_dir)
    print(folder / "report.html")
    return 0


def save_tune_run(settings: Any, dataset: str, protocol: str, result: dict[str, Any]) -> Path:
    """The tuning's record under runs/ (what `tuned` files point back to)."""
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    run = settings.runs_dir / f"{stamp}_{Path(dataset).name}_{protocol}_tune.json"
    run.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return Path(run)


def tune_command(args: argparse.Namespace) -> int:
    from agent.tuned import save_tuned, with_tuned
    from eval.harness import git_commit, prepare
    from eval.tuning import tune_fusion_fast

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    if args.protocol == "crs":
        return tune_crs_command(args, settings, dataset)
    if args.protocol == "candidates20":  # compared with the fused ranker as eval runs it: tuned weights applied
        return tune_linear_command(args, with_tuned(settings, dataset)[0], dataset)
    prepared = prepare(settings, dataset, args.protocol, progress=not args.quiet)
    grid: dict[str, Sequence[float]] = {"collab": [1.0], "item2item": [0, 0.3, 0.6], "sequential": [0, 0.5, 1.0, 1.5],
                                        "text": [0, 0.1, 0.3], "popularity": [0, 0.1, 0.2]}
    result = tune_fusion_fast(prepared, grid, [10, 20, 60], max_users=args.max_users, progress=not args.quiet)
    result.update({"dataset": dataset, "protocol": prepared.split.protocol, "data_hash": prepared.data_hash,
                   "git_commit": git_commit()})
    run = save_tune_run(settings, dataset, prepared.split.protocol, result)
    best = result["best"]
    result["saved_to"] = str(save_tuned(settings, dataset, {"retrieval.fusion_weights": best["fusion_weights"],
                                                            "retrieval.rrf_k": best["rrf_k"]},
                                        {"metric": result["metric"], "validation": best["score"], "se": best["se"],
                                         "users": result["users"], "protocol": result["protocol"], "run": str(run)}))
    print(json.dumps(result))
    return 0


def tune_linear_command(args: argparse.Namespace, settings: Any, dataset: str) -> int:
    """Fit the linear ranker on the validation split's fixed lists and save its weights (the fusion weights that
    `tune --protocol loo` chose stay: fixed lists of random items are not what the chat ranks)."""
    from agent.tuned import save_tuned
    from eval.harness import git_commit, prepare
    from eval.tuning import tune_linear

    prepared = prepare(settings, dataset, "candidates20", progress=not args.quiet)
    result = tune_linear(prepared, max_users=args.max_users, progress=not args.quiet)
    result.update({"dataset": dataset, "protocol": prepared.split.protocol, "data_hash": prepared.data_hash,
                   "git_commit": git_commit()})
    run = save_tune_run(settings, dataset, prepared.split.protocol, result)
    result["saved_to"] = str(save_tuned(settings, dataset, {"retrieval.linear_weights": result["linear_weights"]},
                                        {"metric": result["metric"], "validation": result["cross_validated"][
                                            str(result["l2"])], "users": result["users"],
                                         "protocol": result["protocol"], "run": str(run)}))
    print(json.dumps(result))
    return 0


def tune_crs_command(args: argparse.Namespace, settings: Any, dataset: str) -> int:
    """Tune the fusion (weights of every generator, sources included) on the validation dialogues."""
    from agent.tuned import save_tuned
    from eval.crs import dialogues_for, prepare_crs
    from eval.crs_tuning import collect, generator_names, tune_crs
    from eval.harness import git_commit
    from index.loaders import resolve_dataset_folder

    agent, data, _ = prepare_crs(settings, dataset, progress=not args.quiet)
    dialogues = dialogues_for(resolve_dataset_folder(dataset, settings.data.data_dir), "validation", args.dialogues)
    titles = {item_id: item.title for item_id, item in data.items.items()}
    turns = collect(agent, dialogues, titles, progress=not args.quiet)
    retrieval = settings.retrieval
    result = tune_crs(turns, generator_names(agent), retrieval.fusion_weights, retrieval.rrf_k, retrieval.query_weight)
    result.update({"dataset": dataset, "protocol": "crs", "split": "validation", "data_hash": data.content_hash(),
                   "dialogues_file": str(args.dialogues) if args.dialogues else None, "git_commit": git_commit()})
    run = save_tune_run(settings, dataset, "crs", result)
    result["saved_to"] = str(save_tuned(settings, dataset, {
        "retrieval.fusion_weights": result["fusion_weights"], "retrieval.rrf_k": result["rrf_k"],
        "retrieval.query_weight": result["query_weight"]}, {"metric": result["metric"], "validation": result["score"],
                                                            "protocol": "crs", "run": str(run)}))
    print(json.dumps(result))
    return 0
