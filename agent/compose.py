"""Reply sentences written from the evidence: the acknowledgment of the request's constraints, and one
sentence per item, each in a frame no other item of the reply uses.

Everything a sentence says comes from the item's evidence (agent.evidence) and its own attributes: the
user's own items it goes with, the values it shares with them, the constraints of the request it meets, its
attribute values, how popular it is here. The acknowledgment names only the constraints every item meets.
These sentences are the template reply, and fill in for items the LLM wrote no grounded sentence about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.catalog import LoadedIndex
from agent.events import Recommendation
from agent.evidence import popularity_word
from core.titles import natural_title

NUMBERS = ["No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten", "Eleven", "Twelve"]
YEAR_NAMES = frozenset({"year", "release_year", "released"})


def _join(words: Sequence[str], last: str = "and") -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def _plural(noun: str, n: int) -> str:
    if n == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class Constraint:
    attribute: str
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive


def constraints_of(filters: Mapping[str, Any] | None) -> list[Constraint]:
    """The request's filters read back as constraints (plain, $eq, $all, $in, $ne, $nin, $gt/$gte/$lt/$lte)."""
    out = []
    for attribute, condition in (filters or {}).items():
        if attribute.startswith("$"):
            continue
        if not isinstance(condition, dict):
            values = condition if isinstance(condition, list) else [condition]
            out.append(Constraint(attribute, all_of=tuple(str(v) for v in values)))
            continue
        all_of: list[str] = []
        any_of: list[str] = []
        none_of: list[str] = []
        low = high = None
        for op, operand in condition.items():
            values = operand if isinstance(operand, list) else [operand]
            if op in ("$eq",):
                all_of += [str(v) for v in values]
            elif op == "$all":
                for v in values:
                    if isinstance(v, list):
                        any_of += [str(x) for x in v]
                    else:
                        all_of.append(str(v))
            elif op == "$in":
                any_of += [str(v) for v in values]
            elif op in ("$ne", "$nin"):
                none_of += [str(v) for v in values]
            elif op in ("$gte", "$gt") and isinstance(operand, (int, float)):
                low = operand + (1 if op == "$gt" and float(operand).is_integer() else 0)
            elif op in ("$lte", "$lt") and isinstance(operand, (int, float)):
                high = operand - (1 if op == "$lt" and float(operand).is_integer() else 0)
        out.append(Constraint(attribute, tuple(all_of), tuple(any_of), tuple(none_of), low, high))
    return out


def _has(item: Recommendation, attribute: str, value: str) -> bool:
    held = item.attributes.get(attribute)
    values = held if isinstance(held, list) else [held] if held is not None else []
    return value.casefold() in {str(v).casefold() for v in values}


def _number(item: Recommendation, attribute: str) -> float | None:
    value = item.attributes.get(attribute)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _range_words(attribute: str, low: float | None, high: float | None) -> str:
    def shown(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    if attribute.lower() in YEAR_NAMES:
        if low is not None and high is not None:
            return f"from {shown(low)}" if low == high else f"from {shown(low)} to {shown(high)}"
        return f"from {shown(low)} on" if low is not None else f"from {shown(high)} or earlier"  # type: ignore[arg-type]
    if low is not None and high is not None:
        return f"with {attribute} from {shown(low)} to {shown(high)}"
    return f"with {attribute} of at least {shown(low)}" if low is not None else \
        f"with {attribute} of at most {shown(high)}"  # type: ignore[arg-type]


def acknowledgment(items: Sequence[Recommendation], filters: Mapping[str, Any] | None, noun: str) -> str | None:
    """'Five movies that are Animation and Comedy, none of them Horror, from 1969 or earlier:' — the
    constraints of the request that every item meets, in a sentence of its own; None without constraints."""
    if not items:
        return None
    wanted: list[str] = []
    either: list[str] = []
    unwanted: list[str] = []
    ranges: list[str] = []
    for c in constraints_of(filters):
        wanted += [v for v in c.all_of if all(_has(i, c.attribute, v) for i in items)]
        if c.any_of and all(any(_has(i, c.attribute, v) for v in c.any_of) for i in items):
            either.append(_join(c.any_of, "or"))
        unwanted += [v for v in c.none_of if not any(_has(i, c.attribute, v) for i in items)]
        if c.low is not None or c.high is not None:
            numbers = [_number(i, c.attribute) for i in items]
            if all(n is not None and (c.low is None or n >= c.low) and (c.high is None or n <= c.high)
                   for n in numbers):
                ranges.append(_range_words(c.attribute, c.low, c.high))
    if not (wanted or either or unwanted or ranges):
        return None
    n = len(items)
    count = NUMBERS[n] if n < len(NUMBERS) else str(n)
    opening = _turn("".join(i.id for i in items)) % 3
    head = (f"{count} {_plural(noun, n)}", f"Here are {count.lower()} {_plural(noun, n)}",
            f"I found {count.lower()} {_plural(noun, n)}")[opening]
    parts = []
    described = [*([_join(wanted)] if wanted else []), *either]
    if described:
        parts.append(("that are " if n > 1 else "that is ") + " and ".join(described))
    if unwanted:
        parts.append(("none of them " if n > 1 else "not ") + _join(unwanted, "or"))
    parts += ranges
    return head + ("," if unwanted and not described else "") + " " + ", ".join(parts) + ":"


@dataclass(frozen=True)
class ItemEvidence:
    """An item's evidence, typed: what its sentence may say."""

    title: str  # natural
    co_liked: tuple[str, ...]  # the user's own items whose fans liked it (natural titles)
    shared: tuple[str, ...]  # values it shares with the user's items
    holder: str | None  # one of the user's items with the first shared value
    asked: tuple[str, ...]  # constraint values it meets
    values: tuple[str, ...]  # its own descriptive values
    popularity: str


def item_evidence(index: LoadedIndex, item: Recommendation, values_shown: int = 2) -> ItemEvidence:
    entries = index.entries
    attribute = index.descriptive_attribute
    co = [natural_title(entries[e].title) for e in item.evidence if e in entries]
    holder = next((natural_title(entries[e[5:]].title) for e in item.evidence
                   if e.startswith("with:") and e[5:] in entries), None)
    shared = [e.split(":", 1)[1] for e in item.evidence if attribute and e.startswith(attribute + ":")]
    asked = [e.split(":", 2)[2] for e in item.evidence if e.startswith("asked:")]
    own = [str(v) for v in index.descriptive_values(item.id)]
    values = ([v for v in own if v not in asked] or own)[:values_shown]  # what it is besides what was asked
    return ItemEvidence(natural_title(item.title), tuple(co), tuple(shared), holder, tuple(asked), tuple(values),
                        popularity_word(index, item.id))


Frame = Callable[[ItemEvidence, str], str | None]


def _kind(values: Sequence[str], noun: str) -> str:
    phrase = f"{_join(values)} {noun}"
    return f"{_article(phrase)} {phrase}"


def _co(e: ItemEvidence) -> str:
    return _join(e.co_liked)


def _other_values(e: ItemEvidence) -> tuple[str, ...]:
    return tuple(v for v in e.values if v not in e.shared and v not in e.asked)


def _is(e: ItemEvidence, *kinds: str) -> bool:
    return e.popularity in kinds


# (kind, name, frame): a kind is tried before the next; within a kind the phrasings rotate with the item, so
# replies differ from each other, and no two items of one reply share a frame.
FRAMES: list[tuple[str, str, Frame]] = [
    ("co", "co-also", lambda e, n: f"People who liked {_co(e)} also liked {e.title}." if e.co_liked else None),
    ("co", "co-kind", lambda e, n: f"{e.title}, {_kind(e.values, n)}, is also liked by people who liked {_co(e)}."
     if e.co_liked and e.values else None),
    ("co", "co-if", lambda e, n: f"If {_co(e)} suited you, {e.title} is one its fans liked too."
     if e.co_liked else None),
    ("co", "co-same", lambda e, n: f"{e.title} goes with {_co(e)}: the same people liked both."
     if e.co_liked else None),
    ("co", "co-well", lambda e, n: f"Fans of {_co(e)} often liked {e.title} as well." if e.co_liked else None),
    ("co", "co-among", lambda e, n: f"Among people who liked {_co(e)}, {e.title} is a common next pick."
     if e.co_liked else None),
    ("shared", "shared-like", lambda e, n: f"Like {e.holder}, {e.title} is {_join(e.shared)}."
     if e.shared and e.holder else None),
    ("shared", "shared-with", lambda e, n: f"{e.title} shares {_join(e.shared)} with {e.holder}, one of yours."
     if e.shared and e.holder else None),
    ("shared", "shared-same", lambda e, n: f"{e.title} is {_join(e.shared)}, the same as {e.holder}."
     if e.shared and e.holder else None),
    ("shared", "shared-just", lambda e, n: f"{e.title} is {_join(e.shared)} too, just like {e.holder}."
     if e.shared and e.holder else None),
    ("asked", "asked-as", lambda e, n: f"{e.title} is {_join(e.asked)}, as you asked." if e.asked else None),
    ("asked", "asked-for", lambda e, n: f"For {_join(e.asked)}, there is {e.title}." if e.asked else None),
    ("asked", "asked-fits", lambda e, n: f"{e.title} fits the {_join(e.asked)} you asked for." if e.asked else None),
    ("values", "values-popular", lambda e, n: f"{e.title} is {_kind(e.values, n)}, and a popular one here."
     if e.values and _is(e, "popular", "very popular") else None),
    ("values", "values-popular-2", lambda e, n: f"{e.title}, {_kind(e.values, n)}, is popular here."
     if e.values and _is(e, "popular", "very popular") else None),
    ("values", "values-niche", lambda e, n: f"{e.title} is a lesser-known {_join(e.values)} pick."
     if e.values and _is(e, "niche") else None),
    ("values", "values-known", lambda e, n: f"{e.title} is a fairly well-known {_join(e.values)} {n}."
     if e.values and _is(e, "known") else None),
    ("values", "values-kind", lambda e, n: f"{e.title} is {_kind(e.values, n)}." if e.values else None),
    ("values", "values-listed", lambda e, n: f"{e.title} is listed as {_join(e.values)} here." if e.values else None),
    ("values", "values-adds", lambda e, n: f"{e.title} adds {_join(_other_values(e))} to the mix."
     if _other_values(e) else None),
    ("values", "values-brings", lambda e, n: f"{e.title} brings in {_join(e.values)}." if e.values else None),
    ("values", "values-then", lambda e, n: f"Then there is {e.title}, with {_join(e.values)}." if e.values else None),
    ("values", "values-in", lambda e, n: f"There is {_join(e.values)} in {e.title}." if e.values else None),
    ("values", "values-leans", lambda e, n: f"{e.title} leans {_join(e.values)}." if e.values else None),
    ("popularity", "popular-most", lambda e, n: f"{e.title} is one of the most popular {_plural(n, 2)} here."
     if _is(e, "very popular") else None),
    ("popularity", "popular-among", lambda e, n: f"{e.title} is among the most popular {_plural(n, 2)} here."
     if _is(e, "very popular") else None),
    ("popularity", "popular", lambda e, n: f"{e.title} is a popular {n} here."
     if _is(e, "popular", "very popular") else None),
    ("popularity", "known", lambda e, n: f"{e.title} is a fairly well-known {n} here." if _is(e, "known") else None),
    ("popularity", "niche", lambda e, n: f"{e.title} is a lesser-known {n} here." if _is(e, "niche") else None),
    ("popularity", "new", lambda e, n: f"{e.title} is new here." if _is(e, "new") else None),
    ("plain", "plain", lambda e, n: f"There is also {e.title}."),
]
KINDS = ("co", "shared", "asked", "values", "popularity", "plain")


def _turn(item_id: str) -> int:
    """A stable number per item (not Python's salted hash): where its phrasings start."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(item_id))


def item_sentences(index: LoadedIndex, items: Sequence[Recommendation], acknowledged: bool = False,
                   used: set[str] | None = None) -> list[tuple[str, str]]:
    """(item id, sentence) per item, each in a frame not used before in this reply (`used` is updated). With
    the constraints already acknowledged, the asked-for values are said only when nothing else is known."""
    used = set() if used is None else used
    kinds = [k for k in KINDS if not (acknowledged and k == "asked")] + (["asked"] if acknowledged else [])
    out = []
    for item in items:
        e = item_evidence(index, item)
        start = _turn(item.id)
        ranked: list[tuple[str, str]] = []
        for kind in kinds:
            mine = [(name, frame(e, index.noun)) for k, name, frame in FRAMES if k == kind]
            mine = mine[start % len(mine):] + mine[: start % len(mine)]
            ranked += [(name, text) for name, text in mine if text is not None]
        pick = next(((n, t) for n, t in ranked if n not in used), ranked[-1] if ranked else ("plain", e.title))
        used.add(pick[0])
        out.append((item.id, pick[1]))
    return out


def template_reply(index: LoadedIndex, items: Sequence[Recommendation],
                   filters: Mapping[str, Any] | None = None) -> str:
    """The reply from the evidence alone: the acknowledgment, then one sentence per item."""
    if not items:
        return f"I found no {index.noun} that matches; try fewer constraints."
    ack = acknowledgment(items, filters, index.noun)
    sentences = [s for _, s in item_sentences(index, items, acknowledged=ack is not None)]
    return " ".join([*([ack] if ack else []), *sentences])
