"""The text of an item that gets embedded: title, then attributes, then description."""

from __future__ import annotations

import hashlib
import json

from index.dataset import Item


def item_text(item: Item) -> str:
    parts = [item.title]
    for key, value in item.attributes.items():
        if isinstance(value, list):
            if value:
                parts.append(f"{key}: {', '.join(value)}")
        else:
            parts.append(f"{key}: {value}")
    if item.description:
        parts.append(item.description)
    return ". ".join(parts)


def content_hash(text: str, model_name: str) -> str:
    """Changes when the text or the embedding model changes; equal hashes mean no re-embedding."""
    return hashlib.sha256(json.dumps([model_name, text]).encode()).hexdigest()[:20]
