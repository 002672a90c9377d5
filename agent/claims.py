"""What a reply sentence claims about its items, checked against what the data holds about them.

Every word of a sentence, once its labels, the cited items' titles and the titles its evidence may name are
taken out, is one of three kinds:
- a **fact term**: a value of the catalog's attributes ("Comedy", "jazz", or a plain word for one such as
  "funny" or "animated", only for values the catalog has), a year or a decade, a popularity word ("popular",
  "lesser-known"), a relation to a title ("fans of X", "if you liked X"). Each is checked on the cited items:
  a value they lack (or, after "no"/"not"/"none of", one they have), a year they are not from, a title that is
  neither a cited item nor one of the user's own items in its evidence, a relation to another recommendation,
  a popularity they do not have;
- a **frame word** (function words, "people", "liked", "pick", ... and empty praise such as "good"): allowed,
  but a sentence of frame words only says nothing (`content_free`);
- anything else ("gripping", "dark", "monster", "acclaimed"): a claim the evidence cannot carry, refused.

The check is strict by design: "true words only" is a property of the reply, so a word the data cannot
back is a false claim even when it happens to be right. `ClaimChecker.problem` gives the reason a sentence
fails, `frame` the sentence with its titles and fact terms replaced by placeholders (two items of one reply
must not share one).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.catalog import LoadedIndex
from agent.events import Recommendation
from agent.evidence import popularity_word
from core.titles import natural_title


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_LABEL = re.compile(r"\[([A-Za-z0-9]{1,3})\]")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_YEARS = r"(1[89]\d\d|20\d\d)"
_SPAN = re.compile(rf"\bfrom {_YEARS} (?:to|until|through) {_YEARS}\b|\bfrom {_YEARS} or earlier\b|"
                   rf"\bfrom {_YEARS} on(?:wards?)?\b|\b(?:before|until) {_YEARS}\b|\b(?:after|since) {_YEARS}\b")
_DECADE = re.compile(r"(?:\b(1[89]|20)|')?\b(\d)0s\b")
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
NEGATIONS = _set("no not none nothing without never isn't aren't non nor neither free")
NEGATION_REACH = 4  # words back from a value that a negation reaches

# Plain words for common attribute values; a word counts only where the catalog has the value.
VALUE_WORDS: dict[str, tuple[str, ...]] = {
    "comedy": ("funny", "comic", "comedic", "hilarious", "laughs", "comedies"),
    "horror": ("scary", "frightening", "terrifying", "creepy", "horrors"),
    "animation": ("animated", "cartoon", "cartoons", "animations"),
    "romance": ("romantic", "romances", "love story"),
    "sci-fi": ("science fiction", "sci fi", "scifi"),
    "children": ("kids", "kid", "children's", "childrens"),
    "thriller": ("thrilling", "suspenseful", "thrillers"),
    "documentary": ("documentaries",),
    "musical": ("musicals",),
    "western": ("westerns",),
    "mystery": ("mysterious", "mysteries"),
    "fantasy": ("fantasies",),
    "adventure": ("adventures", "adventurous"),
    "drama": ("dramatic", "dramas"),
    "war": ("wartime",),
    "crime": ("crimes", "criminal"),
    "action": ("action-packed",),
}
POPULAR = _set("popular most-watched widely-seen well-liked loved hit favourite favorite favourites favorites "
               "crowd-pleaser")
WELL_KNOWN = _set("well-known known")
NICHE = _set("lesser-known niche obscure under-the-radar less-known")
POPULARITY_OF = {"popular": ("popular", "very popular"), "known": ("known", "popular", "very popular"),
                 "niche": ("niche", "new")}
# Words that carry no fact: function words, the frames' own words, and empty praise (allowed, but a sentence
# of these only is content-free).
FRAME_WORDS = _set("""
a an the and or but nor so yet of to in on at by for with from into onto as than then that this these those
it its it's they them their there here is are was were be been being has have had do does did will would can
could may might should must shall also too very really quite just only even still again both each every all
any some more most much many few one ones another other such same own which who whom whose what when where
why how if you your yours you're you've you'll you'd i i'm i'd we our us me my one's s
people person fans fan viewers listeners audience users folks those others everyone someone anyone
liked like likes loved loves enjoyed enjoy enjoys enjoying watched watch watching heard hear listen listened
listening play played seen see try trying pick picks choice choices option options suggestion suggestions
recommend recommended recommendation recommendations suggest suggested pair pairs next go goes going went
tend tends tended often usually also share shares shared sharing common match matches matched matching fit
fits fitted fitting asked ask asking wanted want wants looking look looked wish wished request requested
after before since until around about between among within across over under along
kind kinds sort sorts type types style taste tastes mood range years year decade era time
here catalog catalogue collection list lineup set mix selection rest
same similar alike close closer closest near along together too
good great nice strong solid fine worth worthwhile fun lovely cool decent love
suited suits suit adds add mix listed marked labelled labeled there goes go both part fairly
well again comes come brings bring in leans lean just then found here's
zero no one two three four five six seven eight nine ten eleven twelve
""")
NOUNS = _set("movie movies film films artist artists band bands musician musicians song songs track tracks "
                  "album albums item items product products show shows book books title titles thing things "
                  "genre genres tag tags category categories")


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def item_year(item: Recommendation) -> int | None:
    for name in ("year", "release_year", "released"):
        value = item.attributes.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    match = _TITLE_YEAR.search(item.title)
    return int(match.group(1)) if match else None


def _values_of(attributes: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for value in attributes.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v:
                out.add(_key(v))
    return out


@dataclass(frozen=True)
class ItemFacts:
    """What the data holds about one recommended item for this user: the sentences' ground truth."""

    title: str
    values: frozenset[str]  # its attribute values, keyed
    year: int | None
    popularity: str  # very popular, popular, known, niche, new
    own_titles: tuple[str, ...] = ()  # the user's own items its evidence names (natural titles)
    main_values: frozenset[str] | None = None  # its descriptive attribute's values (genres): what "not X" denies

    @property
    def denied_against(self) -> frozenset[str]:
        return self.values if self.main_values is None else self.main_values

    @classmethod
    def of(cls, index: LoadedIndex, item: Recommendation) -> ItemFacts:
        own = []
        for entry in item.evidence:
            item_id = entry.split(":", 1)[1] if entry.startswith("with:") else entry
            if item_id in index.entries:
                own.append(natural_title(index.entries[item_id].title))
        main = index.descriptive_attribute
        main_values = frozenset(_values_of({main: item.attributes.get(main)})) if main else None
        return cls(item.title, frozenset(_values_of(item.attributes)), item_year(item),
                   popularity_word(index, item.id), tuple(dict.fromkeys(own)), main_values)


@dataclass
class Claims:
    """The fact terms found in one sentence (for the frame and the checks)."""

    values: list[tuple[frozenset[str], bool]] = field(default_factory=list)  # (value keys, negated)
    years: list[int] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)  # "from 1990 to 1999", "from 1969 or earlier"
    decades: list[int] = field(default_factory=list)
    popularity: list[str] = field(default_factory=list)  # "popular", "known" or "niche"
    unsupported: list[str] = field(default_factory=list)
    content_words: int = 0  # fact terms and unsupported words: what is left once frames are taken out


class ClaimChecker:
    """The fact terms of one catalog (values it has, their plain words) and the check of a sentence."""

    def __init__(self, values: Iterable[str], min_value_length: int = 3) -> None:
        terms: dict[str, set[str]] = {}
        for value in values:
            k = _key(value)
            if len(k) >= min_value_length and k not in FRAME_WORDS and k not in NOUNS:
                terms.setdefault(k, set()).add(k)
                if not k.endswith("s"):
                    terms.setdefault(k + "s", set()).add(k)
        known = {k for keys in terms.values() for k in keys}
        for value, words in VALUE_WORDS.items():
            k = _key(value)
            if k in known:
                for word in words:
                    terms.setdefault(_key(word), set()).add(k)  # "funny": Comedy, or the tag itself
        self.terms = {phrase: frozenset(keys) for phrase, keys in terms.items()}
        self._longest = max((len(t.split()) for t in terms), default=1)

    @classmethod
    def for_index(cls, index: LoadedIndex, min_support: int = 3) -> ClaimChecker:
        """Every string attribute value at least `min_support` items carry."""
        counts: Counter[str] = Counter()
        for entry in index.entries.values():
            for value in entry.attributes.values():
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str) and v:
                        counts[v] += 1
        return cls([v for v, n in counts.items() if n >= min_support])

    def claims(self, text: str, noun_words: Sequence[str] = ()) -> Claims:
        """The fact terms of a text whose titles and labels are already taken out."""
        found = Claims()
        lowered = text.casefold()
        for m in _SPAN.finditer(lowered):
            lo, hi, earlier, on, before, after = m.groups()
            found.spans.append((int(lo), int(hi)) if lo else (0, int(earlier)) if earlier else
                               (int(on), 9999) if on else (0, int(before) - 1) if before else (int(after) + 1, 9999))
        lowered = _SPAN.sub(" ", lowered)
        for match in _YEAR.finditer(lowered):
            if match.group(0).endswith("s"):
                found.decades.append(int(match.group(1)) // 10 * 10)
            else:
                found.years.append(int(match.group(1)))
        lowered = _YEAR.sub(" ", lowered)
        for match in _DECADE.finditer(lowered):
            century = match.group(1)
            found.decades.append((int(century) * 100 if century else 1900) + int(match.group(2)) * 10)
        lowered = _DECADE.sub(" ", lowered)
        words = _WORD.findall(lowered)
        i = 0
        nouns = NOUNS | {w.casefold() for w in noun_words}
        run: list[int] = []  # values in a row ("Comedy, Drama or Romance": one claim, any of them)
        run_or = False
        last_value_end = -2
        while i < len(words):
            term = self.term_at(words, i)
            if term is not None:
                keys, n = term
                before = words[max(0, i - NEGATION_REACH):i]
                joined = i == last_value_end or (i == last_value_end + 1 and words[i - 1] in ("or", "and"))
                if not joined:
                    self._close(found, run, run_or)
                    run, run_or = [], False
                run_or = run_or or (joined and words[i - 1] == "or")
                run.append(len(found.values))
                found.values.append((keys, any(w in NEGATIONS for w in before)))
                found.content_words += 1
                i += n
                last_value_end = i
                continue
            word = words[i]
            if word in POPULAR:
                found.popularity.append("popular")
                found.content_words += 1
            elif word in WELL_KNOWN:
                found.popularity.append("known")
                found.content_words += 1
            elif word in NICHE:
                found.popularity.append("niche")
                found.content_words += 1
            elif word not in FRAME_WORDS and word not in nouns and word not in NEGATIONS and not word.isdigit():
                found.unsupported.append(word)
                found.content_words += 1
            i += 1
        self._close(found, run, run_or)
        return found

    def term_at(self, words: Sequence[str], i: int) -> tuple[frozenset[str], int] | None:
        """The longest fact term starting at word i: the value keys it stands for and its length in words."""
        for n in range(min(self._longest, len(words) - i), 0, -1):
            keys = self.terms.get(" ".join(words[i:i + n]))
            if keys is not None:
                return keys, n
        return None

    @staticmethod
    def _close(found: Claims, run: list[int], run_or: bool) -> None:
        """Values joined by "or" are one claim: the item has one of them (or, negated, none of them)."""
        if run_or and len(run) > 1:
            keys = frozenset().union(*(found.values[n][0] for n in run))
            negated = found.values[run[0]][1]
            for n in sorted(run, reverse=True):
                del found.values[n]
            found.values.append((keys, negated))

    def problem(self, text: str, facts: Sequence[ItemFacts], noun_words: Sequence[str] = ()) -> str | None:
        """Why a sentence about these items (titles and labels taken out of `text`) states something their
        evidence does not have, or None."""
        if not facts:
            return None
        found = self.claims(text, noun_words)
        for keys, negated in found.values:
            shown = sorted(keys)[0]
            if negated and any(keys & f.denied_against for f in facts):  # "no Drama": a genre, not a stray tag
                return f"says not {shown!r} of an item that is"
            if not negated and not all(keys & f.values for f in facts):
                return f"says {shown!r} of an item that is not"
        for year in found.years:
            if not any(f.year == year for f in facts):
                return f"gives the year {year}, not the item's"
        for low, high in found.spans:
            if not all(f.year is not None and low <= f.year <= high for f in facts):
                return f"puts the item outside {low}-{high}"
        for decade in found.decades:
            if not any(f.year is not None and decade <= f.year < decade + 10 for f in facts):
                return f"puts the item in the {decade}s"
        for kind in found.popularity:
            if not all(f.popularity in POPULARITY_OF[kind] for f in facts):
                return f"calls the item {kind} without the figures"
        if found.unsupported:
            return f"says {found.unsupported[0]!r}, which the evidence does not carry"
        return None


RELATION = re.compile(r"\b(?:fans? of|liked|loved|enjoyed|like|if you liked|who liked|as with|similar to)\s*"
                      r"\[([A-Za-z0-9]{1,3})\]", re.IGNORECASE)


def strip_titles(text: str, titles: Sequence[str]) -> str:
    """The text without these titles (natural and catalog forms, with and without the year)."""
    forms = set()
    for title in titles:
        for form in (title, natural_title(title), natural_title(title, year=False)):
            if len(form) >= 2:
                forms.add(form)
    for form in sorted(forms, key=len, reverse=True):
        text = re.sub(r"(?<![A-Za-z0-9])" + re.escape(form) + r"(?![A-Za-z0-9])", " ", text, flags=re.IGNORECASE)
    return text


def frame(text: str, titles: Sequence[str], checker: ClaimChecker) -> str:
    """The sentence frame: titles, labels, years and fact terms replaced by placeholders, frame words kept."""
    text = _LABEL.sub(" T ", strip_titles(text, titles))
    text = _YEAR.sub(" Y ", text.casefold())
    words = _WORD.findall(text)
    out: list[str] = []
    i = 0
    while i < len(words):
        term = checker.term_at(words, i)
        out.append("V" if term else words[i])
        i += term[1] if term else 1
    collapsed: list[str] = []
    for w in out:  # "V and V" is one slot
        if w == "V" and len(collapsed) >= 2 and collapsed[-1] in {"and", "or"} and collapsed[-2] == "V":
            collapsed.pop()
            continue
        collapsed.append(w)
    return " ".join(collapsed)


def content_free(text: str, titles: Sequence[str], checker: ClaimChecker, noun_words: Sequence[str] = (),
                 own_titles: Sequence[str] = ()) -> bool:
    """True when, titles and labels taken out, the sentence names no fact ("X is a good movie to try"); naming
    one of the user's own items (`own_titles`) is a fact."""
    if strip_titles(text, own_titles) != text:
        return False
    stripped = _LABEL.sub(" ", strip_titles(text, titles))
    found = checker.claims(stripped, noun_words)
    return found.content_words == 0 and not found.years and not found.decades
