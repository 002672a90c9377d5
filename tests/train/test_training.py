"""LoRA training on the real default model: a few steps on a few examples change the scores, the saved
adapter reloads to the same scores, and a run stopped midway resumes to the same end. The example
builders use only the training part of `loo`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.assemble import Agent
from conftest import make_settings
from core.errors import SettingsError
from core.labels import LABELS
from eval.protocols import leave_one_out
from index.embedder import Embedder
from index.loaders import load_dataset
from prompts.loader import load_prompt
from train.lora import LoraSettings, LoraTrainer, TrainSettings, load_base, save_adapter
from train.rerank import LabelTask, SequenceTask, rank_metrics, ranks
from train.rerank_data import LabelExample, RerankDataConfig, SequenceExample, fold_of, training_examples

TINY = TrainSettings(lr=5e-3, micro_batch=2, grad_accum=1, epochs=2.0, max_steps=4, eval_every=2, patience=10, seed=0,
                     lora=LoraSettings(r=2, alpha=8, targets=("q_proj",)))


def _examples() -> list[LabelExample]:
    """Short real prompts: three movies liked, four candidates, the answer in a different slot each time."""
    template = load_prompt("rerank_listwise", 2)
    history = ["Toy Story (1995)", "Aladdin (1992)", "Lion King, The (1994)"]
    candidates = ["Heat (1995)", "Toy Story 2 (1999)", "Casino (1995)", "Mulan (1998)"]
    out = []
    for shift in range(4):
        shown = candidates[shift:] + candidates[:shift]
        labelled = [{"label": LABELS[i], "title": t, "facts": ""} for i, t in enumerate(shown)]
        prompt = template.render(noun="movie", history=history, request="", candidates=labelled)
        out.append(LabelExample(prompt, 4, shown.index("Toy Story 2 (1999)"), "random", "u"))
    return out


def _scores(task: LabelTask, model: Any, examples: list[LabelExample]) -> np.ndarray:
    import torch

    model.eval()
    with torch.inference_mode():
        return task.label_logits(model, [e.prompt for e in examples]).numpy()[:, :4]


@pytest.mark.slow  # four tiny training runs on the real model
def test_tiny_run_changes_saves_reloads_and_resumes(model_folder: Path, tmp_path: Path) -> None:
    examples = _examples()
    trainer: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, TINY, tmp_path / "a", "ndcg@10",
                                                     "tiny")
    task: LabelTask = trainer.task  # type: ignore[assignment]
    before = _scores(task, trainer.model, examples)

    def evaluate(model: Any) -> dict[str, float]:
        return rank_metrics(ranks(task, model, examples), len(examples))

    state = trainer.train(examples, evaluate, progress=False)
    assert state.step == 4 and [e["step"] for e in state.evaluations] == [0, 2, 4]
    after = _scores(task, trainer.model, examples)
    assert np.abs(after - before).max() > 0.1  # training moved the label scores
    assert np.mean(np.argmax(after, axis=1) == [e.target for e in examples]) > \
        np.mean(np.argmax(before, axis=1) == [e.target for e in examples]) or \
        float(np.mean(after[np.arange(4), [e.target for e in examples]])) > \
        float(np.mean(before[np.arange(4), [e.target for e in examples]]))

    save_adapter(trainer.model, tmp_path / "saved")
    from peft import PeftModel

    _, base = load_base(str(model_folder))
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "saved"))
    assert np.allclose(_scores(task, reloaded, examples), after, atol=1e-4)

    # the same run, stopped after 3 steps (its last checkpoint is at step 2), then started again
    first: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, TINY, tmp_path / "b", "ndcg@10",
                                                   "tiny")
    stopped = first.train(examples, evaluate, progress=False, stop_after=3)
    assert stopped.step == 3
    second: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, TINY, tmp_path / "b", "ndcg@10",
                                                    "tiny")
    resumed = second.train(examples, evaluate, progress=False)
    assert resumed.step == 4 and [e["step"] for e in resumed.evaluations] == [0, 2, 4]
    assert np.allclose(_scores(task, second.model, examples), after, atol=1e-4)  # the same end as uninterrupted

    # with a checkpoint every step, a stop between validations (after step 3) resumes from step 3
    every = TrainSettings(**{**TINY.__dict__, "save_every": 1})
    third: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, every, tmp_path / "c", "ndcg@10",
                                                   "tiny")
    third.train(examples, evaluate, progress=False, stop_after=3)
    assert json.loads((tmp_path / "c" / "checkpoint" / "state.json").read_text())["step"] == 3
    fourth: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, every, tmp_path / "c", "ndcg@10",
                                                    "tiny")
    resumed = fourth.train(examples, evaluate, progress=False)
    assert resumed.step == 4 and [e["step"] for e in resumed.evaluations] == [0, 2, 4]
    assert np.allclose(_scores(task, fourth.model, examples), after, atol=1e-4)


@pytest.mark.slow  # a tiny training run on the real model
def test_likelihood_objective_scores_as_the_agent_and_learns_the_answer(model_folder: Path, tmp_path: Path) -> None:
    """`--objective likelihood`: before training the task's scores are the in-process backend's mean title
    log-probabilities (what `LikelihoodReranker` ranks by); a few steps raise the answer above the others."""
    from agent.llm.base import LLMConfig
    from agent.llm.transformers_backend import TransformersLLM

    template = load_prompt("rerank_sequence", 1)
    prefix = template.render(noun="movie", history=["Toy Story (1995)", "Aladdin (1992)", "Lion King, The (1994)"])
    titles = ["Heat (1995)", "Toy Story 2 (1999)", "Casino (1995)", "Mulan (1998)"]
    examples = [SequenceExample(prefix, tuple(f" {t};" for t in titles[s:] + titles[:s]),
                                (titles[s:] + titles[:s]).index("Casino (1995)"), "random", "u") for s in range(4)]
    settings = TrainSettings(**{**TINY.__dict__, "lr": 2e-2})
    trainer: LoraTrainer[SequenceExample] = LoraTrainer(str(model_folder), SequenceTask, settings, tmp_path,
                                                        "ndcg@10", "tiny-sequence")
    task: SequenceTask = trainer.task  # type: ignore[assignment]

    def margins(model: Any) -> np.ndarray:
        """The answer's score minus the best other candidate's, per example."""
        import torch

        model.eval()
        with torch.inference_mode():
            rows = task.scores(model, examples)
        return np.array([row[e.target] - np.delete(row, e.target).max() for row, e in zip(rows, examples, strict=True)])

    import torch

    llm = TransformersLLM(LLMConfig(model=str(model_folder), backend="transformers"))
    try:
        served = llm.continuation_logprobs(prefix, list(examples[0].continuations))
    finally:
        llm.close()
    trainer.model.eval()
    with torch.inference_mode():
        ours = task.scores(trainer.model, examples[:1])[0]  # LoRA's B starts at zero: the base model's scores
    assert np.allclose(ours, [total / count for total, count in served], atol=2e-3)
    before = margins(trainer.model)
    assert (before < 0).all()  # the base model prefers another title in every order

    state = trainer.train(examples, lambda model: rank_metrics(ranks(task, model, examples), len(examples)),
                          progress=False)
    assert state.step == 4
    after = margins(trainer.model)
    assert after.mean() > before.mean() + 0.5 and (after > 0).sum() >= 2, (before, after)


def test_a_checkpoint_of_other_settings_is_refused(model_folder: Path, tmp_path: Path) -> None:
    from train.lora import TrainingError

    examples = _examples()
    trainer: LoraTrainer[LabelExample] = LoraTrainer(str(model_folder), LabelTask, TINY, tmp_path, "ndcg@10", "tiny")
    trainer.train(examples, lambda model: {"ndcg@10": 0.0}, progress=False, stop_after=1)
    other = TrainSettings(**{**TINY.__dict__, "lr": 1e-3})
    with pytest.raises(TrainingError, match="other settings"):
        LoraTrainer(str(model_folder), LabelTask, other, tmp_path, "ndcg@10", "tiny").train(
            examples, lambda model: {"ndcg@10": 0.0}, progress=False)


@pytest.mark.slow  # training examples from two fold indexes, each built from scratch: about 27 CPU seconds
def test_rerank_examples_come_from_training_prefixes_only(small_agent: Agent, small_data_dir: Path,
                                                         embedder: Embedder, tmp_path: Path) -> None:
    """Every example is a prefix of a user's training sequence (never the validation or test item), hard
    lists come from a retriever fitted without that user's fold, and the answer's slot is right."""
    dataset = load_dataset("movies-small", small_data_dir)
    split = leave_one_out(dataset)
    settings = make_settings(small_data_dir, tmp_path / "chroma")  # the fold indexes, not in the shared folder
    config = RerankDataConfig(negatives="mix", examples=40, per_user=3, folds=2, request_fraction=0.5, seed=3)
    template = load_prompt("rerank_listwise", 3)
    examples = training_examples(settings, split, template, config, embedder, progress=False)
    assert len(examples) == 40 and {e.kind for e in examples} == {"hard", "random"}
    held_out = {(c.user, c.target) for c in [*split.validation, *split.test]}
    train_items: dict[str, set[str]] = {}
    for row in split.train.interactions.itertuples():
        train_items.setdefault(str(row.user), set()).add(str(row.item))
    for e in examples:
        assert e.labels == len(e.candidates) == 20 and 0 <= e.target < 20 and len(set(e.candidates)) == 20
        answer = e.candidates[e.target]
        assert answer in train_items[e.user], (e.user, answer)  # an item of the user's training part
        assert (e.user, answer) not in held_out  # never a validation or test target
        title = small_agent.index.titles[answer].split(" (")[0]
        assert f"({LABELS[e.target]}) {title}" in e.prompt
    assert {fold_of(e.user, 2) for e in examples} == {0, 1}
    assert any("Their request:" in e.prompt for e in examples)

    # the likelihood objective's lists from the same prefixes, cut to 8 candidates (the answer always kept)
    sequence = load_prompt("rerank_sequence", 1)
    short = training_examples(settings, split, sequence, replace(config, list_size=8), embedder,
                              progress=False)
    assert len(short) == 40 and {e.kind for e in short} == {"hard", "random"}
    for s in short:
        assert isinstance(s, SequenceExample) and s.labels == len(s.candidates) == 8 and 0 <= s.target < 8
        assert (s.user, s.candidates[s.target]) not in held_out
        assert s.continuations == tuple(f" {small_agent.index.titles[c]};" for c in s.candidates)
        assert s.prefix.startswith("A movie lover's movies") and s.prefix.endswith(";")
    with pytest.raises(SettingsError, match="list_size"):
        RerankDataConfig(list_size=1)


def test_precision_follows_the_hardware_unless_a_flag_says_otherwise() -> None:
    """bf16 autocast only where bfloat16 is native (emulated it made a step over 12 times slower than float32
    on an AVX2-only CPU); `--fp32` and `--bf16` override it and exclude each other; the choice is recorded in
    the settings the fingerprint and the manifest are made from."""
    from app.cli import build_parser
    from app.training import _train_settings
    from core.hardware import native_bfloat16

    parser = build_parser()

    def bf16(*flags: str) -> bool:
        return _train_settings(parser.parse_args(["train", "adapt", *flags])).bf16

    assert bf16() is native_bfloat16() and TrainSettings().bf16 is native_bfloat16()
    assert bf16("--fp32") is False and bf16("--bf16") is True
    assert TrainSettings(bf16=False).fingerprint("x") != TrainSettings(bf16=True).fingerprint("x")
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "adapt", "--fp32", "--bf16"])
