"""`recagent train rerank`: a LoRA ranker, for either of the agent's two rerankers (`--objective`).

`labels` (the listwise ranker): the loss is the cross-entropy of the answer's label among the labels shown
(a softmax restricted to those label tokens), at the last position only (`logits_to_keep=1`).

`likelihood` (the likelihood ranker): each candidate scores the mean log-probability of its title's tokens
after the history written as a sequence, exactly as `LikelihoodReranker` scores it; the loss is the
cross-entropy of the answer among the list's scores. Domain adaptation (`train adapt`) teaches the model to
continue such sequences; this teaches it to prefer the next item over the other candidates shown, hard
negatives (the retriever's own top 20) included.

Either way checkpoints are chosen by the validation ndcg@10 of the fused retriever's top 20 reranked: the
way the agent uses the ranker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.labels import LABELS
from train.lora import LoraTrainer, TrainSettings, TrainState
from train.rerank_data import LabelExample, RankExample, SequenceExample, ValidationSet


class LabelTask:
    def __init__(self, tokenizer: Any, batch_size: int = 8) -> None:
        import torch

        self.tokenizer = tokenizer
        self.batch_size = batch_size  # prompts per forward pass when scoring
        ids = []
        for label in LABELS:
            tokens = tokenizer.encode(label, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(f"label {label!r} is not one token for this tokenizer")
            ids.append(tokens[0])
        self.label_ids = torch.tensor(ids)

    def label_logits(self, model: Any, prompts: Sequence[str]) -> Any:
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(**batch, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.label_ids.to(device)].float()

    def loss(self, model: Any, examples: Sequence[LabelExample]) -> Any:
        import torch

        logits = self.label_logits(model, [e.prompt for e in examples])
        shown = torch.arange(len(LABELS))[None, :] < torch.tensor([e.labels for e in examples])[:, None]
        logits = logits.masked_fill(~shown.to(logits.device), float("-inf"))
        targets = torch.tensor([e.target for e in examples], device=logits.device)
        return torch.nn.functional.cross_entropy(logits, targets)

    def scores(self, model: Any, examples: Sequence[LabelExample]) -> list[np.ndarray]:
        """Log-probabilities of the labels shown, per example (a softmax over those labels)."""
        import torch

        out = []
        for start in range(0, len(examples), self.batch_size):
            chunk = examples[start:start + self.batch_size]
            logits = self.label_logits(model, [e.prompt for e in chunk])
            for row, e in zip(logits, chunk, strict=True):
                out.append(torch.log_softmax(row[: e.labels], dim=-1).cpu().numpy())
        return out


class SequenceTask:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def list_scores(self, model: Any, example: SequenceExample) -> Any:
        """Each candidate's mean title-token log-probability after the history (a tensor, in slot order)."""
        import torch

        from agent.llm.transformers_backend import continuation_token_logprobs

        rows = continuation_token_logprobs(model, self.tokenizer, example.prefix, example.continuations)
        return torch.stack([row.mean() for row in rows]).float()

    def loss(self, model: Any, examples: Sequence[SequenceExample]) -> Any:
        import torch

        losses = [torch.nn.functional.cross_entropy(self.list_scores(model, e)[None, :],
                                                    torch.tensor([e.target], device=next(model.parameters()).device))
                  for e in examples]
        return torch.stack(losses).mean()

    def scores(self, model: Any, examples: Sequence[SequenceExample]) -> list[np.ndarray]:
        """The candidates' scores per example, as the agent's `LikelihoodReranker` computes them (one list at a
        time: the history is computed once for all of a list's candidates)."""
        return [self.list_scores(model, e).detach().cpu().numpy() for e in examples]


RankTask = LabelTask | SequenceTask
TASKS: dict[str, Callable[[Any], RankTask]] = {"labels": LabelTask, "likelihood": SequenceTask}


def ranks(task: RankTask, model: Any, examples: Sequence[Any]) -> list[int]:
    """The 0-based rank the model gives each example's answer (ties keep the shown order)."""
    return [rank_of(row, e.target, 0.0) for row, e in zip(task.scores(model, examples), examples, strict=True)]


def rank_of(scores: np.ndarray, target: int, blend: float) -> int:
    """The answer's rank once `blend` times the shown order's prior, -log(1 + slot), is added."""
    blended = scores - blend * np.log1p(np.arange(len(scores)))
    order = sorted(range(len(scores)), key=lambda i: (-blended[i], i))
    return order.index(target)


BLENDS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def choose_blend(scores: Sequence[np.ndarray], validation: ValidationSet) -> dict[str, Any]:
    """The weight of the retriever's order (shown order of the validation lists) that gives the best
    validation ndcg@10, with the figure for every weight tried."""
    tried = {b: rank_metrics([rank_of(s, e.target, b) for s, e in zip(scores, validation.examples, strict=True)],
                             validation.users)["ndcg@10"] for b in BLENDS}
    best = max(tried, key=lambda b: (round(tried[b], 6), -b))
    return {"blend": best, "validation_ndcg@10": {str(b): round(v, 5) for b, v in tried.items()}}


def rank_metrics(ranks: Sequence[int], users: int) -> dict[str, float]:
    """ndcg@10 and recall@10 over the covered users and over all validation users."""
    ndcg = np.array([1.0 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks])
    hit = np.array([1.0 if r < 10 else 0.0 for r in ranks])
    return {"ndcg@10": float(ndcg.sum() / max(users, 1)), "recall@10": float(hit.sum() / max(users, 1)),
            "ndcg@10_covered": float(ndcg.mean()) if len(ndcg) else 0.0}


def train_ranker(model_folder: str, examples: Sequence[RankExample], validation: ValidationSet,
                 settings: TrainSettings, out_dir: Path, data_key: str, progress: bool = True,
                 init_adapter: Path | None = None, stop_after: int | None = None, objective: str = "labels"
                 ) -> tuple[TrainState, dict[str, Any]]:
    """Train; returns the final state and a summary (retriever and zero-shot validation figures included)."""
    trainer: LoraTrainer[Any] = LoraTrainer(model_folder, TASKS[objective], settings, out_dir, "ndcg@10",
                                            data_key, init_adapter)
    task: RankTask = trainer.task  # type: ignore[assignment]

    def evaluate(model: Any) -> dict[str, float]:
        return rank_metrics(ranks(task, model, validation.examples), validation.users)

    started = time.perf_counter()
    state = trainer.train(examples, evaluate, progress=progress, stop_after=stop_after)
    summary = {"examples": len(examples), "examples_by_kind": _kinds(examples),
               "validation_users": validation.users, "validation_covered": len(validation.examples),
               "retriever_validation": rank_metrics(validation.retriever_slots, validation.users),
               "evaluations": state.evaluations, "best_step": state.best_step, "steps": state.step,
               "total_steps": state.total_steps, "stopped_early": state.stopped_early,
               "objective": objective, "train_seconds": round(state.seconds, 1), "wall_seconds_this_process":
               round(time.perf_counter() - started, 1), "settings": asdict(settings)}
    return state, summary


def _kinds(examples: Sequence[RankExample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return counts
