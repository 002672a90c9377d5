"""The fast tuner: ranks computed from kept lists equal real fusion's, and racing picks what the exhaustive
grid search picks. The linear ranker's fit (a conditional logit on the validation lists) and its use."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from agent.linear_ranker import conditional_logit
from agent.retrieval import reciprocal_rank_fusion
from agent.settings import ITEM_FEATURES, LINEAR_FEATURES, Settings
from conftest import copy_index, make_settings
from core.errors import InvalidRequest, SettingsError
from eval.tuning import (
    Setting,
    list_ndcg,
    metric_from_ranks,
    target_ranks,
    tune_fusion,
    tune_fusion_fast,
    tune_linear,
    weight_grid,
)


def test_target_ranks_match_reciprocal_rank_fusion() -> None:
    rng = np.random.default_rng(5)
    items = [f"i{n:02d}" for n in range(40)]
    settings = [Setting({"a": a, "b": b, "c": c}, k) for a in (0, 0.5, 1) for b in (0, 1) for c in (0.3, 2)
                for k in (1.0, 20.0)]
    for _ in range(30):
        lists = {name: [(str(i), 0.0) for i in rng.permutation(items)[: int(rng.integers(5, 25))]]
                 for name in ("a", "b", "c")}
        target = str(rng.choice(items))
        ranks = target_ranks(lists, target, settings)
        for setting, rank in zip(settings, ranks, strict=True):
            fused = [i for i, _ in reciprocal_rank_fusion(lists, setting.weights, setting.rrf_k, 100)]
            assert rank == (fused.index(target) if target in fused else 10**9), (setting, lists, target)


def test_metric_from_ranks() -> None:
    ranks = np.array([0, 1, 9, 10, 10**9])
    assert metric_from_ranks(ranks, "recall@10").tolist() == [1, 1, 1, 0, 0]
    assert metric_from_ranks(ranks, "ndcg@10")[1] == pytest.approx(1 / np.log2(3))
    assert metric_from_ranks(ranks, "mrr@10")[2] == pytest.approx(0.1)
    assert len(weight_grid({"a": [0, 1], "b": [0, 1]}, [10, 20])) == 6  # all-zero weights are skipped


@pytest.fixture(scope="module")
def small_settings(small_data_dir: Path, small_eval_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(small_data_dir, copy_index(small_eval_index, tmp_path_factory.mktemp("tune") / "chroma"))


def test_racing_agrees_with_the_exhaustive_search(small_settings: Settings, embedder: object) -> None:
    from eval.harness import prepare

    prepared = prepare(small_settings, "movies-small", "loo", progress=False, embedder=embedder)  # type: ignore[arg-type]
    grid = {"collab": [1.0], "sequential": [0, 1.0], "popularity": [0, 0.2], "text": [0, 0.3]}
    exhaustive = tune_fusion(prepared, grid, [20], progress=False)
    fast = tune_fusion_fast(prepared, grid, [20], max_users=10_000, batch=10_000, progress=False)
    assert fast["users"] == len(prepared.split.validation) and fast["stopped_because"] == "every sampled user was used"
    assert fast["best"]["score"] == pytest.approx(exhaustive["best"]["score"], abs=1e-5)
    raced = tune_fusion_fast(prepared, grid, [20], max_users=10_000, batch=100, drop_z=1.0, tolerance=1.0,
                             progress=False)
    assert raced["users"] < fast["users"]  # stopped early


def test_a_tune_run_records_itself_and_saves_what_it_chose(small_settings: Settings, embedder: object,
                                                           tmp_path: Path) -> None:
    """`recagent tune --protocol loo` without the flags: the run under runs/ and the tuned file, which
    with_tuned then applies, both carry the best setting the race found."""
    from agent.tuned import with_tuned
    from eval.tune_runs import FUSION_GRID, tune_fusion_run

    settings = small_settings.model_copy(update={"runs_dir": tmp_path / "runs", "tuned_dir": tmp_path / "tuned"})
    result = tune_fusion_run(settings, "movies-small", "loo", max_users=30, progress=False,
                             embedder=embedder)  # type: ignore[arg-type]
    assert result["users"] == 30 and set(result["best"]["fusion_weights"]) == set(FUSION_GRID)
    [run] = (tmp_path / "runs").glob("*_movies-small_loo_tune.json")
    recorded = json.loads(run.read_text(encoding="utf-8"))
    assert recorded["best"] == result["best"] and recorded["data_hash"] == result["data_hash"]
    tuned, applied = with_tuned(settings, "movies-small")
    assert applied == {"retrieval.fusion_weights": result["best"]["fusion_weights"],
                       "retrieval.rrf_k": result["best"]["rrf_k"]}
    assert tuned.retrieval.rrf_k == result["best"]["rrf_k"]
    assert json.loads(Path(result["saved_to"]).read_text(encoding="utf-8"))["run"] == str(run)


def test_conditional_logit_finds_the_feature_that_marks_the_target() -> None:
    """Hand-built lists: feature 0 is far higher on the target, feature 1 is noise. The fit weighs feature 0 up,
    ranks every target first, and the L2 term shrinks the weights."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 8, 2))
    targets = rng.integers(0, 8, size=60)
    features[np.arange(60), targets, 0] += 8.0
    weak, strong = conditional_logit(features, targets, 1.0), conditional_logit(features, targets, 1e-3)
    assert strong[0] > abs(strong[1]) and strong[0] > weak[0] > 0
    assert list_ndcg(features @ strong, targets).mean() == pytest.approx(1.0)


def test_list_ndcg_counts_ties_against_the_target() -> None:
    scores = np.array([[0.5, 0.9, 0.1], [0.2, 0.2, 0.2]])
    assert list_ndcg(scores, np.array([0, 2])).tolist() == pytest.approx([1 / np.log2(3), 1 / np.log2(4)])


def test_the_linear_ranker_is_fitted_on_validation_lists_and_ranks_by_its_weights(
        small_settings: Settings, embedder: object, tmp_path: Path) -> None:
    """`tune_linear` on movies-small's candidates20 validation lists: weights over known features, a held-out
    figure per L2 strength; saved next to the fusion weights (which stay), applied by `with_tuned`; the
    linear ranker then orders a fixed list by features @ weights, and without weights it is the fused ranker.
    An unknown feature name is a settings error."""
    from agent.assemble import build_agent
    from agent.linear_ranker import item_features, linear, linear_features, warm_linear
    from agent.retrieval import Context, Request, fused
    from agent.tuned import save_tuned, with_tuned
    from eval.harness import available_rankers, evaluate, prepare, retriever_for

    prepared = prepare(small_settings, "movies-small", "candidates20", progress=False, embedder=embedder)  # type: ignore[arg-type]
    result = tune_linear(prepared, progress=False)
    weights = result["linear_weights"]
    assert weights and set(weights) <= set(LINEAR_FEATURES)
    assert set(result["cross_validated"]) == {"0.001", "0.01", "0.1"} and result["users"] == len(
        prepared.split.validation)
    assert 0 < result["fused"] <= 1 and all(0 < v <= 1 for v in result["cross_validated"].values())

    settings = small_settings.model_copy(update={"tuned_dir": tmp_path / "tuned"})
    save_tuned(settings, "movies-small", {"retrieval.fusion_weights": {"text": 1.0}, "retrieval.query_weight": 2.0},
               {"protocol": "crs"})
    save_tuned(settings, "movies-small", {"retrieval.fusion_weights": {"collab": 1.0}}, {"protocol": "loo"})
    path = save_tuned(settings, "movies-small", {"retrieval.linear_weights": weights}, {"protocol": "candidates20"})
    tuned, applied = with_tuned(settings, "movies-small")
    # a tuning replaces its own family whole (crs's query weight went with its fusion weights) and keeps the other
    assert set(applied) == {"retrieval.fusion_weights", "retrieval.linear_weights"}, path.read_text()
    assert {k: v["protocol"] for k, v in json.loads(path.read_text())["sources"].items()} == {
        "retrieval.fusion_weights": "loo", "retrieval.linear_weights": "candidates20"}
    assert tuned.retrieval.fusion_weights == {"collab": 1.0} and tuned.retrieval.linear_weights == weights
    assert available_rankers(tuned)[-1] == "linear" and "linear" not in available_rankers(small_settings)
    assert (retriever_for(tuned, True), retriever_for(tuned, False), retriever_for(small_settings, True)) == (
        "linear", "fused", "fused")

    agent = build_agent(settings.model_copy(update={"retrieval": tuned.retrieval}), namespace=prepared.agent.namespace,
                        llm=None, index=prepared.agent.index, encoder=prepared.agent.encoder)
    ctx = agent.recommender.context
    case = prepared.split.test[0]
    pool = list(case.candidates or [])
    request = Request(history=case.history, timestamps=case.timestamps, exclude=frozenset(case.history),
                      allowed=frozenset(pool))
    ranked = linear(ctx, request, len(pool))
    assert sorted(i for i, _ in ranked) == sorted(pool)
    fused_order = [i for i, _ in fused(ctx, request, len(pool))]
    expected = linear_features(ctx, request, fused_order) @ np.array([weights.get(f, 0.0) for f in LINEAR_FEATURES])
    assert [s for _, s in ranked] == pytest.approx(sorted(expected, reverse=True))

    # the item's own features count only the training interactions up to the request's time
    train = prepared.split.train.interactions
    now, column = max(case.timestamps), {name: k for k, name in enumerate(ITEM_FEATURES)}
    own = item_features(ctx, request, pool)
    this_year = 1970 + int(now // (365.2425 * 86_400))
    years = [ctx.index.entries[i].attributes["year"] for i in case.history
             if "year" in ctx.index.entries[i].attributes]
    for row, item in enumerate(pool):
        stamps = train["timestamp"][train["item"] == item].to_numpy()
        then = stamps[stamps <= now]  # what a later interaction adds must not count
        assert own[row, column["time.before"]] == pytest.approx(np.log1p(len(then)))
        for days in (30, 365):
            recent = (then >= now - days * 86_400).sum()
            assert own[row, column[f"time.recent{days}"]] == pytest.approx(np.log1p(recent))
        assert own[row, column["time.seen"]] == float(len(then) > 0)
        since = np.log1p((now - np.array([then.min(), then.max()])) / 86_400) if len(then) else (0, 0)
        assert [own[row, column["time.age"]], own[row, column["time.last"]]] == pytest.approx(since)
        year = ctx.index.entries[item].attributes.get("year")
        expected_years = (0, 0, 0, 0) if year is None else (
            float(year <= this_year), float(year in (this_year - 1, this_year)), np.log1p(max(0, this_year - year)),
            abs(year - np.mean(years)) / 10)
        assert [own[row, column[f"year.{f}"]] for f in ("released", "new", "age", "distance")] == pytest.approx(
            expected_years)
    assert 0 < own[:, column["time.seen"]].sum() < len(pool)  # the list mixes items seen before then and after
    # some item has interactions both before then and after: time.last must be its latest up to then
    later = own[:, column["time.before"]] < own[:, column["popularity.log"]]
    assert (later & (own[:, column["time.seen"]] == 1)).any()
    match = own[:, column["attribute.match"]]
    assert match.min() >= 0 and 0 < match.max() <= 1
    history = [ctx.index.position[i] for i in case.history if i in ctx.index.position]
    graph = ctx.index.cooccurrence
    for row, item in enumerate(pool):  # the whole history's co-occurrence, 0.95 per item back
        together = sum(0.95 ** (len(history) - 1 - k) * graph[h, ctx.index.position[item]]
                       for k, h in enumerate(history))
        assert own[row, column["history.cooccurrence"]] == pytest.approx(np.log1p(together), rel=1e-5)
    assert own[:, column["history.cooccurrence"]].max() > 0
    # history.nearby: pairs at most 15 apart in a stored (training) history, / sqrt(n_a n_b), 0.9 per item back
    sequences = [[ctx.index.position[i] for i, _ in h if i in ctx.index.position]
                 for h in ctx.index.store.histories()]
    n_of = Counter(p for s in sequences for p in s)
    sources, targets = set(history), {ctx.index.position[i] for i in pool}
    near: Counter[tuple[int, int]] = Counter()
    for s in sequences:
        for k, a in enumerate(s):
            if a in sources:
                near.update((a, b) for b in s[max(0, k - 15):k + 16] if b in targets and b != a)
    for row, item in enumerate(pool):
        b = ctx.index.position[item]
        summed = sum(0.9 ** (len(history) - 1 - k) * near[h, b] / np.sqrt(n_of[h] * n_of[b])
                     for k, h in enumerate(history))
        assert own[row, column["history.nearby"]] == pytest.approx(np.log1p(10 * summed), rel=1e-5)
    assert own[:, column["history.nearby"]].max() > 0
    fresh = copy.copy(ctx.index)  # weights without history.nearby never build its graph
    for lazy in ("nearby", "interaction_times", "latest_time"):
        fresh.__dict__.pop(lazy, None)
    partial = linear_features(Context(fresh, ctx.config, ctx.encoder), request, pool, frozenset({"time.last"}))
    assert "nearby" not in fresh.__dict__ and not partial[:, LINEAR_FEATURES.index("history.nearby")].any()
    for lazy in ("interaction_times", "latest_time"):  # read by the partial features above
        fresh.__dict__.pop(lazy)
    warm_linear(Context(fresh, ctx.config, ctx.encoder))  # a server reads before its first request what is used
    assert "nearby" in fresh.__dict__ and "interaction_times" in fresh.__dict__
    timeless = item_features(ctx, Request(history=case.history), pool)  # now: the latest indexed interaction
    assert timeless[:, column["time.before"]] == pytest.approx(timeless[:, column["popularity.log"]])
    latest = int(train["timestamp"].max())
    assert timeless[:, column["time.last"]] == pytest.approx([np.log1p(
        (latest - train["timestamp"][train["item"] == item].max()) / 86_400) for item in pool])
    # a history given without times is dated now, not 1970 by made-up times 0, 1, 2...
    given = agent.recommender.request(history=case.history, only=pool)
    assert given.timestamps is None and np.array_equal(item_features(ctx, given, pool), timeless)
    assert timeless[:, column["year.released"]].sum() >= own[:, column["year.released"]].sum() > 0
    # an index whose timestamps are only an order (Last.fm's file order) dates nothing
    untimed = copy.copy(ctx.index)
    untimed.state = {**ctx.index.state, "timed": False}
    dateless = item_features(Context(untimed, ctx.config, ctx.encoder), request, pool)
    dated = [column[f] for f in ITEM_FEATURES if f.startswith(("time.", "year.")) and f != "year.distance"]
    assert not dateless[:, dated].any() and timeless[:, dated].any()
    undated = [k for k in range(len(ITEM_FEATURES)) if k not in dated]
    assert np.array_equal(dateless[:, undated], own[:, undated]) and own[:, column["year.distance"]].any()
    # a known user's history continues after their stored times; timestamps must match the history
    user = prepared.split.train.interactions["user"].iloc[0]
    stored = agent.recommender.request(user=str(user)).timestamps
    assert stored and agent.recommender.request(user=str(user), history=["1", "2"]).timestamps == [
        *stored, stored[-1] + 1, stored[-1] + 2]
    with pytest.raises(InvalidRequest, match="2 timestamps for a history of 1 items"):
        agent.recommender.request(history=["1"], timestamps=[5, 6])
    assert linear(prepared.agent.recommender.context, request, len(pool)) == fused(
        prepared.agent.recommender.context, request, len(pool))  # no weights: the fused ranker
    with pytest.raises(InvalidRequest, match="no weights"):  # and eval will not score it under another name
        evaluate(prepared, "linear", "test", small_settings, "movies-small", progress=False)

    with pytest.raises(SettingsError, match=r"unknown linear features collab\.scor"):
        make_settings(small_settings.data.data_dir, tmp_path / "c",
                      **{"retrieval.linear_weights": {"collab.scor": 1.0}})
