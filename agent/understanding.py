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
from agent.recommender import Recommender
from agent.retrieval import QueryEncoder

# A negation cue and the clause it opens: the cue negates constraint values up to the clause's end
# (punctuation, or a word that turns to what is wanted: "no horror but a comedy", "not action, something slow").
NEGATION = re.compile(
    r"\b(?:no|not|nothing|without|avoid|hate[sd]?|dislike[sd]?|don'?t|do not|didn'?t|did not|doesn'?t|does not|"
    r"can'?t stand|cannot stand|except|skip|never|none|neither|nor|less|tired of|sick of|anything but|"
    r"everything but|all but|other than|rather than|instead of|exclude|excluding|no more|enough of)\b",
    re.IGNORECASE)
NOT_A_NEGATION = re.compile(r"\b(?:don'?t|do not|wouldn'?t) mind\b|\bnot only\b|\bno matter\b|"
                            r"\bnot sure\b|\bnot too fussy\b|\bnothing but\b", re.IGNORECASE)
CLAUSE_END = re.compile(r"[.,;!?()]|(?<!anything )(?<!everything )(?<!all )(?<!nothing )"
                        r"\b(?:but|though|however|instead|rather|make it|give me|i want|i'?d like|"
                        r"i prefer|prefer|looking for|something|just|only|maybe|perhaps|then)\b(?! than| of)",
                        re.IGNORECASE)
NEGATION_REACH = 6  # words a cue reaches forward
YEAR = r"((?:18|19|20)\d\d)"
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
DECADE = re.compile(r"\b(?:(early|mid|late)[ -])?(?:the )?(?:((?:19|20)[0-9]0)'?s|'?([0-9]0)'?s|("
                    + "|".join(_DECADE_WORDS) + r"))\b", re.IGNORECASE)
RANGE = re.compile(rf"\b(?:between|from)?\s*{YEAR}\s*(?:-|–|to|and|until|through)\s*{YEAR}\b", re.IGNORECASE)
BEFORE = re.compile(rf"\b(?:before|older than|earlier than|prior to|pre-?)\s*{YEAR}\b", re.IGNORECASE)
UNTIL = re.compile(rf"\b(?:until|till|up to|through|no later than|not after)\s+{YEAR}\b|"
                   rf"\b{YEAR}\s+(?:or|and) (?:earlier|before|older)\b", re.IGNORECASE)
AFTER = re.compile(rf"\b(?:after|later than|newer than|more recent than|post-?)\s*{YEAR}\b", re.IGNORECASE)
SINCE = re.compile(rf"\b(?:since|starting(?: from| in)?|no earlier than|not before)\s+{YEAR}\b|"
                   rf"\b(?:from|in)\s+{YEAR}\s+(?:on|onwards?|and later)\b|"
                   rf"\b{YEAR}\s+(?:or|and) (?:later|after|newer|up)\b|\b{YEAR}\s+onwards?\b", re.IGNORECASE)
IN_YEAR = re.compile(rf"\b(?:in|from|of|made in|released in|came out in|year)\s+{YEAR}\b(?!\s*(?:on|onwards?|-|to))",
                     re.IGNORECASE)
NEWER = re.compile(r"\b(?:more recent|newer|more modern|later ones?|less old|not as old)\b(?!\s+than\s+\d)",
                   re.IGNORECASE)
OLDER = re.compile(r"\b(?:older|earlier ones?|less recent|not as new|more classic)\b(?!\s+than\s+\d)",
                   re.IGNORECASE)
RECENT = re.compile(r"\b(?:recent|latest|new releases?|brand new)\b", re.IGNORECASE)
RECENT_YEARS = 5  # "recent": the catalog's last this many years
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

# Mood and comparative words -> (values they ask for, values they rule out), as value keys. A word applies
# only where the catalog has such a value ("funnier" means Comedy on MovieLens, nothing on a shop without it).
MOODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **dict.fromkeys(["funny", "funnier", "funniest", "hilarious", "comedic", "laugh", "humorous", "humor",
                     "humour", "lighthearted", "light hearted"], (("comedy",), ())),
    **dict.fromkeys(["lighter", "feel good", "feelgood", "uplifting", "cheerful", "less dark", "not so dark"],
                    (("comedy",), ("horror",))),
    **dict.fromkeys(["scary", "scarier", "scariest", "spooky", "spookier", "creepy", "creepier", "frightening",
                     "terrifying", "horrifying", "horrific"], (("horror",), ())),
    **dict.fromkeys(["kid", "kiddie", "child", "family", "family friendly", "kid friendly", "toddler",
                     "little one", "year old"], (("children",), ())),
    **dict.fromkeys(["animated", "cartoon", "anime", "pixar", "disney"], (("animation",), ())),
    **dict.fromkeys(["romantic", "love story", "date night", "romcom", "rom com"], (("romance",), ())),
    **dict.fromkeys(["scifi", "science fiction", "sci fy", "syfy", "space", "futuristic", "alien"],
                    (("sci fi",), ())),
    **dict.fromkeys(["action packed", "explosion", "actionpacked", "fight", "shootout"], (("action",), ())),
    **dict.fromkeys(["suspense", "suspenseful", "thrilling", "edge of my seat", "tense"], (("thriller",), ())),
    **dict.fromkeys(["whodunit", "whodunnit", "detective"], (("mystery",), ())),
    **dict.fromkeys(["gangster", "mafia", "heist", "mob"], (("crime",), ())),
    **dict.fromkeys(["cowboy"], (("western",), ())),
    **dict.fromkeys(["doc", "docu", "true story"], (("documentary",), ())),
    **dict.fromkeys(["wwii", "ww2", "world war", "battle"], (("war",), ())),
    **dict.fromkeys(["magic", "wizard", "dragon", "magical"], (("fantasy",), ())),
    **dict.fromkeys(["tearjerker", "tear jerker", "dramatic", "emotional"], (("drama",), ())),
    **dict.fromkeys(["noir"], (("film noir",), ())),
    **dict.fromkeys(["singing", "sing along"], (("musical",), ())),
}


def key(text: str) -> str:
    """A comparison key: lower case, words only, each word singular ("Comedies" -> "comedy", "Children's" ->
    "children")."""
    words = re.sub(r"[^a-z0-9]+", " ", re.sub(r"['’]s\b", "", text.lower())).split()
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
    how: str  # exact, mood, hint, fuzzy, embedding
    start: int = 0  # where the words that named it are in the message (characters)
    end: int = 0


def negation_start(text: str, at: int) -> int | None:
    """Where the negation cue that reaches position `at` starts ("I don't like comedies", "nothing scary",
    "anything but westerns"), or None: the cue must be in the same clause and at most NEGATION_REACH words back."""
    window = text[max(0, at - 80):at]
    offset = max(0, at - 80)
    ends = list(CLAUSE_END.finditer(window))
    clause_start = ends[-1].end() if ends else 0
    clause = window[clause_start:]
    cues = [m for m in NEGATION.finditer(clause) if not NOT_A_NEGATION.match(clause, m.start())]
    if not cues:
        return None
    cue = cues[0]
    if len(clause[cue.end():].split()) > NEGATION_REACH:
        return None
    return offset + clause_start + cue.start()


@dataclass(frozen=True)
class YearRange:
    """Years a message asks for: bounds (inclusive), a relative wish ("newer", "older") and the words' spans."""

    low: int | None = None
    high: int | None = None
    relative: str | None = None
    spans: tuple[tuple[int, int], ...] = ()


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
        self._stop = STOPWORDS | {key(self.noun), key(self.noun + "s")}
        # Words for kinds of items say nothing by themselves, unless the catalog has them as values (a shop's
        # Books or Music category); they stop only after the values are known.
        generic_nouns = {"movie", "film", "song", "track", "album", "item", "product", "artist", "band", "music",
                         "show", "book"}
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
        self._stop |= generic_nouns - set(self._value_of)
        self._hints = self._hint_map(entries, values)
        self.year_attribute = next((name for name, xs in sorted(numeric.items())
                                    if name.lower() in {"year", "release_year", "released"} or
                                    (xs and min(xs) >= 1800 and max(xs) <= 2100 and all(x == int(x) for x in xs))),
                                   None)
        year_values = numeric.get(self.year_attribute or "", [])
        self.latest_year: int | None = int(max(year_values)) if year_values else None
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
        """Constraint values named in the message, with where they were named; `masked` spans (titles the user
        wrote) are skipped. `embed=False` keeps to exact, mood, hint and fuzzy matches (no encoder call)."""
        lowered = mask(message, masked).lower()
        tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(lowered)]
        used = [False] * len(tokens)
        found: list[Constraint] = []
        unmatched: list[tuple[str, int, int]] = []  # phrase, token index, tokens
        for size in (4, 3, 2, 1):
            for i in range(len(tokens) - size + 1):
                if any(used[i:i + size]):
                    continue
                phrase = " ".join(t for t, _, _ in tokens[i:i + size])
                start, end = tokens[i][1], tokens[i + size - 1][2]
                hits, how = self._lookup(key(phrase), size)
                if not hits:
                    if size <= 2 and key(phrase) not in self._stop and len(phrase) >= 3 and \
                            all(key(t) not in self._stop for t, _, _ in tokens[i:i + size]):
                        unmatched.append((phrase, i, size))
                    continue
                used[i:i + size] = [True] * size
                negated = negation_start(lowered, start) is not None
                for (attribute, value), wanted in hits:
                    if negated and not wanted:
                        continue  # "not lighter" does not ask for horror
                    found.append(Constraint(attribute, value, negated or not wanted, how, start, end))
        if embed and unmatched and self.encoder is not None and self._value_of:
            phrases = [(p, i, n) for p, i, n in unmatched if n == 1 or not any(used[i:i + n])]
            for (_phrase, i, size), hit in zip(phrases, self._embedded([p for p, _, _ in phrases]), strict=True):
                if hit is not None and not any(used[i:i + size]):
                    used[i:i + size] = [True] * size
                    start, end = tokens[i][1], tokens[i + size - 1][2]
                    found.append(Constraint(hit[0], hit[1], negation_start(lowered, start) is not None, "embedding",
                                            start, end))
        return list({(c.attribute, c.value, c.negated): c for c in found}.values())

    def is_stop(self, word: str) -> bool:
        """Whether a word (a key) never names anything by itself here (function words, the item noun)."""
        return word in self._stop

    def unknown_moods(self, message: str) -> list[str]:
        """Mood words in the message whose values this catalog lacks ("family" on a music catalog)."""
        words = key(message)
        return sorted(m for m, (wanted, unwanted) in MOODS.items() if f" {m} " in f" {words} " and
                      not any(v in self._value_of for v in (*wanted, *unwanted)))

    def _lookup(self, k: str, size: int) -> tuple[list[tuple[tuple[str, str], bool]], str]:
        """The values a phrase names, each with whether it is wanted (False: ruled out), and how it matched."""
        if not k or k in self._stop:
            return [], ""
        if k in self._value_of:
            return [(self._value_of[k], True)], "exact"
        hits = self._mood_hits(k)
        if hits:
            return hits, "mood"
        if size >= 4:
            return [], ""
        if k in self._hints:
            return [(self._hints[k], True)], "hint"
        if len(k) >= 5:
            close = difflib.get_close_matches(k, self._value_keys, n=1, cutoff=0.9)
            if close:
                return [(self._value_of[close[0]], True)], "fuzzy"
            mood = difflib.get_close_matches(k, [m for m in MOODS if len(m) >= 5 and m != k], n=1, cutoff=0.9)
            hits = self._mood_hits(mood[0]) if mood else []
            if hits:  # a misspelt mood word, only where this catalog has its values
                return hits, "fuzzy"
        return [], ""

    def _mood_hits(self, k: str) -> list[tuple[tuple[str, str], bool]]:
        """The values a mood word asks for (True) and rules out (False), of those this catalog has."""
        wanted, unwanted = MOODS.get(k, ((), ()))
        return [(self._value_of[v], True) for v in wanted if v in self._value_of] + \
            [(self._value_of[v], False) for v in unwanted if v in self._value_of]

    def _embedded(self, phrases: list[str]) -> list[tuple[str, str] | None]:
        assert self.encoder is not None
        with self._embed_lock:
            names, vectors = self._value_vectors
        if len(names) < 2:
            return [None] * len(phrases)
        out: list[tuple[str, str] | None] = []
        for phrase, query in zip(phrases, self.encoder.encode_many(phrases), strict=True):  # one forward pass
            sims = vectors @ query
            top = np.argsort(-sims)[:2]
            best, second = float(sims[top[0]]), float(sims[top[1]])
            name = names[int(top[0])]
            # a phrase that is only part of a value's name ("supplies" of "Art Supplies") does not name it
            part = set(key(phrase).split()) < set(key(name[1]).split())
            out.append(name if best >= EMBED_MIN and best - second >= EMBED_MARGIN and not part else None)
        return out

    def years(self, message: str) -> tuple[int | None, int | None]:
        """(earliest, latest) years the message asks for, when the catalog has years."""
        found = self.year_range(message)
        return found.low, found.high

    def year_range(self, message: str, masked: Sequence[str] = ()) -> YearRange:
        """The years a message asks for, bounds inclusive: "before 1970" ends at 1969, "after 2010" starts at
        2011, "from the 90s" is 1990-1999, "made in 1995" is 1995 alone; "newer"/"older" are relative (to a
        reference the caller knows). A year in parentheses belongs to a title and is not read."""
        if self.year_attribute is None:
            return YearRange()
        text = re.sub(r"\(\s*(?:18|19|20)\d\d\s*\)", lambda m: " " * len(m.group(0)), mask(message, masked))
        low: int | None = None
        high: int | None = None
        spans: list[tuple[int, int]] = []
        taken = [False] * (len(text) + 1)

        def claim(match: re.Match[str]) -> bool:
            if any(taken[match.start():match.end()]):
                return False
            taken[match.start():match.end()] = [True] * (match.end() - match.start())
            spans.append((match.start(), match.end()))
            return True

        def year_of(match: re.Match[str]) -> int:
            return int(next(g for g in match.groups() if g))

        for match in RANGE.finditer(text):
            if claim(match):
                a, b = sorted(int(g) for g in match.groups() if g)
                low, high = a, b
        for match in DECADE.finditer(text):
            if not claim(match):
                continue
            part, full, short, word = match.groups()
            start = int(full) if full else _DECADE_WORDS[word.lower()] if word else int(short) + (
                1900 if int(short) >= 30 else 2000)
            first, last = {"early": (0, 3), "mid": (3, 6), "late": (6, 9)}.get((part or "").lower(), (0, 9))
            low, high = start + first, start + last
        lowered = text.lower()
        for pattern, bound in ((BEFORE, -1), (UNTIL, 0)):
            for match in pattern.finditer(text):
                if claim(match):  # "nothing before 1980" starts at 1980
                    if negation_start(lowered, match.start()) is not None:
                        low = year_of(match) + bound + 1
                    else:
                        high = year_of(match) + bound
        for pattern, bound in ((AFTER, 1), (SINCE, 0)):
            for match in pattern.finditer(text):
                if claim(match):
                    if negation_start(lowered, match.start()) is not None:
                        high = year_of(match) + bound - 1
                    else:
                        low = year_of(match) + bound
        for match in IN_YEAR.finditer(text):
            if claim(match):
                low = high = year_of(match)
        relative = None
        for pattern, name in ((NEWER, "newer"), (OLDER, "older")):
            for match in pattern.finditer(text):
                if claim(match):
                    relative = name
        if relative is None and low is None and self.latest_year is not None:
            for match in RECENT.finditer(text):
                if claim(match):
                    low = self.latest_year - RECENT_YEARS + 1
        return YearRange(low, high, relative, tuple(spans))


def mask(message: str, spans: Sequence[str]) -> str:
    """The message with each span (a title the user wrote) blanked out, character positions kept; a comma
    stands at the span's start so that the words around it do not join."""
    text = message
    for span in sorted(spans, key=len, reverse=True):
        if span:
            text = re.sub(re.escape(span), lambda m: "," + " " * (len(m.group(0)) - 1), text, flags=re.IGNORECASE)
    return text


def title_key(title: str) -> str:
    title = re.sub(r"\(\d{4}\)\s*$", "", title).strip()
    title = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title)  # "Matrix, The" -> "The Matrix"
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


class TitleResolver:
    """Finds catalog items in free text: exact title words first, then fuzzy, then the embedding."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.by_key: dict[str, str] = {}
        for item_id, entry in recommender.index.entries.items():
            k = title_key(entry.title)
            if len(k) >= 3:
                self.by_key.setdefault(k, item_id)  # the first (lowest id) wins for remakes

    def resolve(self, phrase: str, embed: bool = True) -> str | None:
        """The item a phrase names; `embed=False` keeps to exact and fuzzy title matches."""
        k = title_key(phrase)
        if not k:
            return None
        if k in self.by_key:
            return self.by_key[k]
        if k.startswith("the ") and k[4:] in self.by_key:
            return self.by_key[k[4:]]
        close = difflib.get_close_matches(k, list(self.by_key), n=1, cutoff=0.85)
        if close:
            return self.by_key[close[0]]
        if not embed:
            return None
        found = self.recommender.candidates(query=phrase, k=1, ranker="text", exclude_seen=False)
        if found and found[0].score >= 0.75:
            return found[0].id
        return None

    def mentioned(self, text: str) -> list[tuple[str, str]]:
        """(item id, the words as written) for catalog titles in the text. A title must start with a
        capital letter where it is written, so everyday words that are also titles ("nothing", "up")
        are not taken for items."""
        lowered = f" {title_key(text)} "
        hits = []
        for k, item_id in self.by_key.items():
            if len(k) < 4 or f" {k} " not in lowered:
                continue
            words = r"\W+".join(re.escape(w) for w in k.split())
            match = re.search(rf"\b{words}\b", text, re.IGNORECASE)
            if match and match.group(0)[0].isupper():
                hits.append((item_id, match.group(0)))
        return list({item_id: (item_id, span) for item_id, span in hits}.values())
