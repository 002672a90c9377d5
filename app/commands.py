"""The recagent commands that index, recommend, fetch data, run the demo and benchmark (eval and tune are in
app.evaluation).

Each handler builds the settings, gets its agent from agent.assemble and prints; nothing here
assembles parts by hand.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    from app.evaluation import eval_command

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
    args.action, args.protocol, args.ranker, args.split = "run", "loo", "all", "test"
    args.format, args.bootstrap, args.limit, args.dialogues = "table", 1000, None, None
    return eval_command(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench import BENCHMARKS

    settings = settings_from(args)
    print(json.dumps(BENCHMARKS[args.what](settings, args)))
    return 0
