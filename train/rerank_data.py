"""Training and validation examples for the rankers, from the training part of `loo` only.

With a `rerank_listwise` template an example is a labelled prompt (`LabelExample`, the listwise ranker's);
with `rerank_sequence` it is the history written as one sequence and each candidate's title as its
continuation (`SequenceExample`, the likelihood ranker's). Both come from the same lists.

Every example is a prefix of a user's *training* sequence: the history before position t and the item
at t as the answer, shown among 19 other candidates (LlamaRec's recipe). Negatives are either random
unseen items in a shuffled list (LlamaRec, and the `candidates20` protocol), or *hard*: the fused
retriever's top 20, in its order, when the answer is among them (what the ranker sees in the agent).

The hard lists must not come from a retriever that has already seen the answer: a model fitted on the
whole training part has learned each (prefix -> next item) pair it would be asked about. So users are
split into folds and each fold's examples come from a retriever fitted on the other folds' users only
(every retriever here is item-to-item, so it scores any history). Validation targets are used only to
score checkpoints, never as examples; test is not touched.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from agent.assemble import build_agent, index_dataset
from agent.catalog import LoadedIndex
from agent.evidence import candidate_facts
from agent.recommender import Recommender
from agent.rerank import RerankInput, render_prompt, sequence_texts
from agent.settings import Settings
from core.errors import SettingsError
from core.labels import MAX_LABELLED
from eval.protocols import Case, Split
from index.collab import user_histories
from index.dataset import Dataset
from index.embedder import Embedder
from prompts.loader import PromptTemplate
from train.jsonl import read_examples, write_examples

Negatives = Literal["hard", "random", "mix"]


@dataclass(frozen=True)
class LabelExample:
    """A rendered ranking prompt whose answer is the label in slot `target` of `labels` shown."""

    prompt: str
    labels: int
    target: int
    kind: str  # "hard" or "random"
    user: str
    candidates: tuple[str, ...] = ()  # the item ids shown, slot by slot


@dataclass(frozen=True)
class SequenceExample:
    """A likelihood-ranker list: the history written as one sequence (`prefix`), each candidate's title as
    its continuation, slot by slot, and the answer's slot `target`."""

    prefix: str
    continuations: tuple[str, ...]
    target: int
    kind: str
    user: str
    candidates: tuple[str, ...] = ()

    @property
    def labels(self) -> int:
        return len(self.continuations)


RankExample = LabelExample | SequenceExample


@dataclass(frozen=True)
class RerankDataConfig:
    negatives: Negatives = "mix"
    hard_fraction: float = 0.5  # for "mix"
    examples: int = 4000
    per_user: int = 40  # prefixes sampled per user before the hard filter
    min_history: int = 3
    folds: int = 5
    request_fraction: float = 0.2  # examples that carry a request built from the answer's attributes
    history_window: int = 10
    seed: int = 0
    # candidates per training list, the answer included (validation lists are always the retriever's 20):
    # fewer makes a likelihood step cheaper, since every candidate's title costs logits over the vocabulary
    list_size: int = MAX_LABELLED

    def __post_init__(self) -> None:
        if not 2 <= self.list_size <= MAX_LABELLED:
            raise SettingsError(f"list_size must be 2..{MAX_LABELLED}, got {self.list_size}")

    def fingerprint(self, template: PromptTemplate, data_hash: str) -> str:
        raw = json.dumps([asdict(self), template.id, template.template, data_hash, "v1"], sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def fold_of(user: str, folds: int) -> int:
    return int(hashlib.sha1(user.encode()).hexdigest(), 16) % folds


def _fold_index(settings: Settings, train: Dataset, fold: int, folds: int, embedder: Embedder | None) -> Recommender:
    """The retriever fitted on every training interaction of users outside `fold`."""
    users = train.interactions["user"].astype(str)
    keep = users.map(lambda u: fold_of(u, folds) != fold)
    data = replace(train, name=f"{train.name}-f{fold}of{folds}",
                   interactions=train.interactions[keep.to_numpy()].copy())
    index_dataset(settings, data, embedder, progress=False, purpose="train")
    return build_agent(settings, namespace=data.name, llm=None, embedder=embedder).recommender


def _request_for(index: LoadedIndex, target: str, candidates: Sequence[str], rng: random.Random) -> str | None:
    """A short request that the answer fits and not every candidate does, from its attribute values."""
    values = index.descriptive_values(target)  # [] without a descriptive attribute: no request
    rng.shuffle(values)
    for value in values:
        having = sum(1 for c in candidates if value in index.descriptive_values(c))
        if having < len(candidates):
            phrase = rng.choice(["Something {v}", "I'm in the mood for {v}", "Any good {v} {n}s?",
                                 "Recommend me a {v} {n}", "{v}, please"])
            return phrase.format(v=str(value).lower() if rng.random() < 0.5 else value, n=index.noun)
    return None


def _example(index: LoadedIndex, template: PromptTemplate, history: Sequence[str], candidates: list[str],
             target: str, kind: str, user: str, request: str | None, window: int) -> RankExample:
    """The list rendered for the ranker the template is for: the likelihood ranker's sequence
    (`rerank_sequence`, which shows no request) or a labelled listwise prompt."""
    if template.name == "rerank_sequence":
        prefix, continuations = sequence_texts(index, template, history, candidates, window)
        return SequenceExample(prefix, tuple(continuations), candidates.index(target), kind, user, tuple(candidates))
    facts = candidate_facts(index, history, candidates)
    titles = index.titles
    item = RerankInput([titles[h] for h in history[-window:] if h in titles],
                       [(c, titles[c], f) for c, f in zip(candidates, facts, strict=True)], request)
    prompt = render_prompt(template, item, list(range(len(candidates))), index.noun, window)
    return LabelExample(prompt, len(candidates), candidates.index(target), kind, user, tuple(candidates))


def training_examples(settings: Settings, split: Split, template: PromptTemplate, config: RerankDataConfig,
                      embedder: Embedder | None = None, progress: bool = True) -> list[RankExample]:
    """Examples from prefixes of the training sequences, with hard, random or mixed negatives."""
    rng = random.Random(config.seed)
    train = split.train
    ids = list(train.items)
    histories = user_histories(train.interactions, ids)
    examples: list[RankExample] = []
    for fold in range(config.folds):
        members = [h for h in histories if fold_of(h.user, config.folds) == fold]
        recommender = _fold_index(settings, train, fold, config.folds, embedder)
        index = recommender.index
        for history in tqdm(members, desc=f"examples (fold {fold + 1}/{config.folds})", unit="user",
                            disable=not progress):
            sequence = [ids[p] for p in history.items]
            times = [int(t) for t in history.timestamps]
            positions = list(range(config.min_history, len(sequence)))
            for t in rng.sample(positions, min(config.per_user, len(positions))):
                prefix, target = sequence[:t], sequence[t]
                if target in prefix:
                    continue
                hard = config.negatives == "hard" or (config.negatives == "mix" and
                                                      rng.random() < config.hard_fraction)
                if hard:
                    found = recommender.candidates(history=prefix, timestamps=times[:t], k=MAX_LABELLED)
                    candidates = [c.id for c in found]
                    if target not in candidates:
                        continue
                else:
                    seen = set(prefix) | {target}
                    negatives: list[str] = []
                    while len(negatives) < MAX_LABELLED - 1:
                        pick = ids[rng.randrange(len(ids))]
                        if pick not in seen and pick not in negatives:
                            negatives.append(pick)
                    candidates = [target, *negatives]
                    rng.shuffle(candidates)
                if config.list_size < len(candidates):  # the answer and a sample of the others, in their order
                    kept = set(rng.sample([c for c in candidates if c != target], config.list_size - 1))
                    candidates = [c for c in candidates if c == target or c in kept]
                request = _request_for(index, target, candidates, rng) if rng.random() < config.request_fraction \
                    else None
                examples.append(_example(index, template, prefix, candidates, target, "hard" if hard else "random",
                                         history.user, request, config.history_window))
    rng.shuffle(examples)
    if config.negatives == "mix":  # keep the asked-for share of hard examples after the hard filter
        hard_ones = [e for e in examples if e.kind == "hard"]
        random_ones = [e for e in examples if e.kind == "random"]
        n_hard = min(len(hard_ones), round(config.examples * config.hard_fraction))
        examples = hard_ones[:n_hard] + random_ones[:config.examples - n_hard]
        rng.shuffle(examples)
    return examples[:config.examples]


@dataclass
class ValidationSet:
    """Validation users whose target is in the retriever's top 20, as prompts in the retriever's order.

    The others score 0 whatever the order, so metrics over all users are these times `covered / users`.
    """

    examples: list[RankExample]
    users: int
    retriever_slots: list[int]  # the target's slot in the retriever's order (for its own metrics)


def validation_set(recommender: Recommender, cases: Sequence[Case], template: PromptTemplate,
                   history_window: int = 10, progress: bool = True) -> ValidationSet:
    examples = []
    slots = []
    for case in tqdm(cases, desc="validation lists", unit="user", disable=not progress):
        found = [c.id for c in recommender.candidates(history=case.history, timestamps=case.timestamps,
                                                      k=MAX_LABELLED)]
        if case.target in found:
            examples.append(_example(recommender.index, template, case.history, found, case.target, "hard",
                                     case.user, None, history_window))
            slots.append(found.index(case.target))
    return ValidationSet(examples, len(cases), slots)


def save_examples(path: Path, examples: Sequence[RankExample]) -> None:
    write_examples(path, examples)


def load_examples(path: Path) -> list[RankExample]:
    def make(row: dict[str, Any]) -> RankExample:
        row = {**row, "candidates": tuple(row.get("candidates", ()))}
        if "prefix" in row:
            return SequenceExample(**{**row, "continuations": tuple(row["continuations"])})
        return LabelExample(**row)

    return read_examples(path, make)
