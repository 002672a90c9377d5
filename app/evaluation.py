"""`recagent eval` (protocol runs, `eval prompts`, `eval report`) and `recagent tune`: the flags and the printing.

The runs themselves are eval.runs and eval.tune_runs. Every run writes a folder under runs/ (eval.report).
Tuned settings for the dataset apply unless set explicitly (agent.tuned); the run records which were applied.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.options import settings_from


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="run", choices=["run", "prompts", "report"],
                   help="run a protocol (default), compare prompt/model variants, or lay saved runs side by side")
    p.add_argument("runs", nargs="*", type=Path, help="run folders (eval report)")
    p.add_argument("--dialogues", type=Path,
                   help="crs and states protocols: score this ReDial-format file instead of a split")
    p.add_argument("--variants", help="eval prompts: e.g. rerank_listwise@2,rerank_listwise@3 (the first is the "
                                      "baseline); a model name or PROMPT@N:MODEL also works")
    p.add_argument("--models", help="eval prompts: base and/or adapter names, crossed with every prompt variant")
    p.add_argument("--prompt-dir", type=Path, help="extra prompt files (NAME.vN.yaml) searched before prompts/")
    p.add_argument("--requests", type=int, default=4, help="eval prompts (reply): requests of each kind")
    p.add_argument("--benchmark", action="store_true",
                   help="eval prompts (reply): add the dataset's intents cases and 60 ReDial seeker openings")
    p.add_argument("--readers", help="intents: the readers to run, the first the baseline of the paired differences; "
                                     "states: the reader (rules, llm; default: intent.reader)")
    p.add_argument("--fail-if-worse", metavar="METRIC",
                   help="eval prompts: exit 1 when a variant is significantly worse than the baseline on METRIC")


def _split(args: argparse.Namespace) -> str:
    return "validation" if args.split == "valid" else args.split


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
    from eval.runs import run_protocol

    settings, dataset, tuned = _settings(args)
    if args.protocol == "intents":
        from eval.intents import intents_table, run_intents

        readers = tuple(r.strip() for r in (args.readers or settings.intent.reader).split(",") if r.strip())
        result, folder = run_intents(settings, dataset, tuned=tuned, limit=args.limit, bootstrap=args.bootstrap,
                                     readers=readers,
                                     progress=not args.quiet)
        print(json.dumps(result) if args.format == "json" else intents_table(result))
        print(f"report: {folder / 'report.html'}", file=sys.stderr)
        return 0
    if args.protocol == "states":
        from eval.states import run_states, states_table

        if args.readers:  # one reader per states run: the first named
            reader = args.readers.split(",")[0].strip()
            settings = settings.model_copy(update={"intent": settings.intent.model_copy(update={"reader": reader})})
        result, folder = run_states(settings, dataset, _split(args), tuned=tuned, dialogues=args.dialogues,
                                    limit=args.limit, bootstrap=args.bootstrap, progress=not args.quiet)
        print(json.dumps(result) if args.format == "json" else states_table(result))
        print(f"report: {folder / 'report.html'}", file=sys.stderr)
        return 0
    results, folder = run_protocol(settings, dataset, args.protocol, args.ranker, _split(args), tuned=tuned,
                                   limit=args.limit, bootstrap=args.bootstrap, dialogues=args.dialogues,
                                   progress=not args.quiet)
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
    from core.errors import InvalidRequest
    from eval.prompt_eval import worse_than_baseline
    from eval.runs import run_variants

    if not args.variants:
        raise InvalidRequest("eval prompts needs --variants")
    settings, dataset, tuned = _settings(args)
    result, folder = run_variants(settings, dataset, args.protocol, _split(args), args.variants, args.models,
                                  tuned=tuned, limit=args.limit, requests=args.requests, benchmark=args.benchmark,
                                  progress=not args.quiet)
    if args.format == "json":
        print(json.dumps(result))
    else:
        print(_variants_table(result))
    print(f"report: {folder / 'report.html'}", file=sys.stderr)
    if args.fail_if_worse:
        worse = worse_than_baseline(result["differences"], args.fail_if_worse)
        if worse:
            print(f"significantly worse than the baseline {result['baseline']}:\n  " + "\n  ".join(worse),
                  file=sys.stderr)
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


def tune_command(args: argparse.Namespace) -> int:
    from eval.tune_runs import tune_crs_run, tune_fusion_run, tune_linear_run

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    progress = not args.quiet
    if args.protocol == "crs":
        result = tune_crs_run(settings, dataset, args.dialogues, progress=progress)
    elif args.protocol == "candidates20":
        result = tune_linear_run(settings, dataset, max_users=args.max_users, progress=progress)
    else:
        result = tune_fusion_run(settings, dataset, args.protocol, max_users=args.max_users, progress=progress)
    print(json.dumps(result))
    return 0
