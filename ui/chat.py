"""Gradio chat: a thin adapter over the agent's typed event stream (no agent logic here).

Off loopback it needs the same token as the HTTP API (as the login password); its events are not
exposed as a public API, uploads are capped and Gradio's analytics are off.
"""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from agent.assemble import Agent
from agent.events import DeltaEvent, DoneEvent, ErrorEvent, ItemsEvent
from core.errors import InvalidRequest
from ui.auth import requires_token

ChatEvent = ItemsEvent | DeltaEvent | DoneEvent | ErrorEvent


def card_markdown(item: dict[str, Any]) -> str:
    """One item card's text: title, main attributes, reason."""
    attributes = item.get("attributes", {})
    facts = []
    if attributes.get("year"):
        facts.append(str(attributes["year"]))
    if attributes.get("genres"):
        facts.append(", ".join(attributes["genres"][:4]))
    return f"**{html.escape(item['title'])}**  \n{' · '.join(facts)}  \n_{html.escape(item['reason'])}_"


def apply_event(history: list[dict[str, str]], items: list[dict[str, Any]], event: ChatEvent
                ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Fold one agent event into the chat history and the cards (a pure function, tested alone)."""
    if isinstance(event, ItemsEvent):
        items = [item.model_dump() for item in event.items]
        history = [*history, {"role": "assistant", "content": ""}]
    elif isinstance(event, DeltaEvent):
        last = history[-1]
        history = [*history[:-1], {"role": "assistant", "content": last["content"] + event.text}]
    elif isinstance(event, DoneEvent):
        history = [*history[:-1], {"role": "assistant", "content": event.response.reply}]
    else:
        history = [*history, {"role": "assistant", "content": f"Sorry, that failed: {event.message}"}]
    return history, items


def build_ui(agent_for: Callable[[str], Agent], datasets: list[str], dataset: str) -> Any:
    """The chat page. `agent_for(dataset)` gives the agent of a dataset (opened once, then cached)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    def start(dataset_name: str, user: str) -> tuple[str, list[dict[str, str]], list[dict[str, Any]],
                                                     dict[str, Any]]:
        dialogue = agent_for(dataset_name).conversations
        state = dialogue.create(user=user.strip() or None)  # an unknown user is an error, shown
        return state.id, [], [], state.model_dump(exclude={"turns"})

    def send(message: str, dataset_name: str, conversation: str, history: list[dict[str, str]],
             items: list[dict[str, Any]]
             ) -> Iterator[tuple[str, str, list[dict[str, str]], list[dict[str, Any]], dict[str, Any]]]:
        dialogue = agent_for(dataset_name).conversations
        if not message.strip():
            return
        if not conversation:  # a message sent before the page finished loading
            conversation = dialogue.create().id
        history = [*history, {"role": "user", "content": message}]
        for event in dialogue.stream(conversation, message):
            history, items = apply_event(history, items, event)
            yield "", conversation, history, items, dialogue.store.get(conversation).model_dump(exclude={"turns"})

    with gr.Blocks(title="recagent", analytics_enabled=False) as demo:
        gr.Markdown("## recagent — ask for recommendations, then like or dislike what you get")
        with gr.Row():
            dataset_box = gr.Dropdown(choices=datasets, value=dataset, label="dataset",
                                      interactive=len(datasets) > 1, elem_id="dataset")
            user_box = gr.Textbox(label="user id (optional: pulls in that user's history)", elem_id="user")
            new_button = gr.Button("New conversation", elem_id="new-conversation")
        conversation = gr.State("")
        items_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="chat", elem_id="chat", height=420)
                message = gr.Textbox(label="message", placeholder="e.g. a funny movie from the 90s, nothing scary",
                                     elem_id="message")
            with gr.Column(scale=2):
                state_panel = gr.JSON(label="conversation state", elem_id="state")

        @gr.render(inputs=[items_state, conversation, dataset_box])
        def cards(items: list[dict[str, Any]], conversation_id: str, dataset_name: str) -> None:
            dialogue = agent_for(dataset_name).conversations
            for item in items:
                with gr.Group(elem_classes=["item-card"]):
                    gr.Markdown(card_markdown(item), elem_classes=["item-title"])
                    with gr.Row():
                        like = gr.Button("Like", size="sm", elem_classes=["like"])
                        dislike = gr.Button("Dislike", size="sm", elem_classes=["dislike"])

                    def feedback(kind: str, item_id: str = item["id"]) -> Any:
                        def handler(current: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
                            state = dialogue.feedback(conversation_id, item_id, kind)  # type: ignore[arg-type]
                            kept = [i for i in current if kind != "dislike" or i["id"] != item_id]
                            return kept, state.model_dump(exclude={"turns"})
                        return handler

                    like.click(feedback("like"), inputs=[items_state], outputs=[items_state, state_panel],
                               api_visibility="private")
                    dislike.click(feedback("dislike"), inputs=[items_state], outputs=[items_state, state_panel],
                                  api_visibility="private")

        inputs = [dataset_box, user_box]
        outputs = [conversation, chatbot, items_state, state_panel]
        demo.load(start, inputs=inputs, outputs=outputs, api_visibility="private")
        new_button.click(start, inputs=inputs, outputs=outputs, api_visibility="private")
        dataset_box.change(start, inputs=inputs, outputs=outputs, api_visibility="private")
        message.submit(send, inputs=[message, dataset_box, conversation, chatbot, items_state],
                       outputs=[message, conversation, chatbot, items_state, state_panel], api_visibility="private")
    return demo


def launch(demo: Any, host: str, port: int, token: str | None, block: bool = True) -> None:
    """Serve the chat. Off loopback the token is required, as the password of the login page."""
    if requires_token(host) and not token:
        raise InvalidRequest(f"serving the chat on {host} (not loopback) needs a token: RECAGENT_API_TOKEN "
                             f"or api.token in the settings file")

    def check(username: str, password: str) -> bool:
        return token is not None and secrets.compare_digest(password.encode(), token.encode())

    demo.launch(server_name=host, server_port=port, share=False, show_error=False, quiet=True,
                auth=check if token else None, footer_links=[], max_file_size="1mb",
                prevent_thread_lock=not block)
