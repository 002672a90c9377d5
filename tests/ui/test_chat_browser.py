"""The Gradio chat in headless Chromium (Debian's, driven by Playwright): send a message, see item
cards, press dislike, and the next reply leaves that item out."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from agent.assemble import Agent
from agent.events import DeltaEvent, DoneEvent, ItemsEvent, Recommendation, RecommendationResponse
from conftest import agent_with_llm, free_port
from ui.chat import apply_event, build_ui, launch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_apply_event_is_pure() -> None:
    item = Recommendation(id="1", title="Heat (1995)", score=1.0, reason="It is tense.")
    history = [{"role": "user", "content": "hi"}]
    history, items = apply_event(history, [], ItemsEvent(items=[item]))
    history, items = apply_event(history, items, DeltaEvent(text="Here "))
    history, items = apply_event(history, items, DeltaEvent(text="you go"))
    assert history[-1] == {"role": "assistant", "content": "Here you go"} and items == [item.model_dump()]
    done = RecommendationResponse(items=[item], reply="Here you go.", reranked_by="retriever", reply_by="template",
                                  fallback=False)
    history, _ = apply_event(history, items, DoneEvent(response=done))
    assert history[-1]["content"] == "Here you go." and len(history) == 2


@pytest.fixture()
def chat_url(small_agent: Agent) -> Iterator[str]:
    agent = agent_with_llm(small_agent, None)
    demo = build_ui(lambda name: agent, ["movies-small"], "movies-small")
    port = free_port()
    launch(demo, "127.0.0.1", port, token=None, block=False)
    yield f"http://127.0.0.1:{port}"
    demo.close()


def _titles(page: Any) -> list[str]:
    # Gradio puts elem_classes on a component's wrapper and inner block alike: keep each title once.
    return list(dict.fromkeys(page.locator(".item-card strong").all_inner_texts()))


def test_chat_cards_and_dislike_in_a_real_browser(chat_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert os.path.exists(CHROMIUM), "install Debian's chromium (make test does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page()
            page.goto(chat_url)
            expect(page.locator("#state")).to_contain_text("include", timeout=60_000)  # loaded
            box = page.locator("#message textarea")
            box.fill("A funny movie from the 90s, nothing scary")
            box.press("Enter")
            expect(page.locator("button.dislike")).to_have_count(5, timeout=60_000)
            first = _titles(page)
            assert len(first) == 5 and all(t.endswith(")") for t in first), first
            expect(page.locator("#chat")).to_contain_text(first[0], timeout=30_000)

            page.locator("button.dislike").first.click()
            expect(page.locator("button.dislike")).to_have_count(4, timeout=30_000)
            expect(page.locator("#state")).to_contain_text("disliked", timeout=10_000)

            box.fill("Show me more")
            box.press("Enter")
            expect(page.locator("#chat")).to_contain_text("Show me more", timeout=30_000)
            expect(page.locator("button.dislike")).to_have_count(5, timeout=60_000)
            page.wait_for_function("document.querySelectorAll('.message').length >= 4", timeout=30_000)
            second = _titles(page)
            assert first[0] not in second, (first[0], second)
        finally:
            browser.close()
