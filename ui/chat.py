"""Gradio chat: a thin adapter over the agent's typed event stream (no agent logic here).

The conversation on the left, on the right what the agent understood (each entry removable) and the cards
of the latest turn in a grid, each with Like / Dislike / Seen. An empty conversation offers example
requests made from the catalog's vocabulary (agent.examples). Off loopback it needs the same token as the
HTTP API (as the login password); its events are not exposed as a public API, uploads are capped and
Gradio's analytics are off.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from agent.assemble import Agent
from agent.events import DeltaEvent, DoneEvent, ErrorEvent, ItemsEvent
from agent.examples import example_requests
from core.errors import InvalidRequest, NotFound, RecagentError
from ui.auth import requires_token
from ui.chat_view import PANEL_LABELS, PanelEntry, card_markdown, fallback_note, panel_entries

ChatEvent = ItemsEvent | DeltaEvent | DoneEvent | ErrorEvent
Message = dict[str, str]
Item = dict[str, Any]
FEEDBACK_BUTTONS = (("like", "Like"), ("dislike", "Dislike"), ("seen", "Seen"))
DONE_LABELS = {"like": "Liked ✓", "seen": "Seen ✓"}

CSS = """
#cards-grid { display: grid !important; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 10px; }
.item-card { border: 1px solid var(--border-color-primary) !important; border-radius: 10px !important;
             padding: 10px 12px !important; gap: 6px !important; background: var(--background-fill-primary); }
.item-card.liked { border-color: #15803d !important; box-shadow: inset 0 0 0 1px #15803d; }
.item-card.seen { background: var(--background-fill-secondary); }
.item-card .card-text p { margin: 0 0 3px 0; font-size: 0.92em; line-height: 1.35; }
.item-card .card-buttons { gap: 6px !important; flex-wrap: nowrap; }
.item-card button { border-radius: 6px !important; font-weight: 600; }
.item-card button.like { border: 1px solid #15803d !important; color: #166534 !important;
                         background: #f0fdf4 !important; }
.item-card button.like.done { background: #15803d !important; color: #fff !important; }
.item-card button.dislike { border: 1px solid #b91c1c !important; color: #991b1b !important;
                            background: #fef2f2 !important; }
.item-card button.seen { border: 1px solid #475569 !important; color: #334155 !important;
                         background: #f1f5f9 !important; }
.item-card button.seen.done { background: #475569 !important; color: #fff !important; }
#understood { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px 12px !important; }
#header { align-items: center; }
#new-conversation { align-self: center; }
.understood-row { gap: 4px 16px !important; }
.understood-group { flex: 0 1 auto !important; width: auto !important; gap: 6px !important; flex-wrap: wrap !important;
                    align-items: center !important; }
.understood-group > * { flex: 0 0 auto !important; width: auto !important; min-width: 0 !important; }
#title p, #title h3 { margin: 0 0 2px 0; }
.understood-row { align-items: center !important; gap: 6px !important; flex-wrap: wrap !important;
                  flex-direction: row !important; }
.understood-row > * { flex: 0 0 auto !important; width: auto !important; min-width: 0 !important; }
.understood-label p { margin: 0; font-weight: 600; }
button.forget { border-radius: 999px !important; border: 1px solid #6366f1 !important; background: #eef2ff !important;
                color: #3730a3 !important; flex: 0 0 auto !important; }
.cards-empty p { color: var(--body-text-color-subdued); margin: 8px 0; }
.conversation-id p { font-size: 0.8em; color: var(--body-text-color-subdued); margin: 0; }
button.example { border: 1px dashed #6366f1 !important; flex: 0 0 auto !important; }
"""


def apply_event(history: list[Message], items: list[Item], event: ChatEvent) -> tuple[list[Message], list[Item]]:
    """Fold one agent event into the chat history and the latest turn's cards (a pure function, tested
    alone). A turn that fell back ends with a note saying so."""
    if isinstance(event, ItemsEvent):
        items = [item.model_dump() for item in event.items]
        history = [*history, {"role": "assistant", "content": ""}]
    elif isinstance(event, DeltaEvent):
        last = history[-1]
        history = [*history[:-1], {"role": "assistant", "content": last["content"] + event.text}]
    elif isinstance(event, DoneEvent):
        note = fallback_note(event.response.model_dump())
        text = event.response.reply + (f"\n\n**Note:** *{note}*" if note else "")
        history = [*history[:-1], {"role": "assistant", "content": text}]
    else:
        history = [*history, {"role": "assistant", "content": f"Sorry, that failed: {event.message}"}]
    return history, items


def marked(items: list[Item], item_id: str, kind: str | None) -> list[Item]:
    """The cards after feedback on one of them: a disliked card goes, a liked or seen one is marked."""
    if kind == "dislike":
        return [i for i in items if i["id"] != item_id]
    return [{**i, "feedback": kind} if i["id"] == item_id else i for i in items]


def build_ui(agent_for: Callable[[str], Agent], datasets: list[str], dataset: str) -> Any:
    """The chat page. `agent_for(dataset)` gives the agent of a dataset (opened once, then cached)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    def public(state: Any) -> dict[str, Any]:
        return dict(state.model_dump(exclude={"turns"}))

    def title_of(agent: Agent) -> Callable[[str], str]:
        return lambda item_id: agent.index.entries[item_id].title if item_id in agent.index.entries else item_id

    def start(dataset_name: str, user: str) -> tuple[str, list[Message], list[Item], dict[str, Any], list[str]]:
        agent = agent_for(dataset_name)
        state = agent.conversations.create(user=user.strip() or None)  # an unknown user is an error, shown
        return (state.id, [], [], public(state),
                example_requests(agent.conversations.vocabulary, agent.index))

    def send(message: str, dataset_name: str, conversation: str, history: list[Message], items: list[Item]
             ) -> Iterator[tuple[str, str, list[Message], list[Item], dict[str, Any], list[str]]]:
        dialogue = agent_for(dataset_name).conversations
        if not message.strip():
            return
        if not conversation:  # a message sent before the page finished loading
            conversation = dialogue.create().id
        history = [*history, {"role": "user", "content": message}]
        for event in dialogue.stream(conversation, message):
            history, items = apply_event(history, items, event)
            yield "", conversation, history, items, public(dialogue.store.get(conversation)), []

    with gr.Blocks(title="recagent", analytics_enabled=False) as demo:
        with gr.Row(elem_id="header"):
            gr.Markdown("### recagent\nAsk for recommendations, then like, dislike or mark what you get.",
                        elem_id="title")
            dataset_box = gr.Dropdown(choices=datasets, value=dataset, label="dataset", scale=1,
                                      interactive=len(datasets) > 1, elem_id="dataset")
            user_box = gr.Textbox(label="user id (optional: pulls in that user's history)", elem_id="user", scale=1)
            new_button = gr.Button("New conversation", elem_id="new-conversation", scale=0, min_width=170)
        conversation = gr.State("")
        items_state = gr.State([])
        state_store = gr.State({})
        examples_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=5, min_width=360):
                understood_box = gr.Column(elem_id="understood")
                chatbot = gr.Chatbot(label="chat", elem_id="chat", height=470, buttons=["copy"],
                                     placeholder="Ask for something, or pick an example below.")
                message = gr.Textbox(label="message", placeholder="say what you want, what you liked, what not",
                                     elem_id="message")
                examples_box = gr.Column(elem_id="examples")
            with gr.Column(scale=7, min_width=480):
                cards_box = gr.Column(elem_id="cards")
                conversation_note = gr.Markdown(elem_id="conversation-id", elem_classes=["conversation-id"])

        send_inputs = [message, dataset_box, conversation, chatbot, items_state]
        send_outputs = [message, conversation, chatbot, items_state, state_store, examples_state]

        with examples_box:
            @gr.render(inputs=[examples_state])
            def examples(texts: list[str]) -> None:
                if not texts:
                    return
                gr.Markdown("**Try one of these:**")
                with gr.Row(elem_classes=["understood-row"]):
                    for text in texts:
                        button = gr.Button(text, size="sm", elem_classes=["example"], min_width=0)
                        button.click(lambda text=text: text, outputs=[message], api_visibility="private").then(
                            send, inputs=send_inputs, outputs=send_outputs, api_visibility="private")

        with understood_box:
            @gr.render(inputs=[state_store, dataset_box])
            def understood(state: dict[str, Any], dataset_name: str) -> None:
                agent = agent_for(dataset_name)
                entries = panel_entries(state or {}, title_of(agent))
                gr.Markdown("**What I understood**" + ("" if entries else ": nothing yet. Say what you like, "
                                                       "want or don't want, or pick an example."))
                groups: dict[str, list[PanelEntry]] = {}
                for entry in entries:
                    groups.setdefault(entry.kind, []).append(entry)
                with gr.Row(elem_classes=["understood-row"]):
                    for kind, group in groups.items():
                        with gr.Row(elem_classes=["understood-group", f"understood-{kind}"]):
                            gr.Markdown(f"{PANEL_LABELS[kind]}:", elem_classes=["understood-label"])
                            for entry in group:
                                button = gr.Button(f"{entry.text}  ×", size="sm", min_width=0,
                                                   elem_classes=["forget", f"forget-{kind}"])

                                def forget(conversation_id: str, current: list[Item], entry: PanelEntry = entry
                                           ) -> tuple[dict[str, Any], list[Item]]:
                                    try:
                                        state = agent.conversations.forget(conversation_id, entry.kind,  # type: ignore[arg-type]
                                                                           entry.value)
                                    except NotFound:  # already gone (a second click): show the state as it is
                                        state = agent.conversations.store.get(conversation_id)
                                    except RecagentError as exc:
                                        raise gr.Error(str(exc)) from exc
                                    undone = entry.value if entry.kind in ("liked", "seen") else None
                                    return public(state), [i if i["id"] != undone else {**i, "feedback": None}
                                                           for i in current]

                                button.click(forget, inputs=[conversation, items_state],
                                             outputs=[state_store, items_state], api_visibility="private")

        with cards_box:
            @gr.render(inputs=[items_state, dataset_box])
            def cards(items: list[Item], dataset_name: str) -> None:
                agent = agent_for(dataset_name)
                vocabulary = agent.conversations.vocabulary
                if not items:
                    gr.Markdown("Recommendations for your message will appear here, each with Like, Dislike "
                                "and Seen.", elem_classes=["cards-empty"])
                    return
                gr.Markdown("**Picks for your last message**", elem_id="cards-heading")
                with gr.Column(elem_id="cards-grid"):
                    for item in items:
                        done = item.get("feedback")
                        with gr.Column(elem_classes=["item-card", *([done] if done == "seen" else []),
                                                     *(["liked"] if done == "like" else [])], min_width=0):
                            gr.Markdown(card_markdown(item, vocabulary.year_attribute,
                                                      vocabulary.constraint_attributes),
                                        elem_classes=["card-text"])
                            with gr.Row(elem_classes=["card-buttons"]):
                                for kind, label in FEEDBACK_BUTTONS:
                                    button = gr.Button(DONE_LABELS.get(kind, label) if done == kind else label,
                                                       size="sm", min_width=0,
                                                       variant="secondary",
                                                       elem_classes=[kind, *(["done"] if done == kind else [])])

                                    def feedback(conversation_id: str, current: list[Item], kind: str = kind,
                                                 item_id: str = item["id"]) -> tuple[list[Item], dict[str, Any]]:
                                        try:
                                            state = agent.conversations.feedback(conversation_id, item_id,
                                                                                 kind)  # type: ignore[arg-type]
                                        except RecagentError as exc:
                                            raise gr.Error(str(exc)) from exc
                                        return marked(current, item_id, kind), public(state)

                                    button.click(feedback, inputs=[conversation, items_state],
                                                 outputs=[items_state, state_store], api_visibility="private")

        start_outputs = [conversation, chatbot, items_state, state_store, examples_state]
        conversation.change(lambda c: f"conversation `{c}`" if c else "", inputs=[conversation],
                            outputs=[conversation_note], api_visibility="private")
        demo.load(start, inputs=[dataset_box, user_box], outputs=start_outputs, api_visibility="private")
        new_button.click(start, inputs=[dataset_box, user_box], outputs=start_outputs, api_visibility="private")
        dataset_box.change(start, inputs=[dataset_box, user_box], outputs=start_outputs, api_visibility="private")
        message.submit(send, inputs=send_inputs, outputs=send_outputs, api_visibility="private")
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
                prevent_thread_lock=not block, css=CSS)
