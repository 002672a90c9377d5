"""The `recagent` command. Builds the one Settings object from defaults, --config, RECAGENT_* and flags,
gets the agent from agent.assemble, and turns recagent's errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.commands import (
    cmd_bench,
    cmd_data_fetch,
    cmd_data_synth,
    cmd_demo,
    cmd_index_build,
    cmd_recommend,
)
from app.evaluation import add_eval_flags, eval_command, tune_command
from app.options import common_flags, llm_flags
from app.serving import cmd_chat, cmd_llm_serve, cmd_mcp, cmd_serve
from app.training import (
    add_adapt_flags,
    add_intent_flags,
    add_reply_flags,
    add_train_flags,
    cmd_train_adapt,
    cmd_train_intent,
    cmd_train_reply,
    cmd_train_rerank,
)
from core.errors import RecagentError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recagent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        common_flags(p)
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

    p = add("eval", eval_command, "score rankers on an offline protocol (loo, candidates20, crs), compare prompt "
                                  "and model variants (eval prompts), or lay saved runs side by side "
                                  "(eval report RUN...)")
    p.add_argument("--protocol", default="loo", help="loo, candidates20, crs (ReDial dialogues), intents (the "
                                                      "intents cases) or states (ReDial state tracking)")
    p.add_argument("--ranker", default="fused", help="a ranker name or 'all'")
    p.add_argument("--split", default="test", choices=["validation", "valid", "test"])
    p.add_argument("--format", default="table", choices=["table", "json"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--limit", type=int, help="only the first N users (a quick look; marked as a subset)")
    llm_flags(p)
    add_eval_flags(p)

    p = add("tune", tune_command, "choose the fusion weights on the validation split and save them for the "
                                  "dataset (used by eval, chat and serve unless set explicitly)")
    p.add_argument("--protocol", default="loo", help="loo or crs: the fusion weights; candidates20: fit the linear "
                                                     "ranker for fixed candidate lists (the fusion weights stay)")
    p.add_argument("--max-users", type=int, default=2000, help="validation users sampled at most")
    p.add_argument("--dialogues", type=Path,
                   help="crs protocol: tune on this ReDial-format file instead of the validation dialogues")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    p = add("fetch", cmd_data_fetch, "download an official dataset archive into the data folder", data)
    p.add_argument("name", help="movielens-small or movielens-100k")
    p.add_argument("--base-url", help="mirror to download from (default: GroupLens)")
    p.add_argument("--sha256", help="also require this SHA-256 of the archive")
    p.add_argument("--force", action="store_true")
    p = add("synth", cmd_data_synth, "write a synthetic shop catalog with power-law popularity (generic format) "
                                     "into the data folder, for benchmarks", data)
    p.add_argument("name", help="the new dataset's folder name")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="write over an existing folder")

    p = add("demo", cmd_demo, "index the dataset, recommend for a sample user, print the evaluation table")
    p.add_argument("--user", default="1")

    llm = sub.add_parser("llm", help="the LLM").add_subparsers(dest="action", required=True)
    p = add("serve", cmd_llm_serve, "start vLLM's OpenAI-compatible server (with the configured LoRA adapters) "
                                    "and wait until it is healthy", llm)
    p.add_argument("--model", default="default", help="'default' (Gemma 3 270M) or a model folder")
    p.add_argument("--served-name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8311)
    p.add_argument("--dtype", help="compute dtype (default: llm.dtype, float32; bfloat16 is faster on CPUs with AMX)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--max-logprobs", type=int, default=300)
    p.add_argument("--lora-modules", nargs="*", help="NAME=ADAPTER_DIR ... (default: llm.adapters; none: no LoRA)")
    p.add_argument("--vllm-args", nargs=argparse.REMAINDER, help="passed to vLLM as they are")
    p.add_argument("--log", type=Path, help="the server's output (default: var/log/llm-serve-PORT.log)")
    p.add_argument("--startup-timeout", type=float, default=600)

    p = add("serve", cmd_serve, "the HTTP API for support bots (OpenAPI at /openapi.json); off loopback "
                                "it needs RECAGENT_API_TOKEN")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--store", help="where conversations live: sqlite:///path (default "
                                   "sqlite:///var/conversations.sqlite3) or postgresql://user@host:port/db")
    llm_flags(p)

    p = add("chat", cmd_chat, "the Gradio chat in the browser (builds the index first if needed); off "
                              "loopback it needs RECAGENT_API_TOKEN as the login password")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--store", help="where conversations live: sqlite:///path (default "
                                   "sqlite:///var/conversations.sqlite3) or postgresql://user@host:port/db")
    p.add_argument("--skip-build", action="store_true", help="use the index as it is")
    llm_flags(p)

    p = add("mcp", cmd_mcp, "the agent as MCP tools for bots: stdio (the bot starts this command) or streamable "
                            "HTTP at /mcp; over HTTP off loopback it needs RECAGENT_API_TOKEN")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8401)
    p.add_argument("--store", help="where conversations live: sqlite:///path (default "
                                   "sqlite:///var/conversations.sqlite3) or postgresql://user@host:port/db")
    llm_flags(p)

    train = sub.add_parser("train", help="fine-tune LoRA adapters").add_subparsers(dest="action", required=True)
    p = add("rerank", cmd_train_rerank, "train the listwise ranker adapter on the training part of loo", train)
    add_train_flags(p)
    p = add("reply", cmd_train_reply, "train the reply-writer adapter (grounded sentences citing [labels])", train)
    add_reply_flags(p)
    p = add("intent", cmd_train_intent, "train the intent reader's adapter (a message -> its Intent as JSON)", train)
    add_intent_flags(p)
    p = add("adapt", cmd_train_adapt, "domain adaptation: continued pretraining of a LoRA on the catalog and the "
                                      "training histories as text (then pass it to rerank/reply --init-adapter)", train)
    add_adapt_flags(p)

    p = add("bench", cmd_bench, "benchmarks; print JSON")
    p.add_argument("what", choices=["index", "retrieval", "eval", "rerank", "turn", "scale", "health"])
    p.add_argument("--repeats", type=int, default=200, help="queries for the retrieval benchmark")
    p.add_argument("--lists", type=int, default=8, help="candidate lists for the rerank benchmark")
    p.add_argument("--max-tokens", type=int, default=240, help="generation length for the rerank yardstick")
    p.add_argument("--backends", default="transformers,vllm", help="rerank benchmark backends")
    p.add_argument("--sizes", default="10000,100000,1000000", help="catalog sizes for the scale benchmark")
    p.add_argument("--workdir", default="var/bench-scale", help="where the scale benchmark keeps its data")
    p.add_argument("--fit-only", help="scale benchmark: sizes whose collaborative fit alone is measured (time, "
                                      "peak memory), e.g. 1000000 when the full build's embedding is too slow")
    p.add_argument("--reuse-builds", action="store_true", help="scale benchmark: keep the indexes and build "
                                                                 "figures of sizes measured before in --workdir and "
                                                                 "measure only the query side again")
    p.add_argument("--resume-builds", action="store_true", help="scale benchmark: continue a build that was "
                                                                  "stopped midway in --workdir instead of "
                                                                  "starting it again (its figures are then "
                                                                  "those of the last part)")
    p.add_argument("--levels", default="1,4,16", help="concurrency levels for the turn and health benchmarks")
    p.add_argument("--api-processes", help="turn benchmark through this many `recagent serve` processes, e.g. "
                                           "1,2 (a vLLM server, a Chroma server and one conversation database)")
    llm_flags(p)
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
