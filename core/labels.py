"""The labels that stand for items in LLM prompts: one alphabet for reranking and replies alike.

Each label is one token for the default tokenizer, so a single forward pass scores every candidate.
"""

from __future__ import annotations

import string

LABELS: tuple[str, ...] = tuple(string.ascii_uppercase[:20])  # A-T: LlamaRec's 20 candidates
MAX_LABELLED = len(LABELS)
