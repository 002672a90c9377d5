"""Texts for domain adaptation (`recagent train adapt`): the catalog and the users' histories as plain text.

Continued pretraining of a LoRA on these, before the task fine-tunes, is meant to teach the base model
the catalog's titles and which items follow which. Only the training part of `loo` is written: the
histories are the training sequences (no validation or test target appears), and the validation texts
are the histories of a held-out share of the users, so the loss that chooses the checkpoint is measured
on sequences the adapter never read.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from index.collab import user_histories
from index.dataset import Dataset, Item
from prompts.loader import load_prompt, prompt_text
from train.jsonl import read_examples, write_examples


@dataclass(frozen=True)
class AdaptExample:
    """One text the model learns to continue from its first token (`prompt` is empty)."""

    target: str
    source: str  # "catalog" or "history"
    user: str = ""  # whose history it is
    prompt: str = ""


@dataclass(frozen=True)
class AdaptDataConfig:
    examples: int = 2000  # training texts kept (sampled from all that were written)
    validation_examples: int = 100
    history_fraction: float = 0.7  # share of the training texts that are histories (the rest: catalog)
    window: int = 20  # items per history text
    items_per_text: int = 6  # catalog entries packed into one text
    holdout: int = 10  # one user in `holdout` (by a hash of the id) is kept for validation
    seed: int = 0

    def fingerprint(self, data_hash: str) -> str:
        raw = json.dumps([asdict(self), data_hash, "v1"], sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _held_out(user: str, holdout: int) -> bool:
    return int(hashlib.sha1(f"adapt:{user}".encode()).hexdigest(), 16) % holdout == 0


def catalog_text(item: Item, noun: str) -> str:
    """'movie: Toy Story (1995). genres: Adventure, Animation. tags: pixar, fun.'"""
    parts = [f"{noun}: {item.title}."]
    for key, value in item.attributes.items():
        if isinstance(value, list):
            if value:
                parts.append(f"{key}: {', '.join(str(v) for v in value[:8])}.")
        elif value not in (None, ""):
            parts.append(f"{key}: {value}.")
    if item.description:
        parts.append(item.description[:300])
    return prompt_text(" ".join(parts))  # the catalog's text as the prompts show it


def history_text(titles: Sequence[str], noun: str) -> str:
    """A stretch of one user's sequence, oldest first, in the words of the likelihood ranker's prompt
    (`rerank_sequence`), which then asks for the next title: "...: Heat (1995); Toy Story (1995)."."""
    return f"{load_prompt('rerank_sequence').render(noun=noun, history=list(titles[:-1]))} {prompt_text(titles[-1])}."


def adapt_texts(train: Dataset, config: AdaptDataConfig) -> tuple[list[AdaptExample], list[AdaptExample]]:
    """Training and validation texts from the training part: catalog entries packed a few to a text, and
    each user's training sequence cut into windows; held-out users' windows are the validation texts."""
    rng = random.Random(config.seed)
    noun = train.item_noun
    ids = list(train.items)
    fit: list[AdaptExample] = []
    held: list[AdaptExample] = []
    for history in user_histories(train.interactions, ids):
        titles = [train.items[ids[p]].title for p in history.items]
        bucket = held if _held_out(history.user, config.holdout) else fit
        for start in range(0, len(titles) - 1, config.window):  # windows of at least two items
            window = titles[start:start + config.window]
            if len(window) >= 2:
                bucket.append(AdaptExample(history_text(window, noun), "history", history.user))
    entries = [catalog_text(train.items[i], noun) for i in ids]
    rng.shuffle(entries)
    catalog = [AdaptExample("\n".join(entries[i:i + config.items_per_text]), "catalog")
               for i in range(0, len(entries), config.items_per_text)]
    rng.shuffle(fit)
    rng.shuffle(held)
    n_catalog = min(len(catalog), config.examples - round(config.examples * config.history_fraction))
    n_history = min(len(fit), config.examples - n_catalog)  # a small catalog leaves more room for histories
    chosen = fit[:n_history] + catalog[:n_catalog]
    rng.shuffle(chosen)
    return chosen, held[:config.validation_examples]


def save_texts(path: Path, examples: Sequence[AdaptExample]) -> None:
    write_examples(path, examples)


def load_texts(path: Path) -> list[AdaptExample]:
    return read_examples(path, lambda row: AdaptExample(**row))
