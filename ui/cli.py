"""The `recagent` command. Builds the one Settings object from defaults, --config, RECAGENT_* and flags."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.settings import Settings, load_settings
from index.errors import RecagentError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="folder of datasets (RECAGENT_DATA_DIR)")
    parser.add_argument("--dataset", help="dataset name under the data folder, or a folder path")
    parser.add_argument("--chroma", choices=["embedded", "server"], help="Chroma mode")
    parser.add_argument("--chroma-path", type=Path, help="folder of the embedded Chroma store")
    parser.add_argument("--chroma-host", help="Chroma server host")
    parser.add_argument("--chroma-port", type=int, help="Chroma server port")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _llm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--llm-backend", choices=["transformers", "vllm", "openai"])
    parser.add_argument("--llm-url", help="base URL of a vLLM / OpenAI-compatible server")
    parser.add_argument("--llm-model", help="'default', a model folder, or a served model name")
    parser.add_argument("--permutations", type=int, help="orders each candidate list is shown in")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, **{
        "data.data_dir": args.data_dir, "data.dataset": args.dataset, "index.chroma": args.chroma,
        "index.path": args.chroma_path, "index.host": args.chroma_host, "index.port": args.chroma_port,
        "llm.backend": getattr(args, "llm_backend", None), "llm.url": getattr(args, "llm_url", None),
        "llm.model": getattr(args, "llm_model", None),
        "rerank.permutations": getattr(args, "permutations", None)})


def cmd_index_build(args: argparse.Namespace) -> int:
    from index.build import build_index
    from index.embedder import Embedder
    from index.loaders import load_dataset
    from index.store import IndexStore, chroma_client

    settings = settings_from(args)
    dataset = load_dataset(settings.data.dataset, settings.data.data_dir)
    for what, count in dataset.skipped.items():
        print(f"skipped {count} rows — {what}", file=sys.stderr)
    store = IndexStore(chroma_client(settings.index), dataset.name)
    report = build_index(dataset, store, settings.index, lambda: Embedder(settings.index.embedder),
                         progress=not args.quiet)
    if report.repaired:
        print("the previous build was interrupted; the index was repaired", file=sys.stderr)
    print(json.dumps(report.as_dict()))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from agent.recommender import Recommender

    settings = settings_from(args)
    recommender = Recommender.open(settings)
    filters = json.loads(args.filter) if args.filter else None
    found = recommender.candidates(user=args.user, history=args.history or None, query=args.query, k=args.k,
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
    from eval.harness import RANKERS, evaluate, prepare, save_run

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    prepared = prepare(settings, dataset, args.protocol, progress=not args.quiet)
    rankers = list(RANKERS) if args.ranker == "all" else [args.ranker]
    results = []
    for ranker in rankers:
        result = evaluate(prepared, ranker, args.split, settings, dataset, progress=not args.quiet,
                          bootstrap=args.bootstrap, limit=args.limit)
        result["saved_to"] = str(save_run(result, settings.runs_dir))
        results.append(result)
    if args.format == "json":
        for result in results:
            print(json.dumps(result))
    else:
        print(_eval_table(results))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from eval.harness import prepare, tune_fusion

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    prepared = prepare(settings, dataset, args.protocol, progress=not args.quiet)
    grid: dict[str, Sequence[float]] = {"collab": [1.0], "item2item": [0, 0.3, 0.6], "sequential": [0, 0.5, 1.0, 1.5],
            "text": [0, 0.1, 0.3], "popularity": [0, 0.1, 0.2]}
    print(json.dumps(tune_fusion(prepared, grid, [10, 20, 60], progress=not args.quiet)))
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from index.fetch import GROUPLENS, fetch

    settings = settings_from(args)
    folder = fetch(args.name, settings.data.data_dir, base_url=args.base_url or GROUPLENS, sha256=args.sha256,
                   force=args.force)
    print(folder)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: index the default dataset, recommend for a sample user, evaluate."""
    settings = settings_from(args)
    print(f"== indexing {settings.data.dataset} into {settings.index.chroma} Chroma", flush=True)
    cmd_index_build(args)
    from agent.recommender import Recommender

    recommender = Recommender.open(settings)
    user = args.user
    history, _ = recommender.index.user_history(user)
    print(f"\n== user {user}: {len(history)} rated items; most recent:")
    for item_id in history[-5:]:
        print(f"     {recommender.index.entries[item_id].title}")
    print("\n== recommendations (fused retriever)")
    for rank, c in enumerate(recommender.candidates(user=user, k=10), start=1):
        print(f"{rank:>3}. {c.title}")
    print("\n== evaluation: leave-one-out, test split", flush=True)
    args.protocol, args.ranker, args.split, args.format, args.bootstrap = "loo", "all", "test", "table", 1000
    return cmd_eval(args)


def cmd_llm_serve(args: argparse.Namespace) -> int:
    from agent.llm.serve import ServeOptions, start_server, stop_server

    options = ServeOptions(model=args.model, served_name=args.served_name, host=args.host, port=args.port,
                           dtype=args.dtype, max_model_len=args.max_model_len, max_logprobs=args.max_logprobs,
                           lora_modules=args.lora_modules or (), extra_args=args.vllm_args or ())
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both stop the server cleanly (a shell's background job starts with SIGINT ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    print(f"starting vLLM for {options.model} (this takes a minute or two on a CPU)...", flush=True)
    try:
        process = start_server(options, log=args.log, timeout_s=args.startup_timeout)
    except KeyboardInterrupt:
        print("stopped before the server was ready", file=sys.stderr)
        return 130
    print(f"serving at http://{options.host}:{options.port}/v1  (Ctrl-C stops it)", flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
    finally:
        stop_server(process)
    return 0 if process.returncode in (0, -15, None) else 1


def open_agent(args: argparse.Namespace, settings: Settings, dataset: str | None = None) -> Any:
    """The conversation agent over a dataset's index, with the configured LLM unless --no-llm."""
    from agent.dialogue import ConversationAgent, ConversationStore
    from agent.llm.backends import make_llm
    from agent.recommender import Recommender

    recommender = Recommender.open(settings, namespace=dataset)
    if not args.no_llm:
        recommender.llm = make_llm(settings.llm)
    folder = args.conversations / (dataset or "default") if args.conversations else None
    return ConversationAgent(recommender, ConversationStore(folder))


def indexed_datasets(settings: Settings) -> list[str]:
    """Namespaces in Chroma with a finished index (evaluation namespaces left out)."""
    from index.store import IndexStore, chroma_client

    client = chroma_client(settings.index)
    names = [c.name if hasattr(c, "name") else str(c) for c in client.list_collections()]
    found = [n[: -len("-items")] for n in names if n.endswith("-items")]
    return sorted(n for n in found if not n.endswith("-loo")
                  and IndexStore(client, n).state().get("state") == "complete")


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from ui.api import create_app, requires_token

    settings = settings_from(args)
    token = args.token or os.environ.get("RECAGENT_API_TOKEN")
    if requires_token(args.host) and not token:
        raise RecagentError(f"serving on {args.host} (not loopback) needs a bearer token: --token or "
                            f"RECAGENT_API_TOKEN")
    app = create_app(open_agent(args, settings), token=token)
    print(f"recagent API at http://{args.host}:{args.port} (OpenAPI schema at /openapi.json)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Index the dataset if needed (incremental), then open the Gradio chat."""
    settings = settings_from(args)
    if not args.skip_build:
        cmd_index_build(args)
    from ui.chat import build_ui

    agents: dict[str, Any] = {}
    llm = None

    def agent_for(dataset: str) -> Any:
        nonlocal llm
        if dataset not in agents:
            agents[dataset] = open_agent(args, settings, dataset)
            llm = llm or agents[dataset].recommender.llm  # one model in memory for every dataset
            agents[dataset].recommender.llm = llm
        return agents[dataset]

    current = Path(settings.data.dataset).name
    agent_for(current)
    demo = build_ui(agent_for, sorted({current, *indexed_datasets(settings)}), current)
    print(f"recagent chat at http://{args.host}:{args.port}", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench import BENCHMARKS

    settings = settings_from(args)
    print(json.dumps(BENCHMARKS[args.what](settings, args)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recagent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        _common(p)
        p.set_defaults(handler=handler)
        return p

    index = sub.add_parser("index", help="build the index").add_subparsers(dest="action", required=True)
    add("build", cmd_index_build, "embed and index a dataset into Chroma (incremental)", index)

    p = add("recommend", cmd_recommend, "print candidate recommendations")
    p.add_argument("--user")
    p.add_argument("--history", nargs="*", help="item ids, oldest first")
    p.add_argument("--query")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--filter", help='JSON, e.g. \'{"genres": "Comedy", "year": {"$gte": 1990}}\'')
    p.add_argument("--ranker", default="fused")

    p = add("eval", cmd_eval, "score rankers on an offline protocol")
    p.add_argument("--protocol", default="loo")
    p.add_argument("--ranker", default="fused", help="a ranker name or 'all'")
    p.add_argument("--split", default="test", choices=["validation", "test"])
    p.add_argument("--format", default="table", choices=["table", "json"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--limit", type=int, help="only the first N users (a quick look; marked as a subset)")
    _llm_flags(p)

    p = add("tune", cmd_tune, "grid-search the fusion weights on the validation split")
    p.add_argument("--protocol", default="loo")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    p = add("fetch", cmd_data_fetch, "download an official dataset archive into the data folder", data)
    p.add_argument("name", help="movielens-small or movielens-100k")
    p.add_argument("--base-url", help="mirror to download from (default: GroupLens)")
    p.add_argument("--sha256", help="also require this SHA-256 of the archive")
    p.add_argument("--force", action="store_true")

    p = add("demo", cmd_demo, "index the dataset, recommend for a sample user, print the evaluation table")
    p.add_argument("--user", default="1")

    llm = sub.add_parser("llm", help="the LLM").add_subparsers(dest="action", required=True)
    p = add("serve", cmd_llm_serve, "start vLLM's OpenAI-compatible server and wait until it is healthy", llm)
    p.add_argument("--model", default="default", help="'default' (Gemma 3 270M) or a model folder")
    p.add_argument("--served-name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8311)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--max-logprobs", type=int, default=300)
    p.add_argument("--lora-modules", nargs="*", help="NAME=ADAPTER_DIR ... (enables LoRA)")
    p.add_argument("--vllm-args", nargs=argparse.REMAINDER, help="passed to vLLM as they are")
    p.add_argument("--log", type=Path, help="write the server's output to this file")
    p.add_argument("--startup-timeout", type=float, default=600)

    p = add("serve", cmd_serve, "the HTTP API for support bots (OpenAPI at /openapi.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--token", help="bearer token (required off loopback; or RECAGENT_API_TOKEN)")
    p.add_argument("--no-llm", action="store_true", help="retriever order and templated replies only")
    p.add_argument("--conversations", type=Path, help="folder that keeps conversations across restarts")
    _llm_flags(p)

    p = add("chat", cmd_chat, "the Gradio chat in the browser (builds the index first if needed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--no-llm", action="store_true", help="retriever order and templated replies only")
    p.add_argument("--conversations", type=Path, help="folder that keeps conversations across restarts")
    p.add_argument("--skip-build", action="store_true", help="use the index as it is")
    _llm_flags(p)

    p = add("bench", cmd_bench, "benchmarks; print JSON")
    p.add_argument("what", choices=["index", "retrieval", "eval", "rerank", "turn"])
    p.add_argument("--repeats", type=int, default=200, help="queries for the retrieval benchmark")
    p.add_argument("--lists", type=int, default=8, help="candidate lists for the rerank benchmark")
    p.add_argument("--max-tokens", type=int, default=240, help="generation length for the rerank yardstick")
    p.add_argument("--backends", default="transformers,vllm", help="rerank benchmark backends")
    _llm_flags(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except RecagentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: invalid JSON: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
