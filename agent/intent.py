"""What one message says, as a typed Intent, and the readers that produce it.

An Intent holds the items the user liked, disliked, has seen or refers to ("like Heat", "more like the second
one"), constraints on the catalog's own attribute values with their logic (all of, any of, none of), a year
range, whether the message corrects earlier constraints, and the residual text to search by meaning (the
message without the words that became constraints, titles or negations). A reader (`IntentReader`) turns a
message and its conversation into an Intent; `RulesReader` does it with the catalog's vocabulary
(agent.understanding) and its titles. The conversation state changes only through `apply_intent`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.catalog import CatalogEntry
from agent.conversations import ConversationState
from agent.understanding import (
    CLAUSE_END,
    NEGATION,
    NOT_A_NEGATION,
    CatalogVocabulary,
    Constraint,
    TitleResolver,
    key,
    title_key,
)

MAX_READ_CHARS = 2000  # of a message, read; the rest is ignored (and the Intent says so)


class Intent(BaseModel):
    """What one message asks for, in the catalog's own terms (item ids, attribute values, years)."""

    model_config = ConfigDict(extra="forbid")

    liked: list[str] = Field(default_factory=list, description="item ids the user says they liked")
    disliked: list[str] = Field(default_factory=list, description="item ids the user says they disliked")
    seen: list[str] = Field(default_factory=list, description="item ids the user has seen")
    references: list[str] = Field(default_factory=list, description="item ids to find more like ('like X')")
    all_of: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values every item has")
    any_of: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values of which one")
    none_of: dict[str, list[str]] = Field(default_factory=dict, description="attribute -> values no item has")
    year_min: int | None = None
    year_max: int | None = None
    correction: bool = Field(False, description="replaces earlier constraints on the attributes it names")
    residual: str = Field("", description="the text to search by meaning ('' for none)")
    dropped: list[str] = Field(default_factory=list, description="what was read but is not in the catalog")
    reader: str = "rules"
    fallback_reason: str | None = Field(None, description="why the configured reader's reading was not used")


@dataclass(frozen=True)
class ReadContext:
    """What a reader may know of the conversation: its state so far (None for a first message)."""

    state: ConversationState | None = None
    shown_before: tuple[str, ...] = ()  # the items shown last, where there is no state (training prompts)

    @property
    def shown(self) -> list[str]:
        """The items of the latest assistant turn, in their order ("the second one")."""
        if self.state is None:
            return list(self.shown_before)
        for turn in reversed(self.state.turns if self.state is not None else []):
            if turn.role == "assistant":
                return list(turn.items)
        return []


class IntentReader(Protocol):
    name: str  # "rules" or "llm": what describe() and the responses say read the message

    def read(self, message: str, context: ReadContext) -> Intent:
        """The Intent of one message in its conversation; always valid and inside the catalog."""
        ...


_END = (r"(?=[.!?;]|$|\s+(?:but|so|because|though|and then|what|any|can|could|please|give|now)\b|"
        r",?\s+(?:i\s+)?(?:hated|loved|liked|disliked|enjoyed|seen|watched|couldn'?t stand|can'?t stand)\b)")
_LIKED = re.compile(r"\b(?:i (?:really |absolutely |truly |also |just |totally )?(?:loved|liked|enjoyed|adored|love|"
                    r"like|enjoy|adore)|loved|liked|enjoyed|big fan of|huge fan of|i'?m a fan of|favou?rite (?:is|was))"
                    rf"\s+(.+?){_END}", re.IGNORECASE)
_DISLIKED = re.compile(r"\b(?:i (?:really |absolutely |just |totally )?(?:hated|disliked|didn'?t like|did not like|"
                       r"hate|didn'?t enjoy)|hated|disliked|not a fan of|can'?t stand|couldn'?t stand|"
                       r"not (?:really |that |very |much )?interested in|not (?:really |that |very |much )?into)"
                       rf"\s+(.+?){_END}", re.IGNORECASE)
_SEEN = re.compile(r"\b(?:i(?:'ve| have)? (?:already |also )?(?:seen|watched)|already (?:seen|watched)|seen)"
                   rf"\s+(.+?){_END}", re.IGNORECASE)
_REFERENCE = re.compile(r"\b(?:like|similar to|such as|along the lines of|in the vein of|reminds? me of|"
                        r"in the style of|more of)\s+(.+?)(?=[.!?;,]|$|\s+(?:but|and|or|with|from|that|please|"
                        r"only|except|without)\b)", re.IGNORECASE)
_NOT_A_REFERENCE = re.compile(r"(?:\bi|'d|\bwould|\bdon'?t|\bdidn'?t|\bdo not|\bdid not|\byou|\bwe|\bthey|"
                              r"\bstuff i|\bwhat i|\bfeel|\blook|\blooks|\bsounds?)\s*$", re.IGNORECASE)
_LIST_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+|\s+or\s+|\s*&\s*", re.IGNORECASE)
_LIST_SPLIT_WORDS = re.compile(r",\s*(?:and\s+)?|\s+and\s+|\s+or\s+", re.IGNORECASE)  # "Tango & Cash" stays whole
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)$")
_DATED_PREFIX = re.compile(r"^(.+?\(\d{4}\))\s+\S")
_NOT_SEEN = re.compile(r"(?:\bnever|\bnot|n'?t|n;t|\byet to|\byou|\byou ever|\bu|\bif)\s*$", re.IGNORECASE)
_YEAR_AFTER = re.compile(r"\s*\((\d{4})\)")
# What a message says of a title right after naming it ("X was really good", "X is one of my favorites", "X, loved
# it"); a negation among the words in between turns a liked word around ("X was not good").
_GOOD = (r"good|great|awesome|amazing|excellent|fantastic|funny|hilarious|brilliant|wonderful|perfect|delightful|"
         r"enjoyable|entertaining|incredible|cute|sweet|(?:even |much |so much )?better|"
         r"(?:a |such a |an all[- ]time )?classic|the best|"
         r"(?:one of )?my (?:all[- ]time )?favou?rites?|(?:a )?favou?rite|(?:a )?fave|fun")
_BAD = (r"bad|terrible|awful|horrible|boring|the worst|stupid|dumb|disappointing|overrated|too silly|too scary|"
        r"too slow|too long|too violent|too much|meh|lame|not (?:good|great|that good|very good|for me)")
_VERDICT_AFTER = re.compile(r"\s*(?:\(\d{4}\))?\s*[,!.]?\s*(?:"
                            r"(?:(?:and\s+|but\s+)?(?:it|that|which|this one|that one)\s+)?"
                            r"(?:is|was|were|are|'s|has been|will always be|remains|"
                            rf"looks|sounds|seems)\s+((?:[\w']+\s+){{0,4}}?)({_GOOD}|{_BAD})\b|"
                            r"(?:,|and|i)\s+(?:i\s+)?(?:really\s+)?(loved|liked|enjoyed|love|hated|disliked)\s+(?:it|that|those|them)\b)",
                            re.IGNORECASE)
_BAD_WORDS = re.compile(rf"^(?:{_BAD})$|^hated$|^disliked$", re.IGNORECASE)
_NOT_LIKING = re.compile(r"\b(?:not|nothing|no|never|anything but)\b[^.,;!?]{0,28}$", re.IGNORECASE)
_VERDICT_NEGATION = re.compile(r"\b(?:not|never|n't|isn't|wasn't|aren't|weren't|hardly)\b", re.IGNORECASE)
_TRAILING = re.compile(r"\s+(?:already|before|too|twice|a lot|so much|very much|as well|last night|yesterday|"
                       r"recently|again)$", re.IGNORECASE)
_ORDINALS = {"first": 0, "1st": 0, "top": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
             "fifth": 4, "5th": 4, "last": -1}
ORDINAL = re.compile(r"\b(?:the\s+)?(first|1st|top|second|2nd|third|3rd|fourth|4th|fifth|5th|last)\s+"
                     r"(?:one|movie|film|pick|suggestion|recommendation|item|artist|band|song|track|product|title)s?\b"
                     r"|(?:\bnumber|\bno\.|#)\s*([1-5])\b", re.IGNORECASE)
CORRECTION = re.compile(r"\b(?:actually|instead|on second thought|scratch that|change (?:that|it)|make it|"
                        r"rather|no wait|wait no|i changed my mind|changed my mind|forget (?:that|the|about))\b",
                        re.IGNORECASE)
_OR = re.compile(r"^\W*(?:\w+\W+){0,2}?or\b(?:\W+\w+){0,2}\W*$", re.IGNORECASE)
_FILLER_TEXT = """
    hi hello hey thanks thank ok okay yes yeah yep sure im i'm i've ive i'd id i'll mood feel feeling looking
    recommend recommendations suggestion suggestions suggest idea ideas something anything everything stuff
    watch watching listen listening tonight evening night weekend today now please pls plz lol haha hmm um
    movie movies film films flick flicks song songs track tracks album albums artist artists band bands
    product products item items show shows one ones kind sort type genre genres prefer preferably ideally
    maybe perhaps really actually quite pretty bit little lot also too either neither even still yet well
    great good nice cool awesome fun love like liked loved enjoy enjoyed want wanna gonna need give let know
    think guess made make released come came out year years recent newer older new old era time times
"""
_FILLER = frozenset(_FILLER_TEXT.split())  # words that alone give the text search nothing to go by


def _not_seen(text: str, match: re.Match[str]) -> bool:
    """A "seen" cue that says the opposite or asks: "I haven't seen X", "I've never watched X", "have you seen X?"."""
    cue = text[match.start():match.start(1)].lower()
    before = text[max(0, match.start() - 10):match.start()] + cue.split("seen")[0].split("watched")[0]
    return bool(_NOT_SEEN.search(before))


def _inside_longer(text: str, span: str, others: Iterable[str]) -> bool:
    """Whether every place the span is written lies inside a longer title written there."""
    wider = [m.span() for o in others if len(o) > len(span) for m in re.finditer(re.escape(o), text, re.IGNORECASE)]
    places = [m.span() for m in re.finditer(re.escape(span), text, re.IGNORECASE)]
    return bool(places) and all(any(a <= s and e <= b for a, b in wider) for s, e in places)


def _spans_overlap(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(start < b and a < end for a, b in spans)


class RulesReader:
    """Reads a message with rules over the catalog: its titles (TitleResolver), its attribute values and years
    (CatalogVocabulary), negation cues and their clauses, mood words, ordinals over the shown items."""

    name = "rules"

    def __init__(self, vocabulary: CatalogVocabulary, resolver: TitleResolver,
                 entries: Mapping[str, CatalogEntry]) -> None:
        self.vocabulary = vocabulary
        self.resolver = resolver
        self.entries = entries
        self._by_title_year: dict[tuple[str, int], str] | None = None
        self._by_title: dict[str, str] | None = None

    def _exact(self, phrase: str) -> str | None:
        """The item whose title is exactly the phrase (any case): "The Firm" is the catalog's "The Firm" rather
        than its "The Firm (1993)" when it holds both."""
        if self._by_title is None:
            self._by_title = {}
            for item_id, entry in self.entries.items():
                self._by_title.setdefault(entry.title.strip().lower(), item_id)
        return self._by_title.get(phrase.strip().lower())

    def _with_year(self, title: str, year: int) -> str | None:
        """The catalog item of that title and year ("Groundhog Day (1993)" when the catalog also holds a
        "Groundhog Day" of another id): a year written after a title decides between same-titled items."""
        if self._by_title_year is None:
            index: dict[tuple[str, int], str] = {}
            for item_id, entry in self.entries.items():
                written = _TITLE_YEAR.match(entry.title.strip())
                year_of = int(written.group(2)) if written else self._year(item_id)
                if year_of is not None:
                    index.setdefault((title_key(entry.title), year_of), item_id)
            self._by_title_year = index
        k = title_key(title)
        return self._by_title_year.get((k, year)) or (self._by_title_year.get((k[4:], year))
                                                      if k.startswith("the ") else None)

    def read(self, message: str, context: ReadContext) -> Intent:
        dropped: list[str] = []
        text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", message)
        if len(text) > MAX_READ_CHARS:
            dropped.append(f"text past {MAX_READ_CHARS} characters")
            text = text[:MAX_READ_CHARS]
        shown = context.shown
        cut: list[tuple[int, int]] = []  # spans left out of the residual
        claimed: list[tuple[int, int]] = []  # spans whose items are read
        titles: list[str] = []  # title words as written, masked for constraints and years
        buckets: dict[str, list[str]] = {"liked": [], "disliked": [], "seen": [], "references": []}
        named: list[tuple[str, str]] = []  # (item, the words that name it) for every title read
        asked_like: list[str] = []  # titles asked more of ("something like X")

        def resolve(phrase: str, embed: bool = True) -> str | None:
            ordinal = ORDINAL.fullmatch(phrase.strip())
            if ordinal is not None:
                return self._ordinal(ordinal, shown)
            dated = _TITLE_YEAR.match(phrase.strip())
            if dated is not None:
                exact = self._with_year(dated.group(1), int(dated.group(2)))
                if exact is not None:
                    return exact
            elif (exact := self._exact(phrase)) is not None:
                return exact
            return self.resolver.resolve(phrase, embed=embed and phrase[:1].isupper() and len(phrase) >= 4)

        for bucket, pattern in (("disliked", _DISLIKED), ("seen", _SEEN), ("liked", _LIKED),
                                ("references", _REFERENCE)):
            for match in pattern.finditer(text):
                if _spans_overlap(match.start(1), match.start(1) + 1, claimed):
                    continue
                if bucket == "references" and _NOT_A_REFERENCE.search(text[:match.start()]):
                    continue
                if bucket == "seen" and _not_seen(text, match):
                    continue
                found = self._phrases(match.group(1), resolve)
                if not found:
                    continue
                for item, phrase in found:
                    if not any(item in b for b in buckets.values()):
                        buckets[bucket].append(item)
                    titles.append(phrase)
                    named.append((item, phrase))
                    negated = _NOT_LIKING.search(text[max(0, match.start() - 40):match.start()])
                    if bucket == "references" and ORDINAL.fullmatch(phrase.strip()) is None and not negated:
                        asked_like.append(item)
                for phrase in self._unknown_titles(match.group(1)):
                    if phrase not in {p for _, p in found}:
                        titles.append(phrase)
                        dropped.append(f"title:{phrase}")
                cut.append((match.start(), match.start(1)))  # the cue; the titles are cut below
                claimed.append(match.span())
        for match in ORDINAL.finditer(text):  # "the second one sounds good": a reference
            if not _spans_overlap(match.start(), match.end(), claimed):
                pointed = self._ordinal(match, shown)
                if pointed is not None and not any(pointed in b for b in buckets.values()):
                    buckets["references"].append(pointed)
                cut.append((match.start(), match.end()))
        mentioned = self.resolver.mentioned(text)
        for item, span in mentioned:
            if _inside_longer(text, span, [p for _, p in mentioned] + [p for _, p in named]):
                continue  # "Heat" in "The Heat (2013)", "Rush" in "Rush Hour"
            titles.append(span)
            after = re.search(re.escape(span) + _YEAR_AFTER.pattern, text, re.IGNORECASE)
            item = (self._with_year(span, int(after.group(1))) if after else self._exact(span)) or item
            if not any(item in b for b in buckets.values()):
                buckets["references"].append(item)
            named.append((item, span))
        self._verdicts(text, named, asked_like, buckets)
        for span in titles:
            for found_span in re.finditer(re.escape(span) + r"(?:\s*\(\d{4}\))?", text, re.IGNORECASE):
                cut.append(found_span.span())

        constraints = self.vocabulary.constraints(text, titles)
        all_of, any_of, none_of = self._logic(text, constraints)
        cut += [(c.start, c.end) for c in constraints]
        dropped += [f"mood:{word}" for word in self.vocabulary.unknown_moods(text)]
        years = self.vocabulary.year_range(text, titles)
        cut += list(years.spans)
        year_min, year_max = years.low, years.high
        if years.relative is not None:
            year_min, year_max = self._relative(years.relative, buckets["references"] + buckets["liked"], shown,
                                                year_min, year_max, dropped)
        cut += [m.span() for m in CORRECTION.finditer(text)]
        cut += self._negated_clauses(text)
        return Intent(liked=buckets["liked"], disliked=buckets["disliked"], seen=buckets["seen"],
                      references=buckets["references"], all_of=all_of, any_of=any_of, none_of=none_of,
                      year_min=year_min, year_max=year_max, correction=bool(CORRECTION.search(text)),
                      residual=self._residual(text, cut), dropped=dropped, reader=self.name)

    def _verdicts(self, text: str, named: list[tuple[str, str]], asked_like: list[str],
                  buckets: dict[str, list[str]]) -> None:
        """What the message says of each titled item: a verdict right after its title ("X was great", "X, loved
        it") makes it liked or disliked; a title asked more of ("something like X") is liked too. Ordinal
        references ("more like the second one") stay references only."""
        for item, phrase in named:
            verdict = None
            for found in re.finditer(re.escape(phrase), text, re.IGNORECASE):
                after = _VERDICT_AFTER.match(text, found.end())
                if after is None:
                    continue
                between, word, feeling = after.group(1) or "", after.group(2), after.group(3)
                bad = bool(_BAD_WORDS.match(feeling or word or ""))
                if _VERDICT_NEGATION.search(between) and word and not _BAD_WORDS.match(word):
                    bad = True
                verdict = "disliked" if bad else "liked"
            if verdict == "disliked" and item not in buckets["disliked"]:
                for bucket in ("liked", "references"):
                    if item in buckets[bucket]:
                        buckets[bucket].remove(item)
                buckets["disliked"].append(item)
            elif verdict == "liked" and item not in buckets["disliked"] and item not in buckets["liked"]:
                buckets["liked"].append(item)
        for item in asked_like:  # titles as written; an ordinal is not among them
            if item in buckets["references"] and item not in buckets["liked"]:
                buckets["liked"].append(item)

    def _phrases(self, words: str, resolve: Callable[[str, bool], str | None]) -> list[tuple[str, str]]:
        """(item, phrase) for the words as one title (exact or fuzzy), else for each list member ("X, Y and Z")
        that names an item (by the embedding too, when written with a capital)."""
        phrase = _TRAILING.sub("", words.strip())
        whole = resolve(phrase, False)
        if whole is not None:
            return [(whole, phrase)]
        out: list[tuple[str, str]] = []
        for piece in _LIST_SPLIT_WORDS.split(words):
            piece = _TRAILING.sub("", piece.strip(" ,"))
            item = resolve(piece, False) if piece else None
            dated = _DATED_PREFIX.match(piece) if item is None else None
            if dated is not None and (item := resolve(dated.group(1), False)) is not None:
                piece = dated.group(1)  # "Hairspray (2007) Do you have anything similar": the title its year ends
            members = [(item, piece)] if item is not None else [
                (found, phrase) for phrase in (_TRAILING.sub("", p.strip(" ,")) for p in _LIST_SPLIT.split(piece))
                if phrase and (found := resolve(phrase, True)) is not None]
            out += members
        return out

    def _unknown_titles(self, words: str) -> list[str]:
        """List members written like a title (capitalised words) that name no item: masked, and reported."""
        pieces = [_TRAILING.sub("", p.strip(" ,")) for p in _LIST_SPLIT.split(words)]
        return [p for p in pieces if p and p[0].isupper() and p.split()[0].lower() not in ("i", "it", "that")
                and all(w[:1].isupper() or w.lower() in ("of", "the", "a", "and", "in", "on") for w in p.split())
                and ORDINAL.fullmatch(p) is None]

    def _ordinal(self, match: re.Match[str], shown: list[str]) -> str | None:
        word, digit = match.group(1), match.group(2)
        position = int(digit) - 1 if digit else _ORDINALS[word.lower()]
        return shown[position] if shown and -len(shown) <= position < len(shown) else None

    def _logic(self, text: str, constraints: list[Constraint]
               ) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
        """Wanted values joined by "or" (same attribute, a few words apart) are any-of; the others all-of."""
        all_of: dict[str, list[str]] = {}
        any_of: dict[str, list[str]] = {}
        none_of: dict[str, list[str]] = {}
        negative = {(c.attribute, c.value) for c in constraints if c.negated}
        for c in constraints:
            if c.negated:
                none_of.setdefault(c.attribute, []).append(c.value)
        wanted = sorted((c for c in constraints if not c.negated and (c.attribute, c.value) not in negative),
                        key=lambda c: c.start)
        groups: list[list[Constraint]] = []
        for c in wanted:
            last = groups[-1][-1] if groups else None
            if last is not None and last.attribute == c.attribute and _OR.match(text[last.end:c.start]):
                groups[-1].append(c)
            else:
                groups.append([c])
        for group in groups:
            target = any_of if len(group) > 1 else all_of
            values = target.setdefault(group[0].attribute, [])
            values += [c.value for c in group if c.value not in values]
        for attribute, values in any_of.items():  # a value both required and an alternative is required
            any_of[attribute] = [v for v in values if v not in all_of.get(attribute, [])]
        return all_of, {a: v for a, v in any_of.items() if len(v) > 1}, none_of

    def _year(self, item: str) -> int | None:
        entry = self.entries.get(item)
        value = entry.attributes.get(self.vocabulary.year_attribute or "") if entry is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _relative(self, relative: str, references: list[str], shown: list[str], low: int | None,
                  high: int | None, dropped: list[str]) -> tuple[int | None, int | None]:
        """"More recent" than the reference items of this message, else than every item shown last; "older"
        likewise."""
        years = [y for y in (self._year(i) for i in references) if y is not None] or \
            [y for y in (self._year(i) for i in shown) if y is not None]
        if not years:
            dropped.append(f"{relative}: nothing to compare with")
            return low, high
        if relative == "newer":
            return max(years) + 1, high
        return low, min(years) - 1

    def _negated_clauses(self, text: str) -> list[tuple[int, int]]:
        """Each negation cue and the rest of its clause: never searched by meaning."""
        spans = []
        for cue in NEGATION.finditer(text):
            if NOT_A_NEGATION.match(text, cue.start()):
                continue
            end = CLAUSE_END.search(text, cue.end())
            spans.append((cue.start(), end.start() if end is not None else len(text)))
        return spans

    def _residual(self, text: str, cut: list[tuple[int, int]]) -> str:
        keep = [True] * len(text)
        for start, end in cut:
            keep[start:end] = [False] * (end - start)
        rest = "".join(ch if kept else " " for ch, kept in zip(text, keep, strict=True))
        rest = re.sub(r"\s+([,.;!?])", r"\1", re.sub(r"\s+", " ", rest)).strip(" ,.;:!?-")

        def filler(word: str) -> bool:
            w = word.lower().strip(",.;:!?-\"'()")
            return not key(w) or self.vocabulary.is_stop(key(w)) or bool({w, w.replace("'", ""), key(w)} & _FILLER)

        words = rest.split()
        while words and filler(words[0]):  # "I'm in the mood for a slow, thoughtful film" -> "slow, thoughtful"
            words.pop(0)
        while words and filler(words[-1]):
            words.pop()
        return " ".join(words).strip(" ,.;:!?-")


def _add(values: dict[str, list[str]], attribute: str, value: str) -> None:
    bucket = values.setdefault(attribute, [])
    if value not in bucket:
        bucket.append(value)


def _remove(values: dict[str, list[str]], attribute: str, value: str) -> None:
    if value in values.get(attribute, []):
        values[attribute].remove(value)
        if not values[attribute]:
            del values[attribute]


def apply_intent(state: ConversationState, intent: Intent) -> None:
    """The state after this Intent: items join their lists (a dislike undoes a like and the reverse); wanted
    values join `include` (all of) or replace `include_any` (one of), ruled-out ones join `exclude`, each
    leaving the opposite list; a correction first clears the attributes it names; years replace years."""
    for item in intent.liked:
        if item not in state.liked:
            state.liked.append(item)
        if item in state.disliked:
            state.disliked.remove(item)
    for item in intent.disliked:
        if item not in state.disliked:
            state.disliked.append(item)
        for bucket in (state.liked, state.mentioned):
            if item in bucket:
                bucket.remove(item)
    for item in intent.seen:
        if item not in state.seen:
            state.seen.append(item)
    for item in intent.references:
        if item not in state.mentioned and item not in state.disliked:
            state.mentioned.append(item)
    if intent.correction:
        for attribute in {*intent.all_of, *intent.any_of, *intent.none_of}:
            for values in (state.include, state.include_any, state.exclude):
                values.pop(attribute, None)
    for attribute, wanted in intent.all_of.items():
        for value in wanted:
            _add(state.include, attribute, value)
            _remove(state.exclude, attribute, value)
    for attribute, wanted in intent.any_of.items():
        state.include_any[attribute] = list(wanted)
        for value in wanted:
            _remove(state.exclude, attribute, value)
            _remove(state.include, attribute, value)
    for attribute, unwanted in intent.none_of.items():
        for value in unwanted:
            _add(state.exclude, attribute, value)
            _remove(state.include, attribute, value)
            _remove(state.include_any, attribute, value)
    if intent.year_min is not None:
        state.year_min = intent.year_min
        if state.year_max is not None and state.year_max < intent.year_min and intent.year_max is None:
            state.year_max = None
    if intent.year_max is not None:
        state.year_max = intent.year_max
        if state.year_min is not None and state.year_min > intent.year_max and intent.year_min is None:
            state.year_min = None
    state.query = intent.residual or None
