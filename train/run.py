"""Put a training run together: data, examples (cached), the trainer, the shipped adapter and manifest."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.llm.model_files import resolve_model
from agent.settings import Settings
from eval.harness import prepare
from index.embedder import Embedder
from prompts.loader import load_prompt
from train.adapt_data import AdaptDataConfig
from train.lora import TrainSettings, save_adapter
from train.manifest import base_model_record, portable_path, read_manifest, write_manifest
from train.rerank import train_ranker
from train.rerank_data import (
    RerankDataConfig,
    ValidationSet,
    load_examples,
    save_examples,
    training_examples,
    validation_set,
)


@dataclass(frozen=True)
class RerankRun:
    dataset: str
    out: Path
    data: RerankDataConfig
    train: TrainSettings
    prompt_version: int = 3  # of rerank_listwise (the likelihood objective's prompt is rerank_sequence.v1)
    objective: str = "labels"  # or "likelihood": which of the agent's rerankers the adapter is for
    validation_users: int | None = None  # None: every validation user
    init_adapter: Path | None = None
    command: str | None = None
    keep: str = "best"  # the adapter shipped: the best on validation, or the last step's ("last")


def run_rerank(settings: Settings, run: RerankRun, progress: bool = True, embedder: Embedder | None = None,
               stop_after: int | None = None) -> dict[str, Any]:
    """Train the ranker adapter and write it to `run.out` with its manifest; returns the summary."""
    template = load_prompt("rerank_sequence", 1) if run.objective == "likelihood" else \
        load_prompt("rerank_listwise", run.prompt_version)
    prepared = prepare(settings, run.dataset, "loo", progress=progress, embedder=embedder)
    key = run.data.fingerprint(template, prepared.data_hash)
    examples_path = Path("var") / "train" / f"{run.dataset}-rerank-{key}.jsonl"
    if examples_path.exists():
        examples = load_examples(examples_path)
    else:
        examples = training_examples(settings, prepared.split, template, run.data, embedder, progress)
        save_examples(examples_path, examples)
    cases = prepared.split.validation[:run.validation_users] if run.validation_users else prepared.split.validation
    validation: ValidationSet = validation_set(prepared.agent.recommender, cases, template,
                                               run.data.history_window, progress)
    work = run.out.with_name(run.out.name + ".work")
    model_folder = resolve_model(settings.llm.model, settings.llm.model_cache)
    state, summary = train_ranker(model_folder, examples, validation, run.train, work, key, progress,
                                  run.init_adapter, stop_after, run.objective)
    finished = state.step >= state.total_steps or state.stopped_early
    summary.update({"finished": finished, "examples_file": str(examples_path)})
    if not finished:
        return summary
    import torch
    from peft import PeftModel

    from train.lora import autocast, load_base
    from train.rerank import TASKS, choose_blend

    tokenizer, base = load_base(model_folder)
    kept_step = state.best_step if run.keep == "best" else state.step  # the last step is always evaluated
    best = PeftModel.from_pretrained(base, str(work / ("best" if run.keep == "best" else "checkpoint/adapter")))
    save_adapter(best, run.out, bf16=True)
    best_eval = next(e for e in state.evaluations if e["step"] == kept_step)
    best.eval()
    with torch.inference_mode(), autocast(run.train.bf16):  # the blend with the retriever's order, on validation
        task: Any = TASKS[run.objective](tokenizer)  # the task for the objective, whose examples these are
        blend = choose_blend(task.scores(best, validation.examples), validation)
    record = {"task": "rerank", "method": run.objective, "dataset": run.dataset, "protocol": "loo",
              "data_hash": prepared.data_hash,
              "base_model": base_model_record(model_folder, settings.llm.model),
              "prompt": template.id, "rerank_blend": blend["blend"], "blend_search": blend,
              "seed": run.train.seed, "data": asdict(run.data),
              "train": asdict(run.train), "examples": summary["examples"],
              "examples_by_kind": summary["examples_by_kind"],
              "validation": {"best": best_eval, "zero_shot": state.evaluations[0],
                             "retriever": summary["retriever_validation"],
                             "users": validation.users, "covered": len(validation.examples)},
              "steps": state.step, "best_step": state.best_step, "kept": run.keep, "kept_step": kept_step,
              "init_adapter": portable_path(run.init_adapter, settings.data.data_dir) if run.init_adapter else None,
              "train_seconds": summary["train_seconds"], "command": run.command}
    write_manifest(run.out, record)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@dataclass(frozen=True)
class ReplyRun:
    dataset: str
    out: Path
    train: TrainSettings
    examples: int = 1500
    validation_examples: int = 150
    dialogues: Path | None = None  # ReDial training dialogues (requests and recommenders' sentences)
    validation_dialogues: Path | None = None
    prompt_version: int = 2
    init_adapter: Path | None = None
    command: str | None = None


def run_reply(settings: Settings, run: ReplyRun, progress: bool = True, embedder: Embedder | None = None,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train the reply adapter; checkpoints are chosen by the validation loss of held-out replies (from
    the ReDial validation sample's requests and other users)."""
    from train.reply_data import load_reply_examples, reply_examples, save_reply_examples

    template = load_prompt("reply", run.prompt_version)
    prepared = prepare(settings, run.dataset, "loo", progress=progress, embedder=embedder)
    redial = settings.data.data_dir / "redial"
    train_dialogues = run.dialogues or redial / "train_data_sample500.jsonl"
    valid_dialogues = run.validation_dialogues or redial / "valid_data_sample100.jsonl"
    key = f"{template.id}-{prepared.data_hash}-{run.examples}-{run.validation_examples}-{run.train.seed}-v2"
    cache = Path("var") / "train" / f"{run.dataset}-reply-{key}"
    if (cache / "train.jsonl").exists():
        examples, validation = load_reply_examples(cache / "train.jsonl"), load_reply_examples(cache / "valid.jsonl")
    else:
        agent = prepared.agent
        examples = reply_examples(agent, template, train_dialogues, run.examples, seed=run.train.seed)
        validation = reply_examples(agent, template, valid_dialogues, run.validation_examples,
                                    seed=run.train.seed + 1)
        save_reply_examples(cache / "train.jsonl", examples)
        save_reply_examples(cache / "valid.jsonl", validation)
    work = run.out.with_name(run.out.name + ".work")
    model_folder = resolve_model(settings.llm.model, settings.llm.model_cache)
    state, summary = _train_text(model_folder, run.train, work, key, examples, validation, cache, progress,
                                 stop_after, run.init_adapter)
    if not summary["finished"]:
        return summary
    _ship_text_adapter(model_folder, work, run.out, True, state, summary, {
        "task": "reply", "dataset": run.dataset, "data_hash": prepared.data_hash,
        "dialogues": [portable_path(train_dialogues, settings.data.data_dir),
                      portable_path(valid_dialogues, settings.data.data_dir)],
        "base_model": base_model_record(model_folder, settings.llm.model), "prompt": template.id,
        "seed": run.train.seed, "train": asdict(run.train), "examples": len(examples),
        "examples_by_source": summary["examples_by_source"],
        "init_adapter": portable_path(run.init_adapter, settings.data.data_dir) if run.init_adapter else None,
        "command": run.command})
    return summary


@dataclass(frozen=True)
class IntentRun:
    dataset: str
    out: Path
    train: TrainSettings
    examples: int = 1200
    validation_examples: int = 120
    dialogues: Path | None = None  # ReDial training dialogues (seekers' messages and their own answers)
    command: str | None = None


def run_intent(settings: Settings, run: IntentRun, progress: bool = True, embedder: Embedder | None = None,
               stop_after: int | None = None) -> dict[str, Any]:
    """Train the intent reader's adapter; checkpoints are chosen by the loss of held-out drafts (generated with
    another seed, ReDial's validation sample's seekers)."""
    from train.intent_data import INTENT_DATA_VERSION, intent_examples, load_intent_examples, save_intent_examples

    template = load_prompt("intent")
    prepared = prepare(settings, run.dataset, "loo", progress=progress, embedder=embedder)
    redial = settings.data.data_dir / "redial"
    train_dialogues = run.dialogues or redial / "train_data_sample500.jsonl"
    valid_dialogues = redial / "valid_data_sample100.jsonl"
    key = (f"{template.id}-{prepared.data_hash}-{run.examples}-{run.validation_examples}-{run.train.seed}"
           f"-v{INTENT_DATA_VERSION}")
    cache = Path("var") / "train" / f"{run.dataset}-intent-{key}"
    if (cache / "train.jsonl").exists():
        examples, validation = load_intent_examples(cache / "train.jsonl"), load_intent_examples(cache / "valid.jsonl")
    else:
        data_dir = settings.data.data_dir
        examples = intent_examples(prepared.agent, template, run.examples, train_dialogues, data_dir,
                                   seed=run.train.seed)
        validation = intent_examples(prepared.agent, template, run.validation_examples,
                                     valid_dialogues if valid_dialogues.exists() else None, data_dir,
                                     seed=run.train.seed + 1)
        save_intent_examples(cache / "train.jsonl", examples)
        save_intent_examples(cache / "valid.jsonl", validation)
    work = run.out.with_name(run.out.name + ".work")
    model_folder = resolve_model(settings.llm.model, settings.llm.model_cache)
    state, summary = _train_text(model_folder, run.train, work, key, examples, validation, cache, progress,
                                 stop_after)
    if not summary["finished"]:
        return summary
    _ship_text_adapter(model_folder, work, run.out, True, state, summary, {
        "task": "intent", "dataset": run.dataset, "data_hash": prepared.data_hash,
        "dialogues": [portable_path(train_dialogues, settings.data.data_dir)],
        "base_model": base_model_record(model_folder, settings.llm.model), "prompt": template.id,
        "seed": run.train.seed, "train": asdict(run.train), "examples": len(examples),
        "examples_by_source": summary["examples_by_source"],
        "evaluation_cases_left_out": "every message of eval/cases/intents*.jsonl (train/intent_data.leaks)",
        "command": run.command})
    return summary


def _train_text(model_folder: str, settings: TrainSettings, work: Path, key: str, examples: Sequence[Any],
                validation: Sequence[Any], cache: Path, progress: bool, stop_after: int | None,
                init_adapter: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a text task (reply, adapt): checkpoints chosen by the held-out loss; the state and the summary."""
    from train.lora import CausalTextTask, LoraTrainer

    trainer: LoraTrainer[Any] = LoraTrainer(model_folder, CausalTextTask, settings, work, "neg_loss", key, init_adapter)
    state = trainer.train(examples, _held_out_loss(trainer, validation), progress=progress, stop_after=stop_after)
    finished = state.step >= state.total_steps or state.stopped_early
    return state, {"examples": len(examples), "validation_examples": len(validation),
                   "examples_by_source": dict(Counter(e.source for e in examples)),
                   "evaluations": state.evaluations, "best_step": state.best_step, "steps": state.step,
                   "total_steps": state.total_steps, "train_seconds": round(state.seconds, 1),
                   "finished": finished, "examples_dir": str(cache)}


def _ship_text_adapter(model_folder: str, work: Path, out: Path, bf16: bool, state: Any, summary: dict[str, Any],
                       record: dict[str, Any]) -> None:
    """Write a finished text run's best adapter to `out` with its manifest (`record` plus the validation and
    step figures), and the summary beside the checkpoints."""
    from peft import PeftModel

    from train.lora import load_base

    _, base = load_base(model_folder)
    save_adapter(PeftModel.from_pretrained(base, str(work / "best")), out, bf16=bf16)
    write_manifest(out, {**record,
                         "validation": {"best": next(e for e in state.evaluations if e["step"] == state.best_step),
                                        "zero_shot": state.evaluations[0],
                                        "examples": summary["validation_examples"]},
                         "steps": state.step, "best_step": state.best_step,
                         "train_seconds": summary["train_seconds"]})
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _held_out_loss(trainer: Any, validation: Sequence[Any]) -> Callable[[Any], dict[str, float]]:
    """The metric that chooses checkpoints of a text task: minus the mean loss on held-out texts."""
    task = trainer.task

    def evaluate(model: Any) -> dict[str, float]:
        losses = [float(task.loss(model, validation[i:i + 4])) for i in range(0, len(validation), 4)]
        return {"neg_loss": -float(sum(losses) / max(len(losses), 1))}

    return evaluate


@dataclass(frozen=True)
class AdaptRun:
    dataset: str
    out: Path
    train: TrainSettings
    data: AdaptDataConfig = field(default_factory=AdaptDataConfig)
    command: str | None = None
    ranker_users: int = 300  # loo validation users the likelihood ranker is measured on (0: not measured)


def run_adapt(settings: Settings, run: AdaptRun, progress: bool = True,
              stop_after: int | None = None) -> dict[str, Any]:
    """Domain adaptation: continued pretraining of a LoRA on the catalog and the training histories as
    text; the adapter it writes is the starting point of the task fine-tunes (`--init-adapter`)."""
    from eval.protocols import PROTOCOLS
    from index.loaders import load_dataset
    from train.adapt_data import adapt_texts, load_texts, save_texts

    data = load_dataset(run.dataset, settings.data.data_dir)
    data_hash = data.content_hash()
    split = PROTOCOLS["loo"](data)
    key = run.data.fingerprint(data_hash)
    cache = Path("var") / "train" / f"{run.dataset}-adapt-{key}"
    if (cache / "train.jsonl").exists():
        examples, validation = load_texts(cache / "train.jsonl"), load_texts(cache / "valid.jsonl")
    else:
        examples, validation = adapt_texts(split.train, run.data)
        save_texts(cache / "valid.jsonl", validation)
        save_texts(cache / "train.jsonl", examples)  # written last: its presence means the cache is whole
    work = run.out.with_name(run.out.name + ".work")
    model_folder = resolve_model(settings.llm.model, settings.llm.model_cache)
    state, summary = _train_text(model_folder, run.train, work, key, examples, validation, cache, progress,
                                 stop_after)
    if not summary["finished"]:
        return summary
    record = {"task": "adapt", "dataset": run.dataset, "protocol": "loo", "data_hash": data_hash,
              "base_model": base_model_record(model_folder, settings.llm.model), "seed": run.train.seed,
              "data": asdict(run.data), "train": asdict(run.train), "examples": len(examples),
              "examples_by_source": summary["examples_by_source"], "command": run.command}
    _ship_text_adapter(model_folder, work, run.out, False, state, summary, record)
    if run.ranker_users:  # the adapter as the likelihood ranker; its blend with the retriever is chosen here
        ranker = likelihood_ranker_validation(settings, run.dataset, run.out, run.ranker_users, progress)
        summary["ranker_validation"] = ranker
        write_manifest(run.out, {**read_manifest(run.out), "prompt": ranker["prompt"],
                                 "rerank_blend": ranker["blend_search"]["best"], "ranker_validation": ranker})
    return summary


def likelihood_ranker_validation(settings: Settings, dataset: str, adapter: Path, users: int,
                                 progress: bool = True) -> dict[str, Any]:
    """`rerank.method = likelihood` with this adapter, on the fused top-N of the first `users` loo validation
    users (the in-process model): ndcg@10 of the retriever's order, of the ranker at each blend weight, and the
    best weight, which the manifest keeps as the adapter's `rerank_blend`."""
    from agent.assemble import make_configured_llm
    from eval.harness import blend_search, llm_agent, rerank_cases
    from eval.metrics import per_user_metrics

    ranking = settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"backend": "transformers", "adapters": {"adapt": str(adapter)}}),
        "rerank": settings.rerank.model_copy(update={"method": "likelihood", "adapter": "adapt", "blend": 0.0})})
    prepared = prepare(ranking, dataset, "loo", progress=progress)
    cases = prepared.split.validation[:users]
    llm = make_configured_llm(ranking)
    assert llm is not None  # the transformers backend, set above
    try:
        agent = llm_agent(prepared, llm)
        reranked = rerank_cases(agent, cases, progress)
    finally:
        llm.close()
    retriever = per_user_metrics(reranked.retriever, [{c.target} for c in cases])["ndcg@10"].mean()
    return {"users": len(cases), "prompt": agent.prompts["rerank"], "retriever_ndcg@10": round(float(retriever), 5),
            "blend_search": blend_search(reranked.raw, reranked.retriever, cases)}
