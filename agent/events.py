"""The typed outputs of a turn: the response, and the events a streamed turn emits.

A turn emits `items` (ranked and explained), `delta` pieces of the reply, then `done` with the whole
response; `error` ends a stream that failed after it started. The chat, the SSE stream and the
non-streaming API are views of these objects; `wire` is their one JSON form.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.intent import Intent


class Recommendation(BaseModel):
    id: str
    title: str
    score: float
    reason: str
    evidence: list[str] = Field(default_factory=list, description="history items and attributes cited")
    attributes: dict[str, Any] = Field(default_factory=dict)


class RecommendationResponse(BaseModel):
    items: list[Recommendation]
    reply: str
    reranked_by: Literal["llm", "retriever"]
    reply_by: Literal["llm", "template"]
    fallback: bool = Field(description="true when the LLM was configured but could not be used")
    fallback_reason: str | None = None
    timings: dict[str, float] = Field(default_factory=dict, description="seconds: retrieval, rerank, reply")
    intent: Intent | None = Field(None, description="what the turn's message was read as (conversation turns)")


class TurnRequest(BaseModel):
    """What one turn recommends for. A known `user` brings their stored history; `history` adds to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str | None = None
    history: tuple[str, ...] = ()
    context: tuple[str, ...] = Field((), description="items retrieval reads before the history but the user did "
                                                      "not choose (a conversation's earlier recommendations): "
                                                      "never recommended again, never cited as theirs")
    query: str | None = None
    k: int = Field(5, ge=1)
    filters: dict[str, Any] | None = None
    exclude: tuple[str, ...] = ()


class ItemsEvent(BaseModel):
    type: Literal["items"] = "items"
    items: list[Recommendation]
    fallback: bool = False
    fallback_reason: str | None = None


class DeltaEvent(BaseModel):
    type: Literal["delta"] = "delta"
    text: str


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    response: RecommendationResponse


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    message: str
    status: int = 500


Event = Annotated[ItemsEvent | DeltaEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]


def wire(event: ItemsEvent | DeltaEvent | DoneEvent | ErrorEvent) -> dict[str, Any]:
    """The JSON an event travels as (SSE, the chat): `done` carries the response's fields at top level."""
    if isinstance(event, DoneEvent):
        return {"type": "done", **event.response.model_dump()}
    return event.model_dump()
