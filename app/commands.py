"""The recagent commands that index, recommend, evaluate, tune, fetch data and benchmark.

Each handler builds the settings, gets its agent from agent.assemble and prints; nothing here
assembles parts by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.options import settings_from


def cmd_index_build(args: argparse.Namespace) -> int:
    from agent.assemble import index_named_dataset

    settings = settings_from(args)
    dataset, report = index_named_dataset(settings, progress=not args.quiet)
    for what, count in dataset.skipped.items():
        print(f"skipped {count} rows — {what}", file=sys.stderr)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.repaired:
        print("the previous build was interrupted; the index was repaired", file=sys.stderr)
    print(json.dumps(report.as_dict()))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from agent.assemble import build_agent

    settings = settings_from(args)
    agent = build_agent(settings, llm=None)
    filters = json.loads(args.filter) if args.filter else None
    found = agent.recommender.candidates(user=args.user, history=args.history or None, query=args.query, k=args.k,
                                         filters=filters, ranker=args.ranker)
    for rank, candidate in enumerate(found, start=1):
        print(f"{rank:>3}. {candidate.title}  [{candidate.id}]  score={candidate.score:.4f}")
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


def cmd_eval(args: argparse.Namespace) -> int:
    from app.evaluation import eval_command

    return eval_command(args)


def cmd_tune(args: argparse.Namespace) -> int:
    from app.evaluation import tune_command

    return tune_command(args)


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from index.fetch import GROUPLENS, fetch

    settings = settings_from(args)
    folder = fetch(args.name, settings.data.data_dir, base_url=args.base_url or GROUPLENS, sha256=args.sha256,
                   force=args.force)
    print(folder)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    """A synthetic catalog and interactions (generic format) under the data folder, for benchmarks."""
    from dataclasses import asdict

    from core.errors import InvalidRequest
    from index.synth import synthesize

    settings = settings_from(args)
    folder = settings.data.data_dir / args.name
    if folder.exists() and any(folder.iterdir()) and not args.force:
        raise InvalidRequest(f"{folder} exists and is not empty (--force writes over it)")
    report = synthesize(folder, args.items, args.users, args.interactions, seed=args.seed)
    print(json.dumps(asdict(report)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: index the default dataset, recommend for a sample user, evaluate."""
    from agent.assemble import build_agent

    settings = settings_from(args)
    print(f"== indexing {settings.data.dataset} into {settings.index.chroma} Chroma", flush=True)
    cmd_index_build(args)
    agent = build_agent(settings, llm=None)
    user = args.user
    history, _ = agent.index.user_history(user)
    print(f"\n== user {user}: {len(history)} rated items; most recent:")
    for item_id in history[-5:]:
        print(f"     {agent.index.entries[item_id].title}")
    print("\n== recommendations (fused retriever)")
    for rank, c in enumerate(agent.recommender.candidates(user=user, k=10), start=1):
        print(f"{rank:>3}. {c.title}")
    print("\n== evaluation: leave-one-out, test split", flush=True)
    args.protocol, args.ranker, args.split, args.format, args.bootstrap = "loo", "all", "test", "table", 1000
    return cmd_eval(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench import BENCHMARKS

    settings = settings_from(args)
    print(json.dumps(BENCHMARKS[args.what](settings, args)))
    return 0
