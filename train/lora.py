"""A LoRA training loop for the base model, the same on a 2-core CPU and on a GPU.

One loop for every task: a task turns a micro-batch of examples into a loss. The loop adds LoRA
(peft) to the base model, trains with AdamW and gradient accumulation under bf16 autocast where the
hardware has native bfloat16 (float32 elsewhere: `native_bfloat16`), validates
every `eval_every` optimizer steps, keeps the best adapter, stops early after `patience` evaluations
without improvement, and writes a checkpoint (adapter, optimizer, scheduler, random state) after each
evaluation and every `save_every` steps between them, so a killed run resumes where its last checkpoint
left it and ends at the same step.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from core.errors import RecagentError
from core.hardware import native_bfloat16

E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


class Task(Protocol[E_contra]):
    def loss(self, model: Any, examples: Sequence[E_contra]) -> Any:
        """The mean loss of a micro-batch (a scalar tensor with a gradient)."""
        ...


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 2e-4
    warmup_steps: int = 10
    micro_batch: int = 4
    grad_accum: int = 4
    epochs: float = 1.0
    eval_every: int = 40  # optimizer steps
    patience: int = 4  # evaluations without improvement before stopping
    # optimizer steps between checkpoints that are not validations (a kill loses at most these); it does
    # not change the run's results, so it is not part of the fingerprint
    save_every: int = 10
    max_steps: int | None = None
    seed: int = 0
    # bfloat16 autocast where it is native (AMX/AVX512-BF16 CPU, recent GPU), float32 where torch would
    # emulate it; resolved when the settings are made, so the fingerprint and the manifest record the choice
    bf16: bool = field(default_factory=native_bfloat16)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def fingerprint(self, data_key: str) -> str:
        settings = {k: v for k, v in asdict(self).items() if k != "save_every"}
        return hashlib.sha256(json.dumps([settings, data_key], sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    best_metric: float = -math.inf
    best_step: int = 0
    bad_evals: int = 0
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False


class TrainingError(RecagentError):
    pass


@functools.cache
def _tokenizer(model_folder: str) -> Any:
    """The base model's tokenizer, left-padded, loaded once per process: Gemma's takes ~6 s to load, and a
    training run (validation, the task fine-tune after `adapt`, a resume) loads the base model several times.
    Training is single-threaded and nothing here changes the tokenizer after this."""
    from agent.llm.transformers_backend import load_tokenizer

    return load_tokenizer(model_folder)


def load_base(model_folder: str, lora: LoraSettings | None = None) -> tuple[Any, Any]:
    """The tokenizer and the base model in fp32 (bf16 autocast does the matmuls), with LoRA if asked."""
    import torch
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = _tokenizer(model_folder)
    model: Any = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=list(lora.targets), task_type="CAUSAL_LM"))
    return tokenizer, model


def autocast(enabled: bool) -> Any:
    import torch

    return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16, enabled=enabled)


def save_adapter(model: Any, folder: Path, bf16: bool = False, base_name: str = "default") -> None:
    """Write the adapter to `folder` atomically; `bf16` halves the shipped size."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    config_path = staging / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name  # not a path on the machine that trained it
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if bf16:
        import torch
        from safetensors.torch import load_file, save_file

        weights = staging / "adapter_model.safetensors"
        tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(weights)).items()}
        save_file(tensors, str(weights), metadata={"format": "pt"})
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


class LoraTrainer(Generic[E]):
    """Trains a LoRA adapter on `examples` with `task`; `evaluate(model)` returns validation metrics."""

    def __init__(self, model_folder: str, task_factory: Callable[[Any], Task[E]], settings: TrainSettings,
                 out_dir: Path, metric: str, data_key: str, init_adapter: Path | None = None) -> None:
        import torch

        self.settings = settings
        self.out_dir = out_dir
        self.metric = metric
        self.fingerprint = settings.fingerprint(data_key + (str(init_adapter) if init_adapter else ""))
        torch.manual_seed(settings.seed)
        self.tokenizer, self.model = load_base(model_folder, None if init_adapter else settings.lora)
        if init_adapter is not None:  # continue from an adapter (e.g. the domain-adapted one)
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(init_adapter), is_trainable=True)
        self.task = task_factory(self.tokenizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        self.state = TrainState()

    # checkpoints ---------------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    @property
    def staging_dir(self) -> Path:
        """Where the next checkpoint is written before it replaces `checkpoint_dir`."""
        return self.out_dir / "checkpoint.partial"

    def _save_checkpoint(self, scheduler: Any) -> None:
        import torch

        staging = self.staging_dir
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_adapter(self.model, staging / "adapter")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({"fingerprint": self.fingerprint, **asdict(self.state)}))
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        staging.rename(self.checkpoint_dir)

    def _resume(self, scheduler: Any) -> bool:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state_path = self.checkpoint_dir / "state.json"
        staged = self.staging_dir
        if not state_path.exists() and (staged / "state.json").exists():
            # killed between removing the old checkpoint and renaming the new one: state.json is written
            # last, so the staged one is whole
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
            staged.rename(self.checkpoint_dir)
        if not state_path.exists():
            return False
        saved = json.loads(state_path.read_text())
        if saved.pop("fingerprint") != self.fingerprint:
            raise TrainingError(f"{self.checkpoint_dir} holds a checkpoint of a run with other settings or data; "
                                f"remove it or choose another --out")
        set_peft_model_state_dict(self.model, load_file(str(self.checkpoint_dir / "adapter" /
                                                            "adapter_model.safetensors")))
        blob = torch.load(self.checkpoint_dir / "optimizer.pt", weights_only=False)
        self.optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        torch.set_rng_state(blob["torch_rng"])
        self.state = TrainState(**saved)
        return True

    # the loop ------------------------------------------------------------------------------------

    def train(self, examples: Sequence[E], evaluate: Callable[[Any], dict[str, float]],
              progress: bool = True, stop_after: int | None = None) -> TrainState:
        """Train to the end (or early stop); `stop_after` ends the process's work after that many
        optimizer steps, as a kill would (for testing resume)."""
        import torch

        s = self.settings
        per_step = s.micro_batch * s.grad_accum
        total = max(1, math.ceil(len(examples) * s.epochs / per_step))
        if s.max_steps:
            total = min(total, s.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(
            (step + 1) / max(s.warmup_steps, 1), max(0.1, 1 - step / total)))
        resumed = self._resume(scheduler)
        self.state.total_steps = total
        rng = np.random.default_rng(s.seed)
        epochs = math.ceil(s.epochs) + 1
        order = np.concatenate([rng.permutation(len(examples)) for _ in range(epochs)])
        if not resumed:
            self._evaluate(evaluate, scheduler)
        bar = tqdm(total=total, initial=self.state.step, desc="training", unit="step", disable=not progress)
        started = time.perf_counter() - self.state.seconds
        done_here = 0
        while self.state.step < total and not self.state.stopped_early:
            self.model.train()
            running = 0.0
            for micro in range(s.grad_accum):
                start = (self.state.step * s.grad_accum + micro) * s.micro_batch
                batch = [examples[int(i)] for i in order[start:start + s.micro_batch]]
                with autocast(s.bf16):
                    loss = self.task.loss(self.model, batch) / s.grad_accum
                loss.backward()
                running += float(loss.detach())
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
            self.optimizer.step()
            scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state.step += 1
            self.state.losses.append(round(running, 5))
            self.state.seconds = time.perf_counter() - started
            done_here += 1
            bar.update(1)
            recent = self.state.losses[-20:]
            bar.set_postfix({"loss": f"{np.mean(recent):.3f}", f"val_{self.metric}": f"{self.state.best_metric:.4f}"})
            if self.state.step % s.eval_every == 0 or self.state.step == total:
                self._evaluate(evaluate, scheduler)
                bar.set_postfix({"loss": f"{np.mean(recent):.3f}",
                                 f"val_{self.metric}": f"{self.state.evaluations[-1][self.metric]:.4f}"})
            elif s.save_every > 0 and self.state.step % s.save_every == 0:
                self._save_checkpoint(scheduler)
            if stop_after is not None and done_here >= stop_after:
                break
        bar.close()
        return self.state

    def _evaluate(self, evaluate: Callable[[Any], dict[str, float]], scheduler: Any) -> None:
        import torch

        self.model.eval()
        with torch.inference_mode(), autocast(self.settings.bf16):
            metrics = evaluate(self.model)
        self.state.evaluations.append({"step": self.state.step, **{k: round(v, 5) for k, v in metrics.items()}})
        value = metrics[self.metric]
        if value > self.state.best_metric:
            self.state.best_metric, self.state.best_step, self.state.bad_evals = value, self.state.step, 0
            save_adapter(self.model, self.out_dir / "best")
        else:
            self.state.bad_evals += 1
            if self.state.bad_evals >= self.settings.patience:
                self.state.stopped_early = True
        self._save_checkpoint(scheduler)


class CausalTextTask:
    """Supervised fine-tuning: the loss is the cross-entropy of the target tokens after the prompt.

    The prompt and the target are tokenized apart, as at inference (where the prompt is tokenized alone
    and the model continues it); only the last target-length positions get logits (`logits_to_keep`).
    With an empty prompt the whole target is learned (continued pretraining on plain text).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._start_id = int(start)

    def _batch(self, pairs: Sequence[tuple[str, str]]) -> tuple[Any, Any, int]:
        import torch

        rows, targets = [], []
        for prompt, target in pairs:
            # an empty prompt (plain text to learn, as in domain adaptation) starts from the BOS token, so
            # that the text's first token is predicted too
            p = self.tokenizer(prompt)["input_ids"] if prompt else [self._start_id]
            t = self.tokenizer(target, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            rows.append(p + t)
            targets.append(len(t))
        width = max(len(r) for r in rows)
        keep = max(targets) + 1
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), keep - 1), -100, dtype=torch.long)
        for i, (row, n) in enumerate(zip(rows, targets, strict=True)):
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
            labels[i, keep - 1 - n:] = torch.tensor(row[-n:])
        return {"input_ids": ids, "attention_mask": mask}, labels, keep

    def loss(self, model: Any, examples: Sequence[Any]) -> Any:
        import torch

        batch, labels, keep = self._batch([(e.prompt, e.target) for e in examples])
        logits = model(**batch, logits_to_keep=keep).logits[:, :-1, :].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)
