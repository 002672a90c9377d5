"""What the HTTP API and the MCP server accept: typed request bodies with bounds, filter checks, and
validation errors in plain words (the field, then the rule; never a Python repr, never the echoed input)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    Tag,
)

from agent.dialogue import Feedback
from agent.filters import FilterError, validate

MAX_TEXT = 4000
MAX_PARTS = 50


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired surrogate (not valid Unicode)") from None
    return value


def _valid_json_text(value: Any) -> Any:
    """Every string in a JSON value (keys too) is valid Unicode."""
    if isinstance(value, str):
        _valid_unicode(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _valid_json_text(key)
            _valid_json_text(item)
    elif isinstance(value, list):
        for item in value:
            _valid_json_text(item)
    return value


# the length rule before the Unicode check: pydantic then states it for text ("at most 4000 characters")
Text = Annotated[str, AfterValidator(_valid_unicode)]
Id = Annotated[str, StringConstraints(max_length=200), AfterValidator(_valid_unicode)]
Query = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_valid_unicode)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT), AfterValidator(_valid_unicode)]
K = Annotated[StrictInt, Field(ge=1, le=50, description="how many items (a whole number, not a boolean)")]
History = Annotated[list[Id], Field(max_length=2000)]
Filters = Annotated[dict[Id, Any], AfterValidator(_valid_json_text)]
ConversationId = Annotated[str, PathParam(max_length=200)]


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id | None = None
    history: History | None = None
    query: Query | None = None
    filters: Filters | None = None
    k: K = 5


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id | None = None


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Message
    stream: StrictBool = False


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Id
    kind: Feedback


class ContentPart(BaseModel):
    type: Literal["text"]
    text: Query


def _parts_within_bounds(parts: list[ContentPart]) -> list[ContentPart]:
    total = sum(len(p.text) for p in parts)
    if total > MAX_TEXT:
        raise ValueError(f"the text parts together must have at most {MAX_TEXT} characters, not {total}")
    return parts


def _content_kind(value: Any) -> str | None:
    return "string" if isinstance(value, str) else "parts" if isinstance(value, list) else None


Parts = Annotated[list[ContentPart], Field(max_length=MAX_PARTS), AfterValidator(_parts_within_bounds)]
Content = Annotated[Annotated[Query, Tag("string")] | Annotated[Parts, Tag("parts")],
                    Discriminator(_content_kind, custom_error_type="content_type",
                                  custom_error_message="content must be a string or a list of text parts")]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Content = Field(description=f"a string, or at most {MAX_PARTS} text parts; at most {MAX_TEXT} "
                                         f"characters either way")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatBody(BaseModel):
    model: Id = "recagent"
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: StrictBool = False
    user: Id | None = Field(None, description="a conversation id to continue")


_TAGS = {"string", "parts"}  # the content union's branches: not fields, left out of the field's name


def field_name(loc: Collection[Any]) -> str:
    """'messages[0].content' from pydantic's ('body', 'messages', 0, 'content', 'string')."""
    name, previous = "", None
    parts = list(loc)
    for part in parts[1:] if parts and parts[0] in ("body", "query", "path", "header", "cookie") else parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif not (previous == "content" and part in _TAGS):
            name += f".{part}" if name else str(part)
        previous = part
    return name or "body"


def plain_errors(errors: Collection[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as {'field', 'msg', 'type'}: 'msg' names the field and the rule; no input is echoed
    (it may not even be encodable)."""
    out = []
    for error in errors:
        rule = str(error.get("msg", "")).removeprefix("Value error, ").encode("utf-8", "replace").decode()
        name = field_name(error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            rule = "not a known field"
        elif error.get("type") == "string_unicode":
            rule = "text contains an unpaired surrogate (not valid Unicode)"
        elif error.get("type") == "json_invalid":  # its loc is the position, not a field
            name, rule = "body", f"not valid JSON (at character {name.strip('[]')})"
        out.append({"field": name, "msg": f"{name}: {rule}", "type": error.get("type")})
    return out


def check_filter_attributes(filters: Mapping[str, Any] | None, attributes: Collection[str]) -> None:
    """FilterError (400) for a malformed filter, or one on an attribute the catalog does not have (it would
    match nothing)."""
    if not filters:
        return
    validate(filters)
    for key in filters:
        if not key.startswith("$") and key not in attributes:
            shown = ", ".join(sorted(attributes)[:20]) or "none"
            raise FilterError(f"unknown filter attribute {key!r} (this catalog's attributes: {shown})")
