"""Reading constraints out of a message, from the catalog itself rather than from word lists.

The vocabulary is the catalog's own: the values of its categorical attributes that most items carry
(genres on MovieLens, tags on Last.fm, a brand or category in a shop) are *constraint* values; values of
sparser attributes (MovieLens user tags such as "funny") are *hints* that point to the constraint value
they go with in the catalog ("funny" -> Comedy), when enough items show the association. A phrase in the
message matches a value exactly (case, plural and punctuation aside), through a hint, fuzzily
(difflib), or by embedding similarity with a clear margin over every other value. A negation before
it ("no", "nothing", "without", ...) turns it into an exclusion. Years are read only when the catalog has
a year attribute. On a catalog without genres, "comedy" therefore constrains nothing.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from agent.catalog import LoadedIndex
from agent.retrieval import QueryEncoder

NEGATION = re.compile(r"\b(no|not|nothing|without|avoid|hate|don'?t want|except|skip|never|none)\b[^.,;!?]{0,30}$",
                      re.IGNORECASE)
DECADE = re.compile(r"\b(?:from the |in the )?(?:19|20)?([0-9]0)'?s\b", re.IGNORECASE)
AFTER = re.compile(r"\b(?:after|since|newer than|from)\s+((?:18|19|20)\d\d)\b", re.IGNORECASE)
BEFORE = re.compile(r"\b(?:before|older than|until)\s+((?:18|19|20)\d\d)\b", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'&+-]*")
# Words that never name a constraint by themselves (the item noun is added per catalog).
_STOP_TEXT = """
    a an the and or but of for to in on at by with from like as is are be was were it its this that these
    those some something anything any more most very really just me my i you your we our they them please want
    need looking look find give show recommend recommendation recommendations suggest good great best nice new
    old one two few lot lots kind sort type stuff thing things maybe also too again other another same watch
    watched listen listened read play played buy bought see seen tonight today weekend night day time no not
    nothing without avoid hate except skip never none don't dont do does did have has had can could would
    should will shall may might must what which who whom whose when where why how all both each every than
    then there here about above below up down out off over under into onto very much many such only own so
"""
STOPWORDS = frozenset(_STOP_TEXT.split())

MIN_SUPPORT_SHARE = 0.005  # of the catalog's items a constraint value must be on (and at least 5)
MIN_HINT_SUPPORT = 3  # items a hint value must be on before it stands for a constraint value
MIN_HINT_SHARE = 0.7  # share of those items that carry the constraint value
EMBED_MIN = 0.62  # cosine a phrase needs to a value's name...
EMBED_MARGIN = 0.15  # ...and its lead over the next-best value


def key(text: str) -> str:
    """A comparison key: lower case, words only, each word singular ("Comedies" -> "comedy")."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    return " ".join(_singular(w) for w in words)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Constraint:
    attribute: str
    value: str
    negated: bool
    how: str  # exact, hint, fuzzy, embedding


class CatalogVocabulary:
    """The constraint values of one catalog, and how message phrases map onto them."""

    def __init__(self, index: LoadedIndex, encoder: QueryEncoder | None = None, min_coverage: float = 0.3) -> None:
        self.encoder = encoder
        self.noun = index.noun
        entries = list(index.entries.values())
        n = max(len(entries), 1)
        coverage: Counter[str] = Counter()
        values: dict[str, Counter[str]] = defaultdict(Counter)
        numeric: dict[str, list[float]] = defaultdict(list)
        for entry in entries:
            for name, value in entry.attributes.items():
                if isinstance(value, list) and value:
                    coverage[name] += 1
                    values[name].update(str(v) for v in value)
                elif isinstance(value, str) and value:
                    coverage[name] += 1
                    values[name][value] += 1
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    numeric[name].append(float(value))
        self._stop = STOPWORDS | {key(self.noun), key(self.noun + "s"), "movie", "film", "song", "track", "album",
                                  "item", "product", "artist", "band", "music", "show", "book"}
        # A constraint value is carried by enough items (at least MIN_SUPPORT_SHARE of the catalog, and 5)
        # of an attribute that a good part of the catalog has; rarer values can still be hints.
        min_support = max(5, math.ceil(MIN_SUPPORT_SHARE * n))
        self.constraint_attributes = sorted(
            name for name in values if coverage[name] / n >= min_coverage
            and sum(1 for count in values[name].values() if count >= min_support) >= 2)
        self._value_of: dict[str, tuple[str, str]] = {}
        self.support: dict[tuple[str, str], int] = {}
        for name in self.constraint_attributes:
            for value, count in values[name].most_common():
                k = key(value)
                if count >= min_support and k and k not in self._value_of and \
                        not all(word in self._stop for word in k.split()):
                    self._value_of[k] = (name, value)
                    self.support[(name, value)] = count
        self._hints = self._hint_map(entries, values)
        self.year_attribute = next((name for name, xs in sorted(numeric.items())
                                    if name.lower() in {"year", "release_year", "released"} or
                                    (xs and min(xs) >= 1800 and max(xs) <= 2100 and all(x == int(x) for x in xs))),
                                   None)
        self._embed_lock = threading.Lock()

    def _hint_map(self, entries: Sequence[object], values: dict[str, Counter[str]]) -> dict[str, tuple[str, str]]:
        """Values that are no constraint values themselves (a sparse attribute's, or rare ones) but stand for
        one constraint value on most items that carry them ("funny" -> Comedy, "nu metal" -> metal)."""
        hints: dict[str, tuple[str, str]] = {}
        n_items = max(len(entries), 1)
        for hint_attribute in values:
            together: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
            totals: Counter[str] = Counter()
            for entry in entries:
                attributes = entry.attributes  # type: ignore[attr-defined]
                hint_values = attributes.get(hint_attribute)
                if not isinstance(hint_values, list):
                    continue
                for hint in hint_values:
                    totals[hint] += 1
                    for name in self.constraint_attributes:
                        vs = attributes.get(name)
                        for v in (vs if isinstance(vs, list) else [vs] if vs else []):
                            together[hint][(name, str(v))] += 1
            for hint, count in totals.items():
                k = key(hint)
                if count < MIN_HINT_SUPPORT or not k or k in self._value_of or \
                        all(word in self._stop for word in k.split()):
                    continue
                strong = [(n / count / max(values[v[0]][v[1]] / n_items, 1e-9), v) for v, n in together[hint].items()
                          if n / count >= MIN_HINT_SHARE and v in self.support and v[1] != hint]
                if strong:  # the value this hint says most about: highest lift over its base rate
                    hints.setdefault(k, max(strong)[1])
        return hints

    @cached_property
    def _value_keys(self) -> list[str]:
        return list(self._value_of)

    @cached_property
    def _value_vectors(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Embeddings of the most common constraint values' names (at most 500), computed once."""
        assert self.encoder is not None
        common = sorted(self._value_of.values(), key=lambda v: -self.support[v])[:500]
        vectors = self.encoder.encode_many([value for _, value in common]) if common else np.zeros((0, 1))
        return common, vectors

    def warm(self) -> None:
        """Compute what the first message naming no exact value would otherwise wait for."""
        _ = self._value_keys
        if self.encoder is not None and self._value_of:
            with self._embed_lock:
                _ = self._value_vectors

    def family(self, attribute: str, value: str) -> list[str]:
        """The value and every value of the attribute that contains all its words ("metal" -> "death metal")."""
        words = set(key(value).split())
        related = [v for (a, v) in self._value_of.values() if a == attribute and words <= set(key(v).split())]
        return sorted(set(related) | {value})

    def constraints(self, message: str, masked: Sequence[str] = (), embed: bool = True) -> list[Constraint]:
        """Constraint values named in the message; `masked` spans (titles the user wrote) are skipped.
        `embed=False` keeps to exact, hint and fuzzy matches (no encoder call)."""
        text = message
        for span in sorted(masked, key=len, reverse=True):
            text = re.sub(re.escape(span), " , ", text, flags=re.IGNORECASE)
        lowered = text.lower()
        tokens = [(m.group(0), m.start()) for m in _TOKEN.finditer(lowered)]
        used = [False] * len(tokens)
        found: list[Constraint] = []
        unmatched: list[tuple[str, int, int]] = []  # phrase, start char, token index
        for size in (3, 2, 1):
            for i in range(len(tokens) - size + 1):
                if any(used[i:i + size]):
                    continue
                phrase = " ".join(t for t, _ in tokens[i:i + size])
                k = key(phrase)
                hit, how = self._lookup(k, size)
                if hit is None:
                    if size <= 2 and k not in self._stop and all(key(t) not in self._stop for t, _ in
                                                                  tokens[i:i + size]) and len(phrase) >= 3:
                        unmatched.append((phrase, tokens[i][1], i))
                    continue
                used[i:i + size] = [True] * size
                found.append(Constraint(hit[0], hit[1], bool(NEGATION.search(lowered[: tokens[i][1]])), how))
        if embed and unmatched and self.encoder is not None and self._value_of:
            for (_phrase, start, i), hit in zip(unmatched, self._embedded([p for p, _, _ in unmatched]), strict=True):
                if hit is not None and not used[i]:
                    used[i] = True
                    found.append(Constraint(hit[0], hit[1], bool(NEGATION.search(lowered[:start])), "embedding"))
        return list({(c.attribute, c.value, c.negated): c for c in found}.values())

    def _lookup(self, k: str, size: int) -> tuple[tuple[str, str] | None, str]:
        if not k or k in self._stop:
            return None, ""
        if k in self._value_of:
            return self._value_of[k], "exact"
        if k in self._hints:
            return self._hints[k], "hint"
        if len(k) >= 5:
            close = difflib.get_close_matches(k, self._value_keys, n=1, cutoff=0.9)
            if close:
                return self._value_of[close[0]], "fuzzy"
        return None, ""

    def _embedded(self, phrases: list[str]) -> list[tuple[str, str] | None]:
        assert self.encoder is not None
        with self._embed_lock:
            names, vectors = self._value_vectors
        if len(names) < 2:
            return [None] * len(phrases)
        out: list[tuple[str, str] | None] = []
        for query in self.encoder.encode_many(phrases):  # every phrase in one forward pass
            sims = vectors @ query
            top = np.argsort(-sims)[:2]
            best, second = float(sims[top[0]]), float(sims[top[1]])
            out.append(names[int(top[0])] if best >= EMBED_MIN and best - second >= EMBED_MARGIN else None)
        return out

    def years(self, message: str) -> tuple[int | None, int | None]:
        """(earliest, latest) years the message asks for, when the catalog has years."""
        if self.year_attribute is None:
            return None, None
        low: int | None = None
        high: int | None = None
        decade = DECADE.search(message)
        if decade:
            start = int(decade.group(1))
            start += 1900 if start >= 30 else 2000
            low, high = start, start + 9
        if (after := AFTER.search(message)) is not None:
            low = int(after.group(1))
        if (before := BEFORE.search(message)) is not None:
            high = int(before.group(1))
        return low, high
