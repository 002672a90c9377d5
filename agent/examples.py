"""Example requests for an empty conversation, made from the catalog's own vocabulary.

The most common constraint values (genres on MovieLens, tags on Last.fm, a category or brand in a shop), the
decade most items come from when the catalog has years, and its most popular item: so the examples fit
whatever catalog is loaded, and the rules reader reads each of them as what it says.
"""

from __future__ import annotations

from collections import Counter

from agent.catalog import LoadedIndex
from agent.understanding import CatalogVocabulary
from core.titles import natural_title


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _decade(year: int) -> str:
    """1994 -> 'the 90s', 2003 -> 'the 2000s'."""
    start = year - year % 10
    return f"the {start % 100:02d}s" if 1900 <= start < 2000 else f"the {start}s"


def common_values(vocabulary: CatalogVocabulary, limit: int = 6) -> list[tuple[str, str]]:
    """The constraint values most items carry, as (attribute, value), most common first; values whose
    names are not plain words ('(no genres listed)') are left out."""
    ranked = sorted(vocabulary.support.items(), key=lambda pair: (-pair[1], pair[0]))
    return [(a, v) for (a, v), _ in ranked if v[:1].isalnum()][:limit]


def common_decade(index: LoadedIndex, attribute: str) -> int | None:
    """The first year of the decade that most items of the catalog come from."""
    decades: Counter[int] = Counter()
    for entry in index.entries.values():
        year = entry.attributes.get(attribute)
        if isinstance(year, (int, float)) and not isinstance(year, bool):
            decades[int(year) - int(year) % 10] += 1
    return decades.most_common(1)[0][0] if decades else None


def popular_title(index: LoadedIndex) -> str | None:
    """The most popular item's title in its natural order ('The Matrix (1999)')."""
    for position in index.popularity_order[:1]:
        entry = index.entries.get(index.ids[int(position)])
        if entry is not None:
            return natural_title(entry.title)
    return None


def example_requests(vocabulary: CatalogVocabulary, index: LoadedIndex, n: int = 4) -> list[str]:
    """Up to n requests a person could send first: values with a decade and an exclusion, a popular title
    to find more like, values alone. Nothing in them is specific to one kind of catalog."""
    noun = vocabulary.noun
    values = [v for _, v in common_values(vocabulary)]
    decade = common_decade(index, vocabulary.year_attribute) if vocabulary.year_attribute else None
    examples: list[str] = []
    if len(values) >= 3:
        first, ruled_out = values[1], values[2]
        when = f" from {_decade(decade)}" if decade is not None else ""
        examples.append(f"{_article(first)} {first} {noun}{when}, nothing {ruled_out}")
    title = popular_title(index)
    if title:
        examples.append(f"something like {title}")
    if len(values) >= 4:
        wanted = values[3]
        after = f" after {vocabulary.latest_year - 10}" if vocabulary.latest_year is not None else ""
        examples.append(f"{_article(wanted)} {wanted} {noun}{after}")
    if len(values) >= 5:
        examples.append(f"something {values[0]} or {values[4]}")
    elif values:
        examples.append(f"{_article(values[0])} {values[0]} {noun}")
    return list(dict.fromkeys(examples))[:n]
