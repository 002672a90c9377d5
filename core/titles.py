"""Titles as people write them: catalogs keep their own form as data ("Matrix, The (1999)"), and everything a
person reads (replies, reasons, cards) shows the natural order ("The Matrix (1999)")."""

from __future__ import annotations

import re

# An article that a catalog moved to the end of the main title, before any parenthesised parts (an alternate
# title, the year): "City of Lost Children, The (Cité des enfants perdus, La) (1995)".
_MOVED_ARTICLE = re.compile(r"^(?P<main>.+?), (?P<article>The|A|An|Les|La|Le|Il|Das|Der|Die|El|Los|Las)"
                            r"(?P<rest>(?: \([^()]*\))*)$")
_YEAR = re.compile(r"\s*\((?:\d{4})\)\s*$")


def natural_title(title: str, year: bool = True) -> str:
    """'Matrix, The (1999)' -> 'The Matrix (1999)' ('The Matrix' with year=False); other titles as they are."""
    match = _MOVED_ARTICLE.match(title.strip())
    text = f"{match['article']} {match['main']}{match['rest']}" if match else title.strip()
    return text if year else _YEAR.sub("", text).strip()
