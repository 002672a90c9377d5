"""The co-mention baseline on hand-built dialogues: counts, order, exclusions."""

from __future__ import annotations

import pandas as pd

from eval.comention import ComentionModel


def _model() -> ComentionModel:
    # three training dialogues: d1 {a, b}, d2 {a, b, c}, d3 {c, d}; e is in the catalog and never mentioned
    rows = [("d1", "a"), ("d1", "b"), ("d1", "a"), ("d2", "a"), ("d2", "b"), ("d2", "c"), ("d3", "c"), ("d3", "d")]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    return ComentionModel.fit(frame, ["a", "b", "c", "d", "e"])


def test_counts_are_dialogues_not_mentions() -> None:
    model = _model()
    assert model.mentions.tolist() == [2, 2, 2, 1, 0]  # d1 mentions a twice: one dialogue
    assert model.together[0, 1] == 2 and model.together[2, 3] == 1 and model.together[0, 0] == 0


def test_cold_start_is_mention_order_and_comention_decides_after() -> None:
    model = _model()
    assert model.rank([], 5) == ["a", "b", "c", "d", "e"]  # ties by catalog order
    # after d: c is the only movie mentioned with it; then the mention counts
    assert model.rank(["d"], 3) == ["c", "a", "b"]
    # after a and d: b (2 with a) and c (1 with a, 1 with d) tie on co-mentions, then mentions, then catalog order
    assert model.rank(["a", "d"], 2) == ["b", "c"]


def test_mentioned_and_unknown_movies() -> None:
    model = _model()
    assert "a" not in model.rank(["a", "not-in-catalog"], 5)
    assert model.rank(["b"], 10, allowed=lambda item: item != "c") == ["a", "d", "e"]
