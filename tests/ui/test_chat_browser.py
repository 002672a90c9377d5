"""The Gradio chat in headless Chromium (Debian's, driven by Playwright) over the real movies-small index:
an example request sends itself, the cards come in a grid beside the conversation, like / dislike / seen
change the stored state, an entry of the "what I understood" panel can be removed, and the next reply
leaves the disliked item out. The pure parts (events into messages, cards, panel words) are tested alone."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.assemble import Agent
from agent.events import DeltaEvent, DoneEvent, ItemsEvent, Recommendation, RecommendationResponse
from conftest import agent_with_llm, free_port
from ui.chat import apply_event, build_ui, launch, marked
from ui.chat_view import card_markdown, fallback_note, panel_entries, panel_text

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MOVED_ARTICLE = re.compile(r", (The|A|An)\b")
WIDTH, HEIGHT = 1360, 1000


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
    assert marked(items, "1", "dislike") == [] and marked(items, "1", "like")[0]["feedback"] == "like"


def test_a_turn_that_fell_back_says_so() -> None:
    item = Recommendation(id="1", title="Heat (1995)", score=1.0, reason="It is tense.")
    slow = RecommendationResponse(items=[item], reply="Heat (1995).", reranked_by="retriever", reply_by="template",
                                  fallback=True, fallback_reason="waited 20 s for a free model worker")
    history, _ = apply_event([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}], [],
                             DoneEvent(response=slow))
    assert "The model was slow, so these come straight from the retriever" in history[-1]["content"]
    ungrounded = slow.model_copy(update={"reranked_by": "llm", "fallback_reason": "the reply could not be grounded"})
    assert fallback_note(ungrounded.model_dump()) == ("None of the model's sentences passed the fact check, so the "
                                                      "reply was written from the evidence.")
    down = slow.model_copy(update={"reranked_by": "llm", "fallback_reason": "server down"})
    assert fallback_note(down.model_dump()) == ("The model could not be used, so this reply was written from a "
                                                "template (server down).")
    assert fallback_note(slow.model_copy(update={"fallback": False}).model_dump()) is None


def test_cards_and_panel_in_plain_words() -> None:
    item = {"id": "2571", "title": "Matrix, The (1999)", "reason": "You liked Heat.",
            "attributes": {"year": 1999, "genres": ["Action", "Sci-Fi", "Thriller", "Drama"]}}
    card = card_markdown(item, "year", ["genres"])
    assert card.startswith("**The Matrix**") and "1999 · Action, Sci-Fi, Thriller" in card and "Drama" not in card
    titles = {"79132": "Inception (2010)", "109487": "Interstellar (2014)", "2571": "Matrix, The (1999)"}
    state = {"liked": ["79132", "109487"], "disliked": ["2571"], "include": {"genres": ["Comedy"]},
             "include_any": {}, "exclude": {"genres": ["Horror"]}, "year_min": None, "year_max": 1999}
    entries = panel_entries(state, titles.__getitem__)
    assert panel_text(entries) == ("liked: Inception (2010), Interstellar (2014) · not: The Matrix (1999) · "
                                   "wanting: Comedy · not wanting: Horror · years: up to 1999")
    assert [(e.kind, e.value) for e in entries][-1] == ("years", "all")


@pytest.fixture()
def chat(small_agent: Agent) -> Iterator[tuple[str, Agent]]:
    agent = agent_with_llm(small_agent, None)
    demo = build_ui(lambda name: agent, ["movies-small"], "movies-small")
    port = free_port()
    launch(demo, "127.0.0.1", port, token=None, block=False)
    yield f"http://127.0.0.1:{port}", agent
    demo.close()


def _titles(page: Any) -> list[str]:
    return [t.split("\n")[0] for t in page.locator(".item-card .card-text strong").all_inner_texts()]


def _conversation(page: Any) -> str:
    return str(page.locator("#conversation-id code").inner_text()).strip()


def test_chat_page_in_a_real_browser(chat: tuple[str, Agent], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, agent = chat
    store = agent.conversations.store
    assert os.path.exists(CHROMIUM), "install Debian's chromium (make test does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(url)
            examples = page.locator("button.example")
            expect(examples.first).to_be_visible(timeout=90_000)  # loaded, with examples for an empty chat
            expect(page.locator("#understood")).to_contain_text("nothing yet", timeout=30_000)
            expect(page.locator("#conversation-id code")).to_have_count(1, timeout=30_000)
            conversation = _conversation(page)
            example = examples.first.inner_text()

            examples.first.click()  # sends itself
            expect(page.locator(".item-card")).to_have_count(5, timeout=90_000)
            expect(page.locator("#chat")).to_contain_text(example, timeout=30_000)
            expect(page.locator("button.example")).to_have_count(0, timeout=30_000)
            first = _titles(page)
            assert len(first) == 5 and not any(MOVED_ARTICLE.search(t) for t in first), first
            boxes = [page.locator(".item-card").nth(i).bounding_box() for i in range(5)]
            chat_box = page.locator("#chat").bounding_box()
            assert all(b is not None for b in boxes) and chat_box is not None
            assert boxes[0]["y"] == pytest.approx(boxes[1]["y"], abs=2), boxes  # a grid: side by side
            assert all(b["x"] >= chat_box["x"] + chat_box["width"] for b in boxes), (boxes, chat_box)
            expect(page.locator("#understood")).to_contain_text("wanting", timeout=30_000)
            expect(page.locator("button.forget-years")).to_have_count(1, timeout=30_000)
            state = store.get(conversation)
            assert state.include and state.year_min is not None

            card = page.locator(".item-card").first
            card.locator("button.like").click()
            expect(page.locator(".item-card.liked")).to_have_count(1, timeout=30_000)
            expect(page.locator("button.forget-liked")).to_contain_text(first[0], timeout=30_000)
            liked = store.get(conversation).liked
            assert len(liked) == 1

            page.locator(".item-card").nth(1).locator("button.dislike").click()
            expect(page.locator(".item-card")).to_have_count(4, timeout=30_000)
            expect(page.locator("button.forget-disliked")).to_contain_text(first[1], timeout=30_000)
            disliked = store.get(conversation).disliked
            assert len(disliked) == 1

            page.locator("button.forget-years").click()  # remove a panel entry
            expect(page.locator("button.forget-years")).to_have_count(0, timeout=30_000)
            state = store.get(conversation)
            assert state.year_min is None and state.year_max is None and state.liked == liked

            box = page.locator("#message textarea")
            box.fill("Show me more")
            box.press("Enter")
            expect(page.locator("#chat")).to_contain_text("Show me more", timeout=30_000)
            page.wait_for_function("document.querySelectorAll('.message').length >= 4", timeout=60_000)
            expect(page.locator(".item-card")).to_have_count(5, timeout=90_000)
            expect(page.locator(".item-card.liked")).to_have_count(0, timeout=30_000)  # the new turn's cards
            second = _titles(page)
            assert first[1] not in second, (first[1], second)
            assert store.get(conversation).turns[-1].items[0] not in disliked
            for i in range(5):  # never below the fold after two turns
                card_box = page.locator(".item-card").nth(i).bounding_box()
                assert card_box is not None and card_box["y"] + card_box["height"] <= HEIGHT, (i, card_box)

            page.locator(".item-card").first.locator("button.seen").click()
            expect(page.locator(".item-card.seen")).to_have_count(1, timeout=30_000)
            assert len(store.get(conversation).seen) == 1
        finally:
            page.screenshot(path=str(tmp_path / "chat.png"))  # what the page looked like, also on a failure
            browser.close()


def test_a_fallen_back_turn_shows_its_note_in_the_browser(small_agent: Agent) -> None:
    """The LLM times out (chat turns skip the reranker, so on the reply): the turn is answered from the retriever
    and the evidence, and the page says so."""
    from playwright.sync_api import expect, sync_playwright
    from scripted_llm import ScriptedLLM

    from agent.llm.base import LLMUnavailable

    timeout = LLMUnavailable("timed out after 30 s")
    agent = agent_with_llm(small_agent, ScriptedLLM([timeout], scores=timeout))
    user = "1"  # ml-latest-small's first user, who rated many of movies-small's movies
    assert agent.index.user_history(user)[0]
    demo = build_ui(lambda name: agent, ["movies-small"], "movies-small")
    port = free_port()
    launch(demo, "127.0.0.1", port, token=None, block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.goto(f"http://127.0.0.1:{port}")
                expect(page.locator("button.example").first).to_be_visible(timeout=90_000)
                before = page.locator("#conversation-id code").inner_text()
                page.locator("#user textarea, #user input").first.fill(str(user))
                page.locator("#new-conversation").click()  # a known user: history to rerank
                expect(page.locator("#conversation-id code")).not_to_have_text(before, timeout=30_000)
                box = page.locator("#message textarea")
                box.fill("something to watch tonight")
                box.press("Enter")
                expect(page.locator("#chat")).to_contain_text(
                    "The model was slow, so these come straight from the retriever (timed out after 30 s)",
                    timeout=90_000)
                expect(page.locator(".item-card")).to_have_count(5, timeout=30_000)
            finally:
                browser.close()
    finally:
        demo.close()
