"""The `states` protocol: does the conversation state hold what the seeker said about each movie?

ReDial's seekers answered, after each dialogue, for every movie it mentions, whether they liked it
(`initiatorQuestions[movie].liked`: 1 yes, 0 no, 2 did not say; SOURCE.md of the data folder). Each dialogue is
replayed through the chat's own ConversationAgent the way the crs protocol replays it (eval.crs): seeker turns
are read as user messages (`read_message`, the configured reader), recommender turns are recorded as the
assistant's replies with their catalog movies. After the last turn, every movie the *seeker* mentioned that has
an annotation is one unit: the state's label (`liked` when in state.liked, `disliked` when in state.disliked,
`not_said` otherwise, also when the movie is only a reference or seen) against the annotation (1 → liked,
0 → disliked, 2 → not_said).

A mentioned movie the catalog does not hold cannot be in the state; it is scored as the state saying
`not_said`, never dropped, and the result counts such movies (`not_in_catalog`) and the catalog movies the
reader put in no list at all (`not_read`). Accuracy, per-class precision/recall/F1, macro-F1 over the three
classes and the confusion matrix (rows: the seeker's annotation, columns: the state) are reported, with 95%
percentile bootstrap intervals that resample dialogues (a dialogue's movies stay together).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.conversations import ConversationState
from agent.dialogue import ConversationAgent
from agent.settings import Settings
from core.errors import InvalidRequest
from eval.crs import SPLITS, prepare_crs
from eval.harness import git_commit
from index.loaders import resolve_dataset_folder
from index.readers import read_jsonl
from index.redial import Dialogue, parse_dialogue, render, split_files

LABELS = ("liked", "disliked", "not_said")
ANNOTATION_LABELS = {1: "liked", 0: "disliked", 2: "not_said"}  # initiatorQuestions' `liked` codes


@dataclass(frozen=True)
class Mention:
    """One movie the seeker mentioned: what they annotated and what the state says."""

    dialogue: str
    movie: str
    title: str
    expected: str
    predicted: str
    in_catalog: bool
    read_as: str | None  # the state list the movie ended in (liked, disliked, seen, mentioned), None for none


def annotated_dialogues(path: Path) -> list[tuple[Dialogue, dict[str, str]]]:
    """The file's dialogues, each with the seeker's label per annotated movie."""
    out = []
    for line, record in read_jsonl(path):
        questions = record.get("initiatorQuestions") or {}
        labels = {str(movie): ANNOTATION_LABELS[int(answer["liked"])] for movie, answer in questions.items()
                  if isinstance(answer, dict) and int(answer.get("liked", -1)) in ANNOTATION_LABELS}
        out.append((parse_dialogue(record, path, line), labels))
    return out


def tracked_state(conversations: ConversationAgent, dialogue: Dialogue, titles: dict[str, str]
                  ) -> ConversationState:
    """The conversation state after the whole dialogue, replayed as eval.crs.replay_requests replays it."""
    in_catalog = conversations.pipeline.index.entries.__contains__
    state = conversations.create()
    try:
        for turn in dialogue.turns:
            text = render(turn.text, {**titles, **dialogue.titles})
            if turn.role == "seeker":
                conversations.read_message(state, text)
            else:
                conversations.record_reply(state, text, [m for m in turn.movies if in_catalog(m)])
    finally:
        conversations.store.delete(state.id)
    return state


def state_label(state: ConversationState, movie: str) -> tuple[str, str | None]:
    """The state's label for a movie and the list it is in (None when in none)."""
    if movie in state.disliked:
        return "disliked", "disliked"
    if movie in state.liked:
        return "liked", "liked"
    for bucket in ("seen", "mentioned"):
        if movie in getattr(state, bucket):
            return "not_said", bucket
    return "not_said", None


def score_dialogue(conversations: ConversationAgent, dialogue: Dialogue, labels: dict[str, str],
                   titles: dict[str, str]) -> list[Mention]:
    """One Mention per movie of the seeker's turns that the seeker annotated, in order of first mention."""
    seeker_movies = list(dict.fromkeys(m for t in dialogue.turns if t.role == "seeker" for m in t.movies))
    scored = [m for m in seeker_movies if m in labels]
    if not scored:
        return []
    state = tracked_state(conversations, dialogue, titles)
    entries = conversations.pipeline.index.entries
    out = []
    for movie in scored:
        predicted, read_as = state_label(state, movie)
        out.append(Mention(dialogue.id, movie, dialogue.titles.get(movie) or titles.get(movie, movie),
                           labels[movie], predicted, movie in entries, read_as))
    return out


def confusion(mentions: Sequence[Mention]) -> np.ndarray:
    """3×3 counts, rows the seeker's annotation and columns the state, in LABELS order."""
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    for m in mentions:
        matrix[LABELS.index(m.expected), LABELS.index(m.predicted)] += 1
    return matrix


def _per_class(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 of a batch of confusion matrices (B×3×3, rows: truth), each B×3; a
    class with no predictions has precision 0, one with no units recall 0 (and F1 0)."""
    true_positive = np.diagonal(matrices, axis1=1, axis2=2).astype(np.float64)
    predicted = matrices.sum(axis=1)
    actual = matrices.sum(axis=2)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    return precision, recall, f1


def classification_metrics(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and their macro-F1 from a confusion matrix (rows: truth). A class
    with no predictions has precision 0, one with no units recall 0 (and F1 0), as scikit-learn's zero_division=0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    precision, recall, f1 = (a[0] for a in _per_class(matrix[None]))
    actual = matrix.sum(axis=1)
    return {"accuracy": float(np.diag(matrix).sum() / total) if total else 0.0, "macro_f1": float(f1.mean()),
            "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                  "support": int(actual[i])} for i, label in enumerate(LABELS)}}


def _batch_metrics(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of each of a batch of confusion matrices (B×3×3)."""
    _, _, f1 = _per_class(matrices)
    true_positive = np.diagonal(matrices, axis1=1, axis2=2).astype(np.float64)
    totals = matrices.sum(axis=(1, 2))
    accuracy = np.divide(true_positive.sum(axis=1), totals, out=np.zeros(len(totals)), where=totals > 0)
    return accuracy, f1.mean(axis=1)


def dialogue_bootstrap(per_dialogue: Sequence[np.ndarray], samples: int = 1000, seed: int = 0, level: float = 0.95
                       ) -> dict[str, tuple[float, float]]:
    """Percentile intervals of accuracy and macro-F1, resampling dialogues with replacement (their confusion
    matrices summed), with a fixed seed."""
    stack = np.asarray(per_dialogue, dtype=np.int64)
    if len(stack) < 2:
        accuracy, macro = _batch_metrics(stack.sum(axis=0, keepdims=True) if len(stack) else np.zeros((1, 3, 3)))
        return {"accuracy": (float(accuracy[0]),) * 2, "macro_f1": (float(macro[0]),) * 2}
    accuracy, macro = _batch_metrics(stack[_draws(len(stack), samples, seed)].sum(axis=1))
    return {name: _interval(values, level) for name, values in (("accuracy", accuracy), ("macro_f1", macro))}


def _draws(dialogues: int, samples: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of dialogue positions (samples × dialogues), with a fixed seed."""
    return np.random.default_rng(seed).integers(0, dialogues, size=(samples, dialogues))


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def paired_dialogue_bootstrap(baseline: Sequence[np.ndarray], variant: Sequence[np.ndarray], samples: int = 2000,
                              seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """The variant's accuracy and macro-F1 minus the baseline's on the same dialogues (each dialogue's two
    confusion matrices in the same position), with percentile intervals that draw the same dialogues for both."""
    a = np.asarray(baseline, dtype=np.int64)
    b = np.asarray(variant, dtype=np.int64)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"paired runs need the same two or more dialogues, got {a.shape} and {b.shape}")
    draws = _draws(len(a), samples, seed)
    observed = [y - x for x, y in zip(_batch_metrics(a.sum(axis=0, keepdims=True)),
                                      _batch_metrics(b.sum(axis=0, keepdims=True)), strict=True)]
    resampled = [y - x for x, y in zip(_batch_metrics(a[draws].sum(axis=1)), _batch_metrics(b[draws].sum(axis=1)),
                                       strict=True)]
    return {name: dict(zip(("difference", "ci_low", "ci_high"), (float(point[0]), *_interval(values, level)),
                           strict=True))
            for name, point, values in zip(("accuracy", "macro_f1"), observed, resampled, strict=True)}


def state_metrics(mentions: Sequence[Mention], bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The figures over all mentions, with intervals over dialogues."""
    by_dialogue: dict[str, list[Mention]] = {}
    for m in mentions:
        by_dialogue.setdefault(m.dialogue, []).append(m)
    matrix = confusion(mentions)
    metrics = classification_metrics(matrix)
    intervals = dialogue_bootstrap([confusion(ms) for ms in by_dialogue.values()], bootstrap, seed)
    rounded = {name: {"value": round(metrics[name], 5), "ci95": [round(v, 5) for v in intervals[name]]}
               for name in ("accuracy", "macro_f1")}
    return {**rounded, "per_class": {label: {k: (round(v, 5) if isinstance(v, float) else v) for k, v in c.items()}
                                     for label, c in metrics["per_class"].items()},
            "confusion": {"rows_annotation_columns_state": list(LABELS), "matrix": matrix.tolist()}}


def all_liked_baseline(mentions: Sequence[Mention]) -> dict[str, float]:
    """Accuracy and macro-F1 of a state that says `liked` for every movie the seeker names, whatever the words:
    the yardstick a reader has to beat on ReDial, where most seeker-named movies are annotated liked."""
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    for m in mentions:
        matrix[LABELS.index(m.expected), 0] += 1
    metrics = classification_metrics(matrix)
    return {"accuracy": round(metrics["accuracy"], 5), "macro_f1": round(metrics["macro_f1"], 5)}


def evaluate_states(settings: Settings, dataset: str, split: str = "validation", dialogues: Path | None = None,
                    limit: int | None = None, progress: bool = True, bootstrap: int = 1000
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Index the dataset's training part as the crs protocol does, replay the split's dialogues (or a given
    ReDial-format file) and score the state against the seekers' annotations. Returns the result and one row
    per scored movie."""
    llm = None
    if settings.intent.reader == "llm":  # the LLM reader reads the seeker's turns; nothing else here asks a model
        from agent.assemble import make_configured_llm

        llm = make_configured_llm(settings)
        if llm is None:
            raise InvalidRequest("intent.reader 'llm' needs an LLM (llm.backend is 'none')")
    agent, data, _ = prepare_crs(settings, dataset, llm, progress)
    folder = resolve_dataset_folder(dataset, settings.data.data_dir)
    paths = [dialogues] if dialogues is not None else split_files(folder, SPLITS[split])
    if not paths:
        raise FileNotFoundError(f"no {split} dialogues in {folder}")
    chosen = [pair for path in paths for pair in annotated_dialogues(path)]
    chosen = chosen[:limit] if limit else chosen
    titles = {item_id: item.title for item_id, item in data.items.items()}
    started = time.perf_counter()
    mentions: list[Mention] = []
    for dialogue, labels in tqdm(chosen, desc="tracking states", unit="dialogue", disable=not progress):
        mentions += score_dialogue(agent.conversations, dialogue, labels, titles)
    seconds = time.perf_counter() - started
    scored_dialogues = len({m.dialogue for m in mentions})
    reader = str(getattr(agent.conversations.reader, "name", type(agent.conversations.reader).__name__))
    result = {"dataset": dataset, "protocol": "states", "ranker": reader, "reader": reader,
              "split": SPLITS.get(split, split),
              "dialogues_file": str(dialogues) if dialogues else None, "users": scored_dialogues,
              "dialogues": len(chosen), "dialogues_scored": scored_dialogues, "subset": bool(limit),
              "mentions": len(mentions), **state_metrics(mentions, bootstrap),
              "baseline_all_liked": all_liked_baseline(mentions),
              "counts": {"by_annotation": {label: sum(m.expected == label for m in mentions) for label in LABELS},
                         "by_state": {label: sum(m.predicted == label for m in mentions) for label in LABELS},
                         "not_in_catalog": sum(not m.in_catalog for m in mentions),
                         "not_read": sum(m.in_catalog and m.read_as is None for m in mentions),
                         "unresolved_rule": "a movie outside the catalog, or one the reader put in no list, is "
                                            "scored as the state saying not_said"},
              "agent": agent.describe(), "seconds": round(seconds, 2),
              "seconds_per_dialogue": round(seconds / max(len(chosen), 1), 4), "data_hash": data.content_hash(),
              "git_commit": git_commit(), "settings": json.loads(settings.model_dump_json())}
    agent.close()
    rows = [{"dialogue": m.dialogue, "movie": m.movie, "title": m.title, "annotation": m.expected,
             "state": m.predicted, "correct": m.expected == m.predicted, "in_catalog": m.in_catalog,
             "read_as": m.read_as} for m in mentions]
    return result, rows


def state_units(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One unit per dialogue for the report: the share of its movies whose state label is right."""
    by_dialogue: dict[str, list[bool]] = {}
    for row in rows:
        by_dialogue.setdefault(row["dialogue"], []).append(row["correct"])
    return [{"entry": "states", "unit": dialogue, "metrics": {"accuracy": sum(c) / len(c)}}
            for dialogue, c in by_dialogue.items()]


def states_table(result: dict[str, Any]) -> str:
    lines = [f"{'':<12}{'value':>8}  95% interval (dialogues)", "-" * 48]
    for name in ("accuracy", "macro_f1"):
        low, high = result[name]["ci95"]
        lines.append(f"{name:<12}{result[name]['value']:>8.3f}  [{low:.3f}, {high:.3f}]")
    lines += ["", f"{'class':<12}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for label, c in result["per_class"].items():
        lines.append(f"{label:<12}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}{c['support']:>9}")
    lines += ["", "confusion (rows: the seeker's annotation, columns: the state)", f"{'':<12}" +
              "".join(f"{label:>10}" for label in LABELS)]
    for label, row in zip(LABELS, result["confusion"]["matrix"], strict=True):
        lines.append(f"{label:<12}" + "".join(f"{n:>10}" for n in row))
    counts = result["counts"]
    lines.append(f"{result['dataset']} / states / {result['split']}: {result['mentions']} seeker-mentioned movies "
                 f"in {result['dialogues_scored']} of {result['dialogues']} dialogues; {counts['not_in_catalog']} "
                 f"not in the catalog and {counts['not_read']} not read (both scored as not_said); "
                 f"{result['seconds']} s")
    baseline = result["baseline_all_liked"]
    lines.append(f"a state saying liked for every named movie: accuracy {baseline['accuracy']:.3f}, macro-F1 "
                 f"{baseline['macro_f1']:.3f}")
    return "\n".join(lines)


def run_states(settings: Settings, dataset: str, split: str = "validation", *, tuned: dict[str, Any],
               dialogues: Path | None = None, limit: int | None = None, bootstrap: int = 1000, progress: bool = True
               ) -> tuple[dict[str, Any], Path]:
    """`recagent eval --protocol states`: the run, its folder (report, rows, units) and the result."""
    from eval.report import write_run

    result, rows = evaluate_states(settings, dataset, split, dialogues, limit, progress, bootstrap)
    result["tuned"] = tuned
    folder = write_run(result, rows, state_units(rows), settings.runs_dir,
                       name=f"{Path(dataset).name}_states_{result['split']}")
    result["saved_to"] = str(folder / "result.json")
    return result, folder
