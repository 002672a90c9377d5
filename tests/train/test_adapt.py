"""Domain adaptation (`train adapt`): texts from the training part only, and a tiny real run whose adapter
has a manifest, learned the texts, and is where a task fine-tune starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.settings import Settings
from conftest import copy_index, make_settings
from core.hardware import native_bfloat16
from eval.protocols import leave_one_out
from index.loaders import load_dataset
from train.adapt_data import AdaptDataConfig, adapt_texts
from train.lora import CausalTextTask, LoraSettings, LoraTrainer, TrainSettings, autocast, load_base
from train.manifest import read_manifest, verify


def test_texts_are_training_sequences_and_the_catalog(small_data_dir: Path) -> None:
    dataset = load_dataset("movies-small", small_data_dir)
    split = leave_one_out(dataset)
    config = AdaptDataConfig(examples=200, validation_examples=30, window=10, seed=1)
    texts, held = adapt_texts(split.train, config)
    assert len(texts) == 200 and len(held) == 30
    catalog_texts = sum(t.source == "catalog" for t in texts)
    assert catalog_texts == 50  # all 300 entries, 6 to a text (less than the 30% asked: histories fill the rest)
    train_titles: dict[str, list[str]] = {}
    for row in split.train.interactions.sort_values(["timestamp"], kind="stable").itertuples():
        train_titles.setdefault(str(row.user), []).append(dataset.items[str(row.item)].title)
    held_out = {(c.user, dataset.items[c.target].title) for c in [*split.validation, *split.test]}
    held_users = {t.user for t in held}
    assert held_users and not held_users & {t.user for t in texts if t.source == "history"}
    for text in [*texts, *held]:
        if text.source != "history":
            continue
        titles = text.target.split(": ", 1)[1].removesuffix(".").split("; ")
        assert 2 <= len(titles) <= 10
        assert set(titles) <= set(train_titles[text.user])  # a stretch of the user's training sequence
        assert not {(text.user, t) for t in titles} & held_out  # never the user's validation or test item
    catalog = next(t for t in texts if t.source == "catalog")
    assert catalog.target.startswith("movie: ") and "genres: " in catalog.target


def _loss(task: CausalTextTask, model: object, texts: list) -> float:  # type: ignore[type-arg]
    import torch

    model.eval()  # type: ignore[attr-defined]
    with torch.inference_mode(), autocast(native_bfloat16()):  # emulated bf16 made this check take minutes
        return float(task.loss(model, texts))


@pytest.mark.slow  # a tiny training run on the real model, then its ranker validation
def test_tiny_adapt_run_writes_an_adapter_a_task_starts_from(model_folder: Path, small_data_dir: Path,
                                                            small_eval_index: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from train.run import AdaptRun, run_adapt

    monkeypatch.chdir(tmp_path)  # the run caches its texts under ./var
    settings: Settings = make_settings(small_data_dir, copy_index(small_eval_index, tmp_path / "chroma"))
    tiny = TrainSettings(lr=5e-3, micro_batch=2, grad_accum=1, max_steps=3, eval_every=3, patience=5, seed=0,
                         lora=LoraSettings(r=2, alpha=8, targets=("q_proj", "v_proj")))
    run = AdaptRun(dataset="movies-small", out=tmp_path / "adapt", train=tiny,
                   data=AdaptDataConfig(examples=6, validation_examples=4, window=6), ranker_users=4)
    summary = run_adapt(settings, run, progress=False)
    assert summary["finished"] and summary["steps"] == 3 and summary["examples"] == 6
    manifest = read_manifest(tmp_path / "adapt")
    assert manifest["task"] == "adapt" and manifest["dataset"] == "movies-small" and not verify(tmp_path / "adapt")
    assert manifest["validation"]["zero_shot"]["step"] == 0
    ranker = manifest["ranker_validation"]  # measured as the likelihood ranker, which chose the blend
    assert ranker["users"] == 4 and manifest["prompt"] == "rerank_sequence.v1"
    assert manifest["rerank_blend"] == ranker["blend_search"]["best"] and "0.0" in ranker["blend_search"]["ndcg@10"]

    from train.adapt_data import load_texts

    texts = load_texts(Path(summary["examples_dir"]) / "train.jsonl")
    tokenizer, base = load_base(str(model_folder))
    task = CausalTextTask(tokenizer)
    before = _loss(task, base, texts)
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapt"))
    after = _loss(task, adapted, texts)
    assert after < before - 0.05, (before, after)  # it learned the texts it read

    # a task fine-tune starts from it: the trainer's model is the adapted one, with trainable LoRA weights
    trainer: LoraTrainer[object] = LoraTrainer(str(model_folder), CausalTextTask, tiny, tmp_path / "task", "neg_loss",
                                               "task", init_adapter=tmp_path / "adapt")
    assert any(p.requires_grad for p in trainer.model.parameters())
    assert np.isclose(_loss(task, trainer.model, texts), after, atol=1e-3)
