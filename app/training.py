"""The recagent commands that fine-tune: `train rerank`, `train reply`, `train intent` and `train adapt` (the
manifest keeps the command line, which reproduces a shipped adapter)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.options import settings_from
from core.labels import MAX_LABELLED

if TYPE_CHECKING:
    from train.lora import TrainSettings


def _command() -> str | None:
    """The command line as typed, for the manifest (when run as `recagent`)."""
    return shlex.join(["recagent", *sys.argv[1:]]) if Path(sys.argv[0]).name == "recagent" else None


def cmd_train_rerank(args: argparse.Namespace) -> int:
    from train.rerank_data import RerankDataConfig
    from train.run import RerankRun, run_rerank

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    run = RerankRun(
        dataset=dataset, out=args.out or Path("models") / dataset / "rerank", prompt_version=args.prompt_version,
        objective=args.objective, validation_users=args.validation_users, init_adapter=args.init_adapter,
        keep=args.keep,
        data=RerankDataConfig(negatives=args.negatives, hard_fraction=args.hard_fraction, examples=args.examples,
                              per_user=args.per_user, folds=args.folds, request_fraction=args.request_fraction,
                              history_window=args.history_window or (19 if args.objective == "likelihood" else 10),
                              list_size=args.list_size, seed=args.seed),
        train=_train_settings(args), command=_command())
    summary = run_rerank(settings, run, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}))
    return 0


def cmd_train_reply(args: argparse.Namespace) -> int:
    from train.run import ReplyRun, run_reply

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    run = ReplyRun(dataset=dataset, out=args.out or Path("models") / dataset / "reply", examples=args.examples,
                   validation_examples=args.validation_examples, dialogues=args.dialogues,
                   init_adapter=args.init_adapter, train=_train_settings(args), command=_command())
    summary = run_reply(settings, run, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def cmd_train_intent(args: argparse.Namespace) -> int:
    from train.run import IntentRun, run_intent

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    run = IntentRun(dataset=dataset, out=args.out or Path("models") / dataset / "intent", examples=args.examples,
                    validation_examples=args.validation_examples, dialogues=args.dialogues,
                    train=_train_settings(args), command=_command())
    summary = run_intent(settings, run, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def add_intent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="adapter folder (default models/DATASET/intent)")
    p.add_argument("--examples", type=int, default=1200, help="training messages (generated and ReDial seekers')")
    p.add_argument("--validation-examples", type=int, default=120)
    p.add_argument("--dialogues", type=Path, help="ReDial-format dialogues (default: the shared training sample)")
    _loop_flags(p, lr=5e-4, eval_every=20, patience=3)


def cmd_train_adapt(args: argparse.Namespace) -> int:
    from train.adapt_data import AdaptDataConfig
    from train.run import AdaptRun, run_adapt

    settings = settings_from(args)
    dataset = args.dataset or settings.data.dataset
    run = AdaptRun(dataset=dataset, out=args.out or Path("models") / dataset / "adapt",
                   data=AdaptDataConfig(examples=args.examples, validation_examples=args.validation_examples,
                                        history_fraction=args.history_fraction, window=args.window,
                                        seed=args.seed),
                   train=_train_settings(args), command=_command(), ranker_users=args.ranker_users)
    summary = run_adapt(settings, run, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def add_adapt_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="adapter folder (default models/DATASET/adapt)")
    p.add_argument("--examples", type=int, default=2000, help="training texts (histories and catalog entries)")
    p.add_argument("--validation-examples", type=int, default=100, help="held-out users' history texts")
    p.add_argument("--history-fraction", type=float, default=0.7, help="share of training texts that are histories")
    p.add_argument("--window", type=int, default=20, help="items per history text")
    p.add_argument("--ranker-users", type=int, default=300,
                   help="loo validation users the adapter is measured on as the likelihood ranker, which chooses "
                        "its blend with the retriever's order (0: skip)")
    _loop_flags(p, lr=5e-4, eval_every=20, patience=3)


def add_reply_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="adapter folder (default models/DATASET/reply)")
    p.add_argument("--examples", type=int, default=1500, help="training replies built")
    p.add_argument("--validation-examples", type=int, default=150)
    p.add_argument("--dialogues", type=Path, help="ReDial-format dialogues (default: the shared training sample)")
    p.add_argument("--init-adapter", type=Path, help="start from this adapter (e.g. `train adapt`'s)")
    _loop_flags(p, lr=3e-4, eval_every=20, patience=3)


def add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="adapter folder (default models/DATASET/rerank)")
    p.add_argument("--objective", choices=["labels", "likelihood"], default="labels",
                   help="the listwise ranker's label (rerank.method labels) or the likelihood ranker's titles "
                        "(rerank.method likelihood; start it from the domain-adapted adapter with --init-adapter)")
    p.add_argument("--negatives", choices=["hard", "random", "mix"], default="mix")
    p.add_argument("--hard-fraction", type=float, default=0.5, help="share of hard lists with --negatives mix")
    p.add_argument("--examples", type=int, default=3000, help="training prefixes used (sampled)")
    p.add_argument("--per-user", type=int, default=40, help="prefixes sampled per user before filtering")
    p.add_argument("--folds", type=int, default=5, help="user folds for leak-free hard negatives")
    p.add_argument("--request-fraction", type=float, default=0.2, help="examples given a request")
    p.add_argument("--prompt-version", type=int, default=3, help="rerank_listwise version (3 shows evidence)")
    p.add_argument("--list-size", type=int, default=MAX_LABELLED,
                   help="candidates per training list, the answer included (validation always ranks the 20); "
                        "fewer make a likelihood step cheaper")
    p.add_argument("--history-window", type=int,
                   help="history items shown (default 10 for labels, 19 for likelihood: the agent's)")
    p.add_argument("--validation-users", type=int, help="score checkpoints on the first N validation users")
    p.add_argument("--init-adapter", type=Path, help="start from this adapter (e.g. a domain-adapted one)")
    p.add_argument("--keep", choices=["best", "last"], default="best",
                   help="ship the checkpoint best on validation, or the last step's (rerunning a finished run "
                        "with another --keep only re-writes the shipped adapter)")
    _loop_flags(p, lr=4e-4, eval_every=25, patience=4)


def _loop_flags(p: argparse.ArgumentParser, lr: float, eval_every: int, patience: int) -> None:
    """The training loop's and LoRA's flags, shared by every `train` command (defaults per task)."""
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=eval_every, help="optimizer steps between validations")
    p.add_argument("--patience", type=int, default=patience, help="validations without improvement before stopping")
    p.add_argument("--save-every", type=int, default=10,
                   help="optimizer steps between checkpoints besides validations (0: only at validations)")
    p.add_argument("--max-steps", type=int)
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp32", dest="bf16", action="store_false", default=None,
                           help="float32, not bf16 autocast (default: bf16 where the CPU or GPU has it natively, "
                                "float32 where torch would emulate it; float32 also measured faster for the "
                                "likelihood objective on a 2-core CPU that has bf16)")
    precision.add_argument("--bf16", dest="bf16", action="store_true", default=None,
                           help="bf16 autocast even where it is emulated (the shipped adapters were trained in bf16)")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj")
    p.add_argument("--seed", type=int, default=0)


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """The loop's settings from the flags `_loop_flags` added."""
    from train.lora import LoraSettings, TrainSettings

    return TrainSettings(lr=args.lr, micro_batch=args.micro_batch, grad_accum=args.grad_accum, epochs=args.epochs,
                         eval_every=args.eval_every, patience=args.patience, max_steps=args.max_steps,
                         save_every=args.save_every, seed=args.seed,
                         lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha,
                                           targets=tuple(args.lora_targets.split(","))),
                         **({} if args.bf16 is None else {"bf16": args.bf16}))
