"""The Gradio chat in headless Chromium (Debian's, driven by Playwright): send a message, see item
cards, press dislike, and the next reply leaves that item out."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from agent.catalog import LoadedIndex
from agent.dialogue import ConversationAgent
from agent.recommender import Recommender
from agent.settings import Settings
from conftest import free_port
from index.embedder import Embedder
from index.store import IndexStore, chroma_client
from ui.chat import apply_event, build_ui

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_apply_event_is_pure() -> None:
    history = [{"role": "user", "content": "hi"}]
    history, items = apply_event(history, [], {"type": "items", "items": [{"id": "1"}]})
    history, items = apply_event(history, items, {"type": "delta", "text": "Here "})
    history, items = apply_event(history, items, {"type": "delta", "text": "you go"})
    assert history[-1] == {"role": "assistant", "content": "Here you go"} and items == [{"id": "1"}]
    history, _ = apply_event(history, items, {"type": "done", "reply": "Here you go."})
    assert history[-1]["content"] == "Here you go." and len(history) == 2


@pytest.fixture()
def chat_url(small_index: Settings, embedder: Embedder) -> Iterator[str]:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    index = LoadedIndex(IndexStore(chroma_client(small_index.index), "movies-small"))
    agent = ConversationAgent(Recommender(index, small_index, embedder_factory=lambda: embedder))
    demo = build_ui(lambda name: agent, ["movies-small"], "movies-small")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
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
            expect(page.locator("#state")).to_contain_text("include_genres", timeout=60_000)  # loaded
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
