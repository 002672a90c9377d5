"""The session co-occurrence graph, against counts by hand (pure: no index, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from index.collab import History, nearby_graph


def _history(user: str, items: list[int]) -> History:
    return History(user, np.array(items, dtype=np.int64), np.arange(len(items), dtype=np.int64))


def test_nearby_graph_counts_pairs_within_the_window_cosine_weighted() -> None:
    histories = [_history("a", [0, 1, 2, 3, 4]), _history("b", [1, 0, 4]), _history("c", [3])]
    graph = nearby_graph(histories, 6, window=2).toarray()
    counts = np.array([2, 2, 1, 2, 2, 0])  # interactions per item; item 5 has none
    pairs = {(0, 1): 2, (0, 2): 1, (1, 2): 1, (1, 3): 1, (2, 3): 1, (2, 4): 1, (3, 4): 1, (0, 4): 1, (1, 4): 1}
    expected = np.zeros((6, 6))
    for (a, b), n in pairs.items():  # "a" has 0..4 within 2 positions; "b" adds 1-0, 0-4 and 1-4 (two apart)
        expected[a, b] = expected[b, a] = n / np.sqrt(counts[a] * counts[b])
    assert graph == pytest.approx(expected)
    assert graph[0, 3] == 0 and not graph[5].any()  # three apart in "a", and an item nobody had
    # every pair is kept, however weak (the item-to-item graph keeps the top M per item)
    wide = nearby_graph(histories, 6, window=10)
    assert wide.nnz == 2 * 10 and wide[0, 3] == pytest.approx(1 / 2)


def test_nearby_graph_narrows_the_window_to_the_pair_budget() -> None:
    histories = [_history("a", list(range(10)))]
    assert nearby_graph(histories, 10, window=5, max_pairs=40).toarray() == pytest.approx(
        nearby_graph(histories, 10, window=2).toarray())  # 40 // (2 x 10 interactions): 2 positions
    assert nearby_graph(histories, 10, window=5, max_pairs=1).nnz == 2 * 9  # never below the next item
    assert nearby_graph([], 3, window=5).nnz == 0


def test_an_item_repeated_in_a_history_counts_each_time_never_with_itself() -> None:
    graph = nearby_graph([_history("a", [0, 1, 0, 0])], 2, window=3).toarray()
    assert graph[0, 0] == 0 and graph[1, 1] == 0  # no self pairs
    assert graph[0, 1] == graph[1, 0] == pytest.approx(3 / np.sqrt(3 * 1))  # 1 sits beside each of the three 0s
