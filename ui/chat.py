"""Gradio chat: a thin adapter over agent.dialogue.ConversationAgent's event stream (no agent logic)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from typing import Any

from agent.dialogue import ConversationAgent


def card_markdown(item: dict[str, Any]) -> str:
    """One item card's text: title, main attributes, reason."""
    attributes = item.get("attributes", {})
    facts = []
    if attributes.get("year"):
        facts.append(str(attributes["year"]))
    if attributes.get("genres"):
        facts.append(", ".join(attributes["genres"][:4]))
    return f"**{html.escape(item['title'])}**  \n{' · '.join(facts)}  \n_{html.escape(item['reason'])}_"


def apply_event(history: list[dict[str, str]], items: list[dict[str, Any]], event: dict[str, Any]
                ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Fold one agent event into the chat history and the cards (a pure function, tested alone)."""
    if event["type"] == "items":
        items = event["items"]
        history = [*history, {"role": "assistant", "content": ""}]
    elif event["type"] == "delta":
        last = history[-1]
        history = [*history[:-1], {"role": "assistant", "content": last["content"] + event["text"]}]
    elif event["type"] == "done":
        history = [*history[:-1], {"role": "assistant", "content": event["reply"]}]
    return history, items


def build_ui(agent_for: Callable[[str], ConversationAgent], datasets: list[str], dataset: str) -> Any:
    """The chat page. `agent_for(dataset)` gives the agent of a dataset (opened once, then cached)."""
    import gradio as gr

    def start(dataset_name: str, user: str) -> tuple[str, list[dict[str, str]], list[dict[str, Any]],
                                                     dict[str, Any]]:
        agent = agent_for(dataset_name)
        if user.strip():
            agent.recommender.index.user_history(user.strip())  # an unknown user is an error, shown
        state = agent.store.create(user=user.strip() or None)
        return state.id, [], [], state.model_dump(exclude={"turns"})

    def send(message: str, dataset_name: str, conversation: str, history: list[dict[str, str]],
             items: list[dict[str, Any]]
             ) -> Iterator[tuple[str, str, list[dict[str, str]], list[dict[str, Any]], dict[str, Any]]]:
        agent = agent_for(dataset_name)
        if not message.strip():
            return
        if not conversation:  # a message sent before the page finished loading
            conversation = agent.store.create().id
        history = [*history, {"role": "user", "content": message}]
        for event in agent.stream(conversation, message):
            history, items = apply_event(history, items, event)
            yield "", conversation, history, items, agent.store.get(conversation).model_dump(exclude={"turns"})

    with gr.Blocks(title="recagent") as demo:
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
            agent = agent_for(dataset_name)
            for item in items:
                with gr.Group(elem_classes=["item-card"]):
                    gr.Markdown(card_markdown(item), elem_classes=["item-title"])
                    with gr.Row():
                        like = gr.Button("Like", size="sm", elem_classes=["like"])
                        dislike = gr.Button("Dislike", size="sm", elem_classes=["dislike"])

                    def feedback(kind: str, item_id: str = item["id"]) -> Any:
                        def handler(current: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
                            state = agent.feedback(conversation_id, item_id, kind)  # type: ignore[arg-type]
                            kept = [i for i in current if kind != "dislike" or i["id"] != item_id]
                            return kept, state.model_dump(exclude={"turns"})
                        return handler

                    like.click(feedback("like"), inputs=[items_state], outputs=[items_state, state_panel])
                    dislike.click(feedback("dislike"), inputs=[items_state], outputs=[items_state, state_panel])

        inputs = [dataset_box, user_box]
        outputs = [conversation, chatbot, items_state, state_panel]
        demo.load(start, inputs=inputs, outputs=outputs)
        new_button.click(start, inputs=inputs, outputs=outputs)
        dataset_box.change(start, inputs=inputs, outputs=outputs)
        message.submit(send, inputs=[message, dataset_box, conversation, chatbot, items_state],
                       outputs=[message, conversation, chatbot, items_state, state_panel])
    return demo
