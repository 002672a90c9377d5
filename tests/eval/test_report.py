"""Run folders and reports: every plot renders in headless Chromium, offline; runs under another protocol,
data or split are refused for comparison; tuned settings land where they are used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.tuned import save_tuned, with_tuned
from conftest import make_settings
from core.errors import InvalidRequest, SettingsError
from eval.plots import PLOTS
from eval.report import compare_runs, write_run


def units() -> list[dict[str, Any]]:
    """Two rerankers on the same six users: 'keep' keeps the shown order, 'flip' reverses it."""
    rows = []
    for entry, flip in (("keep", False), ("flip", True)):
        for user in range(6):
            position = user % 4
            rank = 3 - position if flip else position
            rows.append({"entry": entry, "unit": f"u{user}", "latency_s": 0.1 + 0.01 * user, "list_length": 4,
                         "target_position": position, "target_rank": rank, "first_position": 3 if flip else 0,
                         "metrics": {"recall@1": float(rank == 0), "recall@5": 1.0, "ndcg@10": 1 / (rank + 1)}})
    return rows


def result(**changes: Any) -> dict[str, Any]:
    return {"dataset": "toy", "protocol": "loo", "split": "validation", "ranker": "variants", "users": 6,
            "data_hash": "abc", "git_commit": "x", "settings": {"k": 1}, **changes}


def test_report_renders_every_plot_offline(tmp_path: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    folder = write_run(result(), units(), units(), tmp_path, prompts={"rerank_listwise.v3": "Answer: ("})
    assert {p.name for p in folder.iterdir()} == {"report.html", "summary.md", "settings.json", "prompts.json",
                                                   "rows.jsonl", "units.jsonl", "result.json"}
    saved = json.loads((folder / "result.json").read_text())
    forest = {d["metric"]: d for d in saved["paired_differences"]}
    assert forest["recall@5"]["mean"] == 0.0 and forest["recall@5"]["p_value"] == 1.0
    assert saved["position_bias"]["keep"]["slope"] == 1.0 and saved["position_bias"]["flip"]["slope"] == -1.0
    assert json.loads((folder / "prompts.json").read_text()) == {"rerank_listwise.v3": "Answer: ("}
    assert "| flip | 6 |" in (folder / "summary.md").read_text()
    html = (folder / "report.html").read_text()
    assert "<script src=" not in html  # plotly's JS is inlined: the page opens without a network
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                       else route.continue_())
            page.goto((folder / "report.html").as_uri())
            for plot in PLOTS:
                graph = page.locator(f"#{plot}.js-plotly-plot")
                graph.wait_for(timeout=30_000)
                assert graph.locator(".main-svg").count() >= 1, plot  # plotly drew it
            assert page.locator(".js-plotly-plot").count() == len(PLOTS)
            assert "keep" in page.locator("#metric-bars").inner_text()
        finally:
            browser.close()


def test_compare_refuses_runs_under_other_protocols_data_or_splits(tmp_path: Path) -> None:
    first = write_run(result(), [], units(), tmp_path / "runs")
    same = write_run(result(), [], units()[:6], tmp_path / "runs")
    report = compare_runs([first, same], tmp_path / "out")
    assert len(json.loads((report / "result.json").read_text())["runs"]) == 2
    for change in ({"protocol": "candidates20"}, {"data_hash": "other"}, {"split": "test"}):
        other = write_run(result(**change), [], units(), tmp_path / "runs")
        with pytest.raises(InvalidRequest, match=next(iter(change))):
            compare_runs([first, other], tmp_path / "out")


def test_tuned_settings_apply_unless_set_explicitly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tmp_path / "chroma", dataset="toy", tuned_dir=tmp_path / "tuned")
    assert with_tuned(settings, "toy") == (settings, {})
    weights = {"collab": 1.0, "popularity": 0.5}
    path = save_tuned(settings, "toy", {"retrieval.fusion_weights": weights, "retrieval.rrf_k": 60.0},
                      {"metric": "ndcg@10", "validation": 0.1, "run": "runs/x.json"})
    assert json.loads(path.read_text())["validation"] == 0.1
    tuned, applied = with_tuned(settings, "toy")
    assert tuned.retrieval.fusion_weights == weights and tuned.retrieval.rrf_k == 60.0 and set(applied) == {
        "retrieval.fusion_weights", "retrieval.rrf_k"}
    assert with_tuned(settings, "other")[0].retrieval.rrf_k == settings.retrieval.rrf_k  # per dataset
    explicit = make_settings(tmp_path, tmp_path / "chroma", dataset="toy", tuned_dir=tmp_path / "tuned",
                             **{"retrieval.rrf_k": 5.0})
    tuned, applied = with_tuned(explicit, "toy")
    assert tuned.retrieval.rrf_k == 5.0 and tuned.retrieval.fusion_weights == weights  # the flag wins
    with pytest.raises(SettingsError):
        save_tuned(settings, "toy", {"llm.model": "x"}, {})
