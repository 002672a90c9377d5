"""Natural title order for what people read; the catalog's own form stays data."""

from __future__ import annotations

import pytest

from core.titles import natural_title


@pytest.mark.parametrize(("catalog", "shown"), [
    ("Matrix, The (1999)", "The Matrix (1999)"),
    ("Lord of the Rings: The Fellowship of the Ring, The (2001)",
     "The Lord of the Rings: The Fellowship of the Ring (2001)"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children (Cité des enfants perdus, La) (1995)"),
    ("Few Good Men, A (1992)", "A Few Good Men (1992)"),
    ("Toy Story (1995)", "Toy Story (1995)"),
    ("Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)",
     "Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)"),
    ("Theory, The", "The Theory"),
    ("Radiohead", "Radiohead"),
])
def test_natural_title(catalog: str, shown: str) -> None:
    assert natural_title(catalog) == shown


def test_without_the_year() -> None:
    assert natural_title("Matrix, The (1999)", year=False) == "The Matrix"
    assert natural_title("Heat (1995)", year=False) == "Heat"
