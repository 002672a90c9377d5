"""Collaborative signals learned from interactions: item vectors, item-to-item and next-item graphs.

Three models, all fitted from time-ordered user histories:
- EASE (Steck 2019) item weights B, factorised to rank r as B ~ Q V^T, so that scoring a history is
  one inner-product vector query: score(j) = (sum_i w_i Q_i) . V_j.
- Co-occurrence cosine neighbours (item-to-item), top-M per item.
- Next-item transitions between consecutive *time groups* of a history, top-M per item. Items that
  share a timestamp form one group and are linked to each other symmetrically, so nothing learned
  depends on how ties in time are ordered (MovieLens has many same-second ratings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from index.config import IndexConfig


@dataclass(frozen=True)
class History:
    """One user's interactions as catalog positions, in time order (ties by catalog position)."""

    user: str
    items: np.ndarray
    timestamps: np.ndarray

    def time_groups(self) -> list[np.ndarray]:
        return time_groups(self.items, self.timestamps)


def time_groups(items: np.ndarray, timestamps: np.ndarray) -> list[np.ndarray]:
    """Split a time-ordered history into runs of equal timestamps."""
    if len(items) == 0:
        return []
    cuts = np.flatnonzero(np.diff(timestamps) != 0) + 1
    return np.split(np.asarray(items), cuts)


def user_histories(interactions: pd.DataFrame, item_ids: Sequence[str]) -> list[History]:
    """Group interactions by user, ordered by (timestamp, catalog position). Users sorted by id."""
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    frame = pd.DataFrame({
        "user": interactions["user"].to_numpy(),
        "pos": interactions["item"].map(position).to_numpy(),
        "timestamp": interactions["timestamp"].to_numpy(np.int64),
    }).dropna()
    frame["pos"] = frame["pos"].astype(np.int64)
    frame["user"] = frame["user"].astype(str)
    frame = frame.sort_values(["user", "timestamp", "pos"], kind="stable")
    users = frame["user"].to_numpy()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], cuts]) if len(users) else np.zeros(0, dtype=np.int64)
    items = np.split(frame["pos"].to_numpy(), cuts) if len(users) else []
    times = np.split(frame["timestamp"].to_numpy(), cuts) if len(users) else []
    return [History(str(users[start]), i, t) for start, i, t in zip(starts, items, times, strict=True)]


@dataclass
class CollabModel:
    """What the collaborative side of the index stores; positions refer to `item_ids`."""

    item_ids: list[str]
    popularity: np.ndarray  # interactions per item in the fitted data
    query_vectors: np.ndarray  # Q, float32 (n, r)
    item_vectors: np.ndarray  # V, float32 (n, r)
    cooccurrence: sp.csr_matrix  # cosine neighbours, top-M per row
    transitions: sp.csr_matrix  # next-item weights, top-M per row

    def history_vector(self, positions: np.ndarray, decay: float) -> np.ndarray:
        """The EASE query vector of a history: recency-weighted sum of Q rows, most recent weight 1."""
        weights = decay ** np.arange(len(positions))[::-1]
        return np.asarray(weights @ self.query_vectors[positions], dtype=np.float32)


def _interaction_matrix(histories: Sequence[History], n_items: int) -> sp.csr_matrix:
    empty = np.zeros(0, dtype=np.int64)
    rows = np.concatenate([np.full(len(h.items), u) for u, h in enumerate(histories)]) if histories else empty
    cols = np.concatenate([h.items for h in histories]) if histories else empty
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                           shape=(len(histories), n_items))
    matrix.data[:] = 1.0  # repeated interactions count once
    return matrix


def top_m_per_row(matrix: sp.spmatrix | np.ndarray, m: int) -> sp.csr_matrix:
    """Keep the m largest entries of each row (ties by column), dropping zeros and the diagonal."""
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.setdiag(0)
    csr.eliminate_zeros()
    if csr.nnz > 8 * m * max(csr.shape[0], 1):  # long rows (a small, dense catalog): sort row by row
        indptr, indices, data = [0], [], []
        for row in range(csr.shape[0]):
            start, end = csr.indptr[row], csr.indptr[row + 1]
            cols, vals = csr.indices[start:end], csr.data[start:end]
            if len(vals) > m:
                order = np.lexsort((cols, -vals))[:m]
                cols, vals = cols[order], vals[order]
            indices.append(cols)
            data.append(vals)
            indptr.append(indptr[-1] + len(cols))
        return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=csr.shape)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))  # short rows (a large catalog): one sort
    order = np.lexsort((csr.indices, -csr.data, rows))  # by row, then largest first, then column
    rank = np.arange(len(order)) - csr.indptr[rows[order]]
    keep = order[rank < m]
    return sp.csr_matrix((csr.data[keep], (rows[keep], csr.indices[keep])), shape=csr.shape)


def randomized_svd(matrix: np.ndarray, rank: int, iterations: int = 4, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Halko et al.'s randomized SVD; exact enough for a rank well below the matrix size."""
    rng = np.random.default_rng(seed)
    n = matrix.shape[1]
    rank = min(rank, min(matrix.shape))
    sketch = matrix @ rng.standard_normal((n, min(n, rank + 16))).astype(matrix.dtype)
    basis, _ = np.linalg.qr(sketch)
    for _ in range(iterations):
        basis, _ = np.linalg.qr(matrix.T @ basis)
        basis, _ = np.linalg.qr(matrix @ basis)
    small = basis.T @ matrix
    u_small, singular, vt = np.linalg.svd(small, full_matrices=False)
    return (basis @ u_small)[:, :rank], singular[:rank], vt[:rank]


def svd_factors(counts: sp.csr_matrix, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Item factors without any items x items matrix: a randomized SVD of the user x item matrix with
    columns scaled by 1/sqrt(popularity), X = U S V^T, so that Q V^T = V S^2 V^T approximates the cosine
    co-occurrence X^T X. Memory grows with the interactions and items x rank."""
    popularity = np.asarray(counts.sum(axis=0)).ravel() + 1.0
    scaled = (counts @ sp.diags(1.0 / np.sqrt(popularity))).astype(np.float32).tocsr()
    _, singular, vt = randomized_svd(scaled, rank, iterations=3)
    factors = (vt.T * singular).astype(np.float32)
    return factors, factors.copy()


def item_factors(counts: sp.csr_matrix, config: IndexConfig) -> tuple[np.ndarray, np.ndarray]:
    """(Q, V) with score(history, j) = sum of Q rows . V_j: EASE up to config.ease_max_items items (its
    Gram matrix is items x items), the low-rank SVD model above that."""
    if counts.shape[1] <= config.ease_max_items:
        return ease_factors(counts, config.ease_lambda, config.collab_dims)
    return svd_factors(counts, config.collab_dims)


def ease_factors(counts: sp.csr_matrix, lam: float, rank: int) -> tuple[np.ndarray, np.ndarray]:
    gram = (counts.T @ counts).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    u, s, vt = randomized_svd(weights, rank)
    scale = np.sqrt(s)
    return (u * scale).astype(np.float32), (vt.T * scale).astype(np.float32)


def transition_graph(histories: Sequence[History], n_items: int, neighbors: int,
                     max_group: int = 50) -> sp.csr_matrix:
    """Weights from each time group to the next one, plus within-group links, row-normalised.

    Groups larger than `max_group` (bulk imports) are left out: they say little about what comes next.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    untied = [h for h in histories if len(h.items) > 1 and np.all(np.diff(h.timestamps) != 0)]
    if untied:  # every group a single item: consecutive pairs, weight 1, all users at once
        items = np.concatenate([h.items for h in untied])
        owner = np.repeat(np.arange(len(untied)), [len(h.items) for h in untied])
        same = owner[:-1] == owner[1:]
        rows.append(items[:-1][same])
        cols.append(items[1:][same])
        vals.append(np.ones(int(same.sum()), dtype=np.float32))
    for history in histories:
        if len(history.items) < 2 or np.all(np.diff(history.timestamps) != 0):
            continue  # counted above
        groups = [g for g in history.time_groups()]
        for k, group in enumerate(groups):
            if len(group) > max_group:
                continue
            if len(group) > 1:
                a, b = np.meshgrid(group, group, indexing="ij")
                rows.append(a.ravel())
                cols.append(b.ravel())
                vals.append(np.full(a.size, 1.0 / (len(group) - 1), dtype=np.float32))
            if k + 1 < len(groups) and len(groups[k + 1]) <= max_group:
                following = groups[k + 1]
                a, b = np.meshgrid(group, following, indexing="ij")
                rows.append(a.ravel())
                cols.append(b.ravel())
                vals.append(np.full(a.size, 1.0 / np.sqrt(len(group) * len(following)), dtype=np.float32))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    counts = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_items, n_items), dtype=np.float32)
    counts.setdiag(0)
    counts.eliminate_zeros()
    out_degree = np.asarray(counts.sum(axis=1)).ravel() + 1.0
    in_degree = np.asarray(counts.sum(axis=0)).ravel() + 1.0
    # Mostly row-normalised (what follows i) with a mild penalty on items that follow everything.
    scaled = sp.diags(out_degree ** -0.75) @ counts @ sp.diags(in_degree ** -0.25)
    return top_m_per_row(scaled, neighbors)


def cooccurrence_graph(counts: sp.csr_matrix, histories: Sequence[History], neighbors: int,
                       max_pairs: int = 50_000_000) -> sp.csr_matrix:
    """Cosine co-occurrence, top-`neighbors` per item. Exact (every pair in a history) while that is at
    most `max_pairs` pairs; beyond, pairs within a window of neighbouring positions, the window as wide
    as the budget allows, so memory grows with the interactions rather than with their square."""
    per_user = np.diff(counts.indptr).astype(np.int64)
    if int((per_user ** 2).sum()) <= max_pairs:
        cooc = (counts.T @ counts).tocsr().astype(np.float32)
    else:
        cooc = _windowed_pairs(histories, counts.shape[1], window_for(max_pairs, counts.nnz))
    popularity = np.asarray(counts.sum(axis=0)).ravel() + 1.0
    inv = sp.diags(1.0 / np.sqrt(popularity))
    return top_m_per_row(inv @ cooc @ inv, neighbors)


def window_for(max_pairs: int, interactions: int, widest: int | None = None) -> int:
    """The widest window (positions apart, at most `widest`) whose pairs, both directions, fit `max_pairs`;
    never below 1 (neighbouring positions: 2 x interactions pairs, over the budget on a very large index)."""
    window = max(1, max_pairs // max(2 * interactions, 1))
    return min(window, widest) if widest is not None else window


def nearby_graph(histories: Sequence[History], n_items: int, window: int, max_pairs: int = 10_000_000
                 ) -> sp.csr_matrix:
    """Cosine co-occurrence within a session: pairs at most `window` positions apart in a history (both
    directions; an item repeated in a history counts each time, never with itself), divided by sqrt(n_a n_b),
    n the item's interactions (at least 1). Every pair is kept, not the top M per item, because what tells a
    random list apart is the weak links. The window narrows to `window_for(max_pairs, ...)`: 15 up to about
    333k interactions, 5 at ML-1M's million, 1 from 2.5 million on (ML-25M: 50 million pairs, about 0.6 GB)."""
    n_interactions = sum(len(h.items) for h in histories)
    pairs = _windowed_pairs(histories, n_items, window_for(max_pairs, n_interactions, window))
    counts = np.bincount(np.concatenate([h.items for h in histories]), minlength=n_items) if histories else \
        np.zeros(n_items)
    inv = sp.diags(1.0 / np.sqrt(np.maximum(counts, 1)).astype(np.float32))
    return (inv @ pairs @ inv).tocsr()


def _windowed_pairs(histories: Sequence[History], n_items: int, window: int) -> sp.csr_matrix:
    """Counts of item pairs at most `window` positions apart in a history (both directions)."""
    if not histories:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    items = np.concatenate([h.items for h in histories])
    owner = np.repeat(np.arange(len(histories)), [len(h.items) for h in histories])
    total = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    for gap in range(1, window + 1):
        same = owner[:-gap] == owner[gap:]
        a, b = items[:-gap][same], items[gap:][same]
        ones = np.ones(len(a), dtype=np.float32)
        total = total + sp.csr_matrix((ones, (a, b)), shape=(n_items, n_items)) + \
            sp.csr_matrix((ones, (b, a)), shape=(n_items, n_items))
    total.setdiag(0)
    total.eliminate_zeros()
    return total.tocsr()


def fit_collab(histories: Sequence[History], item_ids: list[str], config: IndexConfig) -> CollabModel:
    """Fit all collaborative parts on the given histories (for evaluation: the training part only)."""
    n_items = len(item_ids)
    counts = _interaction_matrix(histories, n_items)
    popularity = np.asarray(counts.sum(axis=0)).ravel().astype(np.float32)
    q, v = item_factors(counts, config)
    return CollabModel(item_ids=list(item_ids), popularity=popularity, query_vectors=q, item_vectors=v,
                       cooccurrence=cooccurrence_graph(counts, histories, config.neighbors, config.max_pairs),
                       transitions=transition_graph(histories, n_items, config.neighbors))
