"""Flags shared by the commands, and the one Settings object built from defaults, --config,
RECAGENT_* and flags (in that order of precedence)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.settings import Settings, load_settings


def common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="folder of datasets (RECAGENT_DATA_DIR)")
    parser.add_argument("--dataset", help="dataset name under the data folder, or a folder path")
    parser.add_argument("--chroma", choices=["embedded", "server"], help="Chroma mode")
    parser.add_argument("--chroma-path", type=Path, help="folder of the embedded Chroma store")
    parser.add_argument("--chroma-host", help="Chroma server host")
    parser.add_argument("--chroma-port", type=int, help="Chroma server port")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def llm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--llm-backend", choices=["transformers", "vllm", "openai", "none"])
    parser.add_argument("--llm-url", help="base URL of a vLLM / OpenAI-compatible server")
    parser.add_argument("--llm-model", help="'default', a model folder, or a served model name")
    parser.add_argument("--permutations", type=int, help="orders each candidate list is shown in")
    parser.add_argument("--no-llm", action="store_true", help="retriever order and templated replies only")
    parser.add_argument("--no-adapters", action="store_true", help="the base model, without the shipped adapters")


def settings_from(args: argparse.Namespace) -> Settings:
    if getattr(args, "quiet", False):
        quiet_progress()
    backend = "none" if getattr(args, "no_llm", False) else getattr(args, "llm_backend", None)
    return load_settings(args.config, **{
        "data.data_dir": args.data_dir, "data.dataset": args.dataset, "index.chroma": args.chroma,
        "index.path": args.chroma_path, "index.host": args.chroma_host, "index.port": args.chroma_port,
        "llm.backend": backend, "llm.url": getattr(args, "llm_url", None),
        "llm.model": getattr(args, "llm_model", None),
        "llm.adapters": {} if getattr(args, "no_adapters", False) else None,
        "rerank.permutations": getattr(args, "permutations", None),
        "conversations.url": getattr(args, "store", None)})


def quiet_progress() -> None:
    """No progress bars from our loops (tqdm), from model loading (transformers) or from the hub."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass
