"""The composition root: the one place that opens the index store, makes the embedder and the LLM,
loads the prompts and builds the reranker, the reply writer, the turn pipeline and the conversation
agent. The CLI, the HTTP API, the chat, the evaluation harness, the benchmarks and the tests all get
their agent from `build_agent`; nothing else assembles these parts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.catalog import LoadedIndex
from agent.conversations import ConversationStore, open_conversation_store
from agent.dialogue import ConversationAgent
from agent.intent import IntentReader, RulesReader
from agent.llm.backends import make_llm
from agent.llm.base import LLM
from agent.recommender import Recommender
from agent.rerank import LikelihoodReranker, LLMReranker, Reranker
from agent.respond import ReplyWriter
from agent.settings import Settings
from agent.tuned import with_tuned
from agent.turn import TurnPipeline
from agent.understanding import CatalogVocabulary
from index.build import BuildReport, build_index
from index.dataset import Dataset
from index.embedder import Embedder
from index.store import IndexStore, Purpose, chroma_client, indexed_namespaces, namespace_of
from index.transfer import load_with_transfer
from prompts.loader import PromptTemplate, available, load_prompt


class LazyEncoder:
    """The sentence embedder, loaded on first use (a turn without free text never needs it)."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self._factory = factory
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._factory()
            return self._embedder

    def encode_query(self, text: str) -> np.ndarray:
        return self.embedder.encode([text])[0]

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(list(texts))


def embedder_factory(settings: Settings, embedder: Embedder | None = None) -> Callable[[], Embedder]:
    return (lambda: embedder) if embedder is not None else (lambda: Embedder(settings.index.embedder))


def open_store(settings: Settings, namespace: str, use_files: bool = True) -> IndexStore:
    """The namespace's index store; use_files=False reads Chroma's metadata as indexes built before the index
    files did (benchmarks compare the two)."""
    return IndexStore(chroma_client(settings.index), namespace, settings.index.hnsw, use_files=use_files)


def load_index(store: IndexStore) -> LoadedIndex:
    """The agent's in-memory view of an index store (what build_agent opens)."""
    return LoadedIndex(store)


def dataset_namespace(settings: Settings, dataset: str | None = None) -> str:
    """The namespace of a dataset given by name or folder (the configured one by default)."""
    return namespace_of(dataset or settings.data.dataset)


def index_dataset(settings: Settings, dataset: Dataset, embedder: Embedder | None = None, progress: bool = True,
                  purpose: Purpose = "dataset") -> BuildReport:
    """Build or update the index of a loaded dataset (its name is the namespace)."""
    return build_index(dataset, open_store(settings, dataset.name), settings.index,
                       embedder_factory(settings, embedder), progress=progress, purpose=purpose)


def index_with_sources(settings: Settings, dataset: Dataset, views: dict[str, Dataset],
                       embedder: Embedder | None = None, progress: bool = True,
                       purpose: Purpose = "dataset") -> BuildReport:
    """Build the dataset's index and, beside it, one per source view (index.transfer's separate mode),
    named '<namespace>-<source>'; the dataset's index records them so build_agent opens them too."""
    built = {}
    for source, view in views.items():
        named = replace(view, name=f"{dataset.name}-{source}")
        index_dataset(settings, named, embedder, progress, purpose="source")
        built[source] = named.name
    report = index_dataset(settings, dataset, embedder, progress, purpose)
    open_store(settings, dataset.name).set_state(sources=",".join(f"{s}={n}" for s, n in built.items()))
    return report


def index_named_dataset(settings: Settings, dataset: str | None = None, embedder: Embedder | None = None,
                        progress: bool = True) -> tuple[Dataset, BuildReport]:
    data, views = load_with_transfer(dataset or settings.data.dataset, settings.data)
    return data, index_with_sources(settings, data, views, embedder, progress)


def source_indexes(settings: Settings, index: LoadedIndex) -> dict[str, LoadedIndex]:
    """The source views an index was built with (see index_with_sources), loaded."""
    pairs = [p.split("=", 1) for p in str(index.state.get("sources") or "").split(",") if "=" in p]
    return {source: LoadedIndex(open_store(settings, namespace)) for source, namespace in pairs}


def indexed_datasets(settings: Settings) -> list[str]:
    """Namespaces with a finished dataset index (evaluation and training copies left out)."""
    return indexed_namespaces(chroma_client(settings.index), "dataset")


def make_configured_llm(settings: Settings) -> LLM | None:
    return None if settings.llm.backend == "none" else make_llm(settings.llm)


def adapter_manifest(adapter_folder: str | None) -> dict[str, Any]:
    """What an adapter's manifest says about how to use it (empty without an adapter or manifest)."""
    manifest = Path(adapter_folder) / "manifest.json" if adapter_folder else None
    if manifest is None or not manifest.exists():
        return {}
    return dict(json.loads(manifest.read_text(encoding="utf-8")))


def adapter_prompt(adapter_folder: str | None) -> int | None:
    """The prompt version an adapter was trained with, from its manifest ('rerank_listwise.v3' -> 3)."""
    prompt = str(adapter_manifest(adapter_folder).get("prompt", ""))
    return int(prompt.rsplit(".v", 1)[1]) if ".v" in prompt else None


def _prompt(settings: Settings, name: str, version: int | None, adapter: str | None) -> PromptTemplate:
    if version is None:
        version = adapter_prompt(settings.llm.adapters.get(adapter) if adapter else None)
    extra = available(settings.prompt_dir).get(name, []) if settings.prompt_dir is not None else []
    if settings.prompt_dir is not None and extra and (version is None or version in extra):
        return load_prompt(name, version, settings.prompt_dir)  # a prompt variant outside prompts/
    return load_prompt(name, version)


FROM_SETTINGS: Any = object()  # build_agent's default: the LLM the settings describe


@dataclass
class Agent:
    """Everything a request needs, assembled once per dataset."""

    settings: Settings
    namespace: str
    index: LoadedIndex
    recommender: Recommender
    pipeline: TurnPipeline
    conversations: ConversationAgent
    encoder: LazyEncoder
    llm: LLM | None
    rerank_adapter: str | None
    reply_adapter: str | None
    prompts: dict[str, str] = field(default_factory=dict)

    @property
    def reranker(self) -> Reranker | None:
        return self.pipeline.reranker

    def describe(self) -> dict[str, Any]:
        """What answers: recorded with evaluation runs and shown by /health."""
        return {"namespace": self.namespace, "llm": self.llm.name if self.llm else None,
                "backend": self.settings.llm.backend if self.llm else "none",
                "rerank_adapter": self.rerank_adapter, "reply_adapter": self.reply_adapter, "prompts": self.prompts,
                "rerank_blend": self.reranker.blend if self.reranker else None,
                "rerank_in_conversations": bool(self.reranker) and self.settings.rerank.in_conversations,
                "intent_reader": self.conversations.reader.name}

    def warm(self) -> float:
        """Load what turns would load lazily (servers call this before they accept requests); seconds taken."""
        started = time.perf_counter()
        self.conversations.warm()
        return time.perf_counter() - started

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.conversations.store.close()


def ready_to_serve(agent: Agent) -> float:
    """What a server does before its first request: torch's thread count for its role (one thread per turn
    beside a model server, whose busy core would otherwise stall every turn's encoder), and the parts turns
    load lazily, so that no user's turn pays for them. Returns the seconds the warm-up took."""
    threads = agent.settings.api.torch_threads(in_process_llm=agent.llm is not None and not agent.settings.llm.served)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return agent.warm()


def intent_reader(settings: Settings, dialogue: ConversationAgent, llm: LLM | None) -> IntentReader:
    """The LLM reader over the conversation's rules (its fallback), where there is a model and an intent adapter
    (or intent.adapter is unset: the base model); the rules otherwise."""
    from agent.intent_llm import LLMReader

    rules = dialogue.reader
    adapter = settings.intent.adapter
    if llm is None or not isinstance(rules, RulesReader) or \
            (adapter is not None and adapter not in settings.llm.adapters):
        return rules
    return LLMReader(llm, rules, adapter, max_tokens=settings.intent.max_tokens)


def build_agent(settings: Settings, dataset: str | None = None, *, llm: LLM | None = FROM_SETTINGS,
                embedder: Embedder | None = None, encoder: LazyEncoder | None = None,
                index: LoadedIndex | None = None, conversations: ConversationStore | None = None,
                namespace: str | None = None) -> Agent:
    """The agent over a dataset's index (or an explicit `namespace`, e.g. an evaluation copy).

    `llm` defaults to the configured one (none with llm.backend = 'none'); pass an LLM to share one
    model across datasets, or None for the retriever with templated replies. `index`, `encoder` and
    `embedder` let callers reuse what they already loaded.
    """
    if namespace is None and index is None:  # a dataset's own agent: what `recagent tune` chose for it applies
        settings, _ = with_tuned(settings, dataset or settings.data.dataset)
    namespace = namespace or (index.store.namespace if index is not None else dataset_namespace(settings, dataset))
    index = index or LoadedIndex(open_store(settings, namespace))
    encoder = encoder or LazyEncoder(embedder_factory(settings, embedder))
    if llm is FROM_SETTINGS:
        llm = make_configured_llm(settings)
    recommender = Recommender(index, settings.retrieval, encoder, source_indexes(settings, index))
    reranker: Reranker | None = None
    replier = None
    rerank_adapter = reply_adapter = None
    prompts: dict[str, str] = {}
    if llm is not None:
        adapters = settings.llm.adapters
        prompt_name, wanted, window = settings.rerank.method_defaults
        rerank_adapter = wanted if wanted in adapters else None
        reply_adapter = settings.reply.adapter if settings.reply.adapter in adapters else None
        rerank_prompt = _prompt(settings, prompt_name, settings.rerank.prompt_version, rerank_adapter)
        reply_prompt = _prompt(settings, settings.reply.prompt, settings.reply.prompt_version, reply_adapter)
        prompts = {"rerank": rerank_prompt.id, "reply": reply_prompt.id}
        # the retriever-order blend chosen on validation for this adapter, unless set explicitly
        blend = settings.rerank.blend if "blend" in settings.rerank.model_fields_set or rerank_adapter is None \
            else float(adapter_manifest(adapters[rerank_adapter]).get("rerank_blend", 0.0))
        if settings.rerank.enabled and settings.rerank.method == "likelihood":
            reranker = LikelihoodReranker(llm, index, rerank_prompt, window, rerank_adapter, blend)
        elif settings.rerank.enabled:
            reranker = LLMReranker(llm, index, rerank_prompt, window, rerank_adapter, blend,
                                   permutations=settings.rerank.permutations, batch_size=settings.rerank.batch_size)
        else:
            rerank_adapter, prompts = None, {"reply": reply_prompt.id}
        replier = ReplyWriter(llm, reply_prompt, list(index.titles.values()), index.noun, reply_adapter,
                              settings.reply.max_items, settings.reply.max_tokens)
    pipeline = TurnPipeline(recommender, reranker, replier, settings.rerank.candidates)
    store = conversations or open_conversation_store(settings.conversations, namespace)
    dialogue = ConversationAgent(pipeline, store, CatalogVocabulary(index, encoder),
                                 turn_wait_s=settings.api.turn_wait_s, rerank=settings.rerank.in_conversations)
    if settings.intent.reader == "llm":
        dialogue.reader = intent_reader(settings, dialogue, llm)
    return Agent(settings, namespace, index, recommender, pipeline, dialogue, encoder, llm, rerank_adapter,
                 reply_adapter, prompts)
