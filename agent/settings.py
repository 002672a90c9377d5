"""The one settings object. Precedence, lowest first: defaults, a TOML file, environment variables
(RECAGENT_..., nested with '__', e.g. RECAGENT_INDEX__CHROMA=server), then CLI flags (passed as
keyword arguments). Any unknown key, in any of these places, is an error.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.conversations import ConversationsConfig
from agent.llm.base import LLMConfig
from core.errors import SettingsError
from index.config import DataConfig, IndexConfig

ENV_PREFIX = "RECAGENT_"

# the base generators whose evidence the linear ranker weighs (agent.linear_ranker), what it reads of each
# one's list, what it reads of the item itself at the request's time (agent.linear_ranker.item_features), and so
# its feature names, in column order
LINEAR_GENERATORS = ("popularity", "item2item", "sequential", "collab", "text")
GENERATOR_EVIDENCE = ("score", "found", "rank")
ITEM_FEATURES = ("popularity.log", "time.recent30", "time.recent365", "time.before", "time.seen", "time.age",
                 "time.last", "year.released", "year.new", "year.age", "year.distance", "attribute.match",
                 "history.cooccurrence", "history.nearby")
# history.nearby: items at most NEARBY_WINDOW positions apart in a history count as one session; the history's
# weight per item back; the scale inside log(1 + scale x sum). Chosen in candidates20 validation cross-validation
# among windows 3-100, decays 0.8-1.0 and scales 1-1000.
NEARBY_WINDOW = 15
NEARBY_DECAY = 0.9
NEARBY_SCALE = 10.0
LINEAR_FEATURES = (*(f"{g}.{kind}" for g in LINEAR_GENERATORS for kind in GENERATOR_EVIDENCE), *ITEM_FEATURES)


class RetrievalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recent_items: int = Field(5, ge=1, description="recent items the item-to-item generator starts from")
    recency_decay: float = Field(0.9, gt=0, le=1, description="weight decay per step back in the history")
    sequence_groups: int = Field(3, ge=1, description="recent time groups the sequential generator uses")
    pool: int = Field(200, ge=10, description="candidates each generator contributes to fusion")
    rrf_k: float = Field(20.0, gt=0, description="reciprocal rank fusion constant")
    query_weight: float = Field(1.0, ge=0, description="the least weight of the text generator when a request "
                                                      "has free text")
    fusion_weights: dict[str, float] = Field(
        default_factory=lambda: {"collab": 1.0, "item2item": 0.0, "sequential": 1.0, "text": 0.3,
                                 "popularity": 0.1},
        description="weight of each generator in the fused ranking; defaults chosen by "
                    "'recagent tune' on ml-latest-small's validation split")
    linear_weights: dict[str, float] = Field(
        default_factory=dict,
        description="the linear ranker's weight of each feature (LINEAR_FEATURES, e.g. 'collab.score'); fitted "
                    "by 'recagent tune --protocol candidates20'; empty: the linear ranker is the fused one")

    @field_validator("linear_weights")
    @classmethod
    def _known_features(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(LINEAR_FEATURES))
        if unknown:
            raise ValueError(f"unknown linear features {', '.join(unknown)}; known: {', '.join(LINEAR_FEATURES)}")
        return weights


RERANK_PROMPTS = {"labels": "rerank_listwise", "likelihood": "rerank_sequence"}  # each method's own prompt


class RerankConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="the LLM reorders the retrieved candidates; false: the retriever's order "
                                            "(item cards without waiting for the LLM) and the LLM only writes replies")
    in_conversations: bool = Field(False, description="conversation turns call the reranker too; off by default: "
                                                      "its blend, chosen on validation, keeps the retriever's "
                                                      "order (loo test ndcg@10 0.0860 against 0.0859; dialogue "
                                                      "turns not measured), and it cost each turn 0.5-0.9 s")
    method: Literal["labels", "likelihood"] = Field(
        "labels", description="'labels': the candidates labelled A-T in one prompt, ordered by the label's "
                              "log-probability (LlamaRec); 'likelihood': each title scored as the continuation "
                              "of the user's history (the `train adapt` adapter)")
    candidates: int = Field(20, ge=2, le=20, description="retrieved candidates the LLM reranks")
    permutations: int = Field(1, ge=1, description="orders each list is shown in, averaged (position bias; labels)")
    history_window: int | None = Field(None, ge=1, description="most recent history titles in the prompt "
                                                              "(default: 10 for labels, 19 for likelihood)")
    batch_size: int = Field(16, ge=1, description="prompts per backend call (the server batches them)")
    prompt: str | None = Field(None, description="default: the method's (rerank_listwise, rerank_sequence)")
    prompt_version: int | None = Field(None, description="default: the adapter's own (its manifest), else the newest")
    adapter: str | None = Field(None, description="llm.adapters entry used for ranking (default: the method's, "
                                                  "'rerank' or 'adapt'); a name not among them: the base model")
    blend: float = Field(0.0, ge=0.0, description="weight of the retriever's rank prior added to the LLM's "
                                                   "scores (0: the LLM's order alone; default: the adapter's "
                                                   "manifest, chosen on validation)")

    @property
    def method_defaults(self) -> tuple[str, str, int]:
        """The prompt, adapter and history window this method uses unless they are set."""
        adapter, window = ("adapt", 19) if self.method == "likelihood" else ("rerank", 10)
        return (self.prompt or RERANK_PROMPTS[self.method], self.adapter or adapter, self.history_window or window)


class ReplyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = "reply"
    prompt_version: int | None = Field(None, description="default: the adapter's own (its manifest), else the newest")
    adapter: str | None = Field("reply", description="llm.adapters entry used for replies; absent: the base model")
    max_items: int = Field(5, ge=1, le=20, description="items the LLM writes about (the rest are listed as items)")
    max_tokens: int = Field(160, ge=16, le=1024)


class IntentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reader: Literal["rules", "llm"] = Field("rules", description="who reads each message into its Intent: the rules "
                                                                 "over the catalog, or the fine-tuned LLM (the "
                                                                 "rules where it fails); chosen by `eval --protocol "
                                                                 "intents` (README)")
    adapter: str | None = Field("intent", description="llm.adapters entry the LLM reader uses")
    max_tokens: int = Field(96, ge=16, le=512, description="the longest JSON draft the LLM reader may write")


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = Field(None, description="bearer token, required off loopback (RECAGENT_API_TOKEN)")
    max_pending_turns: int = Field(16, ge=1, description="turns admitted at once; more get 503 + Retry-After")
    turn_workers: int | None = Field(
        None, ge=1, description="threads that run turns (cheap routes have their own); default: 4 with the "
                                "in-process model (each turn computes), max_pending_turns with a served one "
                                "(vllm/openai: each turn mostly waits for the server, which batches them)")
    turn_wait_s: float = Field(30.0, gt=0, description="how long a message waits for its conversation's "
                                                        "previous turn before 409")
    turn_queue_s: float = Field(
        20.0, gt=0, description="how long an admitted turn waits for a free turn worker: one that waited longer "
                                "is answered from the retriever without the LLM (fallback_reason says so), so "
                                "a client that waits about a minute always gets an answer")
    conversations_per_minute: int | None = Field(
        300, ge=1, description="new conversations one client may start a minute, as a burst or spread out "
                               "(a client: the bearer token when one is set, else the client address); more "
                               "get 429 with Retry-After, so nobody can evict everyone else's conversations. "
                               "None: no limit (a gateway in front limits instead)")
    sse_ping_s: float = Field(15.0, gt=0, description="an idle event stream gets a keep-alive comment this "
                                                       "often, so proxies keep it open while a turn waits")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    shutdown_grace_s: float = Field(10.0, ge=0, description="how long SIGTERM waits for turns in progress")

    compute_threads: int | None = Field(
        None, ge=1, description="torch threads in `recagent serve`/`mcp`; default: 1 with a served model or none "
                                "(the process only encodes short queries, many turns at once, beside the model "
                                "server), torch's own default with the in-process model")

    def torch_threads(self, in_process_llm: bool) -> int | None:
        """The torch thread count a server process sets (None: leave torch's default)."""
        if self.compute_threads is not None:
            return self.compute_threads
        return None if in_process_llm else 1

    def turn_threads(self, served_llm: bool) -> int:
        if self.turn_workers is not None:
            return self.turn_workers
        return self.max_pending_turns if served_llm else 4


class Settings(BaseSettings):
    """All settings. Built only by `load_settings`, which applies the documented precedence."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    data: DataConfig = DataConfig()
    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    llm: LLMConfig = LLMConfig()
    rerank: RerankConfig = RerankConfig()
    reply: ReplyConfig = ReplyConfig()
    intent: IntentConfig = IntentConfig()
    api: ApiConfig = ApiConfig()
    conversations: ConversationsConfig = ConversationsConfig()
    runs_dir: Path = Field(Path("runs"), description="where evaluation runs are saved")
    tuned_dir: Path = Field(Path("var/tuned"), description="settings `recagent tune` chose, one file per dataset; "
                                                           "used unless set explicitly (agent/tuned.py); a family "
                                                           "of values tuned here replaces the shipped one")
    shipped_tuned_dir: Path | None = Field(None, description="the tuned settings that ship with recagent, one file "
                                                             "per dataset with the command and data hash that made "
                                                             "it; default models/tuned in the repository")
    prompt_dir: Path | None = Field(None, description="a folder of extra prompt files (NAME.vN.yaml), searched "
                                                      "before prompts/ (prompt variants under evaluation)")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings reads the environment itself (to reject unknown names and to put flags above
        # it), so the model takes its values from keyword arguments only.
        return (init_settings,)


# Short aliases for the settings people set most, and for secrets kept out of argv.
_ENV_ALIASES = {"DATA_DIR": "data.data_dir", "DATASET": "data.dataset", "API_TOKEN": "api.token",
                "MODEL_CACHE": "llm.model_cache"}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    cursor = node
    parts = dotted.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return node


def _env_layer(environ: dict[str, str]) -> dict[str, Any]:
    """RECAGENT_* variables as nested values; a name that is no setting is an error."""
    layer: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        dotted = _ENV_ALIASES.get(key) or ".".join(key.lower().split("__"))
        model: Any = Settings
        for part in dotted.split("."):
            fields = getattr(model, "model_fields", None)
            if fields is None or part not in fields:
                raise SettingsError(f"environment variable {name}: no setting named {dotted}")
            model = fields[part].annotation
        value: Any = raw
        if raw.strip().startswith(("{", "[")):  # dict and list settings are given as JSON
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"environment variable {name}: invalid JSON: {exc}") from None
        layer = _deep_merge(layer, _nest(dotted, value))
    return layer


def load_settings(config_file: Path | None = None, environ: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build the settings: defaults < TOML file < RECAGENT_* environment < overrides (CLI flags).

    `overrides` use dotted paths as keys, e.g. {"index.chroma": "server"}; None values are ignored.
    """
    layers: dict[str, Any] = {}
    if config_file is not None:
        try:
            layers = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{config_file}: settings file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_file}: invalid TOML: {exc}") from None
    layers = _deep_merge(layers, _env_layer(dict(os.environ if environ is None else environ)))
    for dotted, value in overrides.items():
        if value is not None:
            layers = _deep_merge(layers, _nest(dotted, value))
    try:
        return Settings(**layers)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file)) from None


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = "no such setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{where}: {message}")
    source = f" (settings file {config_file}, environment or flags)" if config_file else ""
    return "invalid settings" + source + ": " + "; ".join(lines)
