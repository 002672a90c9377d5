"""The recagent commands that serve: the HTTP API, the Gradio chat and vLLM's server for the model."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from app.options import settings_from
from core.errors import InvalidRequest


def _token(settings: Any, host: str) -> str | None:
    from ui.auth import requires_token

    token = settings.api.token.get_secret_value() if settings.api.token is not None else None
    if requires_token(host) and not token:
        raise InvalidRequest(f"serving on {host} (not loopback) needs a bearer token: set RECAGENT_API_TOKEN "
                             f"(or api.token in the settings file)")
    return token


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agent.assemble import build_agent, ready_to_serve
    from ui.api import create_app

    settings = settings_from(args)
    token = _token(settings, args.host)
    agent = build_agent(settings)
    ready_to_serve(agent)
    app = create_app(agent, token=token)
    print(f"recagent API at http://{args.host}:{args.port} (OpenAPI schema at /openapi.json)", flush=True)
    stopped: list[int] = []
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler that was
    # there before it; this one records it, so the command ends normally (exit 0) after a clean shutdown.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopped.append(signum))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=int(settings.api.shutdown_grace_s))
    print("recagent API stopped", file=sys.stderr, flush=True)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Index the dataset if needed (incremental), then open the Gradio chat."""
    from agent.assemble import Agent, build_agent, indexed_datasets, make_configured_llm, ready_to_serve
    from app.commands import cmd_index_build
    from ui.chat import build_ui, launch

    settings = settings_from(args)
    token = _token(settings, args.host)
    if not args.skip_build:
        cmd_index_build(args)
    llm = make_configured_llm(settings)  # one model in memory for every dataset
    agents: dict[str, Agent] = {}

    def agent_for(dataset: str) -> Agent:
        if dataset not in agents:
            agents[dataset] = build_agent(settings, dataset, llm=llm)
            ready_to_serve(agents[dataset])
        return agents[dataset]

    current = Path(settings.data.dataset).name
    agent_for(current)
    demo = build_ui(agent_for, sorted({current, *indexed_datasets(settings)}), current)
    print(f"recagent chat at http://{args.host}:{args.port}", flush=True)
    launch(demo, args.host, args.port, token)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """The agent as MCP tools: over stdio (a bot starts this command) or streamable HTTP at /mcp."""
    import contextlib

    from agent.assemble import build_agent, ready_to_serve
    from ui.mcp import build_mcp, http_app

    settings = settings_from(args)
    token = _token(settings, args.host) if args.transport == "http" else None
    with contextlib.redirect_stdout(sys.stderr):  # on stdio, stdout carries the protocol and nothing else
        agent = build_agent(settings)
        ready_to_serve(agent)
    mcp = build_mcp(agent)
    if args.transport == "stdio":
        mcp.run("stdio")
        return 0
    import uvicorn

    print(f"recagent MCP server at http://{args.host}:{args.port}/mcp (streamable HTTP)", flush=True)
    uvicorn.run(http_app(mcp, args.host, token, settings.api.max_body_bytes), host=args.host, port=args.port,
                log_level="warning", timeout_graceful_shutdown=int(settings.api.shutdown_grace_s))
    return 0


def cmd_llm_serve(args: argparse.Namespace) -> int:
    from agent.llm.serve import ServeOptions, lora_modules, start_server, stop_server

    settings = settings_from(args)
    adapters = args.lora_modules if args.lora_modules is not None else lora_modules(settings.llm.adapters)
    options = ServeOptions(model=args.model, served_name=args.served_name, host=args.host, port=args.port,
                           dtype=args.dtype or settings.llm.dtype, max_model_len=args.max_model_len,
                           max_logprobs=args.max_logprobs,
                           lora_modules=adapters, extra_args=args.vllm_args or (),
                           model_cache=settings.llm.model_cache)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both stop the server cleanly (a shell's background job starts with SIGINT ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    # the server's own output is kept (vLLM's errors are only there), by default beside the other state in var/
    log = args.log or Path("var") / "log" / f"llm-serve-{options.port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting vLLM for {options.model} (this takes a minute or two on a CPU); its log: {log}", flush=True)
    try:
        process = start_server(options, log=log, timeout_s=args.startup_timeout)
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
