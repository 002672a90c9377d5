"""The model in-process with transformers: zero servers, for a laptop.

One forward pass or generation at a time (the model is not thread-safe). `llm.timeout_s` bounds both
the wait for the model and the generation itself: past it a call raises LLMUnavailable, so the agent
falls back instead of queueing forever. LoRA adapters (peft) are loaded once, by name, and switched per
call; `close()` stops any generation in progress, for a prompt shutdown.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from agent.llm.base import LLMConfig, LLMError, LLMUnavailable, Message
from agent.llm.model_files import resolve_model


def load_tokenizer(folder: str) -> Any:
    """The model's tokenizer, left-padded (batches end at the next token), padding with EOS if it has no pad
    token: the same for this backend and for training."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class TransformersLLM:
    def __init__(self, config: LLMConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as exc:  # pragma: no cover - torch and transformers are core dependencies
            raise LLMError("the transformers backend needs torch and transformers") from exc
        self._torch = torch
        self.config = config
        folder = resolve_model(config.model, config.model_cache)
        self.name = config.served_model or os.path.basename(folder.rstrip("/"))
        self.tokenizer: Any = load_tokenizer(folder)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype))
        self.adapters: tuple[str, ...] = ()
        if config.adapters:
            self._load_adapters(config.adapters)
        self.model.eval()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _load_adapters(self, adapters: dict[str, str]) -> None:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise LLMError("LoRA adapters need peft (pip install -e '.[llm]')") from exc
        names = list(adapters)
        try:
            model = PeftModel.from_pretrained(self.model, adapters[names[0]], adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(adapters[name], adapter_name=name)
        except (OSError, ValueError) as exc:
            raise LLMError(f"cannot load the LoRA adapters {adapters}: {exc}") from None
        self.model = model
        self.adapters = tuple(names)

    @contextmanager
    def _use(self, adapter: str | None) -> Iterator[None]:
        """Hold the model (waiting at most timeout_s) with `adapter` active, or the base model."""
        if self._closed.is_set():
            raise LLMUnavailable("the model is shutting down")
        if not self._lock.acquire(timeout=self.config.timeout_s):
            raise LLMUnavailable(f"the in-process model stayed busy for {self.config.timeout_s} s")
        try:
            if adapter is not None and adapter not in self.adapters:
                raise LLMError(f"no adapter named {adapter!r} (loaded: {', '.join(self.adapters) or 'none'})")
            if not self.adapters:
                yield
            elif adapter is None:
                with self.model.disable_adapter():
                    yield
            else:
                self.model.set_adapter(adapter)
                yield
        finally:
            self._lock.release()

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        ids = []
        for label in labels:
            tokens = self.tokenizer.encode(label, add_special_tokens=False)
            if len(tokens) != 1:
                raise LLMError(f"label {label!r} is {len(tokens)} tokens for this tokenizer; labels must be one")
            ids.append(tokens[0])
        return ids

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str],
                       adapter: str | None = None) -> list[dict[str, float]]:
        torch = self._torch
        label_ids = self.label_token_ids(labels)
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        with self._use(adapter), torch.inference_mode():
            logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)[:, label_ids]
        return [{label: float(value) for label, value in zip(labels, row, strict=True)} for row in logprobs]

    def continuation_logprobs(self, prefix: str, continuations: Sequence[str],
                              adapter: str | None = None) -> list[tuple[float, int]]:
        """One forward pass over the prefix, whose key/value cache every continuation then shares: the cost is
        the prefix once plus the continuations' own tokens, not the prefix once per continuation."""
        if not continuations:
            return []
        with self._use(adapter), self._torch.inference_mode():
            rows = continuation_token_logprobs(self.model, self.tokenizer, prefix, continuations)
        return [(float(row.sum()), len(row)) for row in rows]

    def _stopping(self, deadline: float, cancelled: threading.Event) -> Any:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch, closed = self._torch, self._closed

        class Stop(StoppingCriteria):
            """Ends generation past the deadline, when the consumer stopped reading, or at shutdown."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = time.monotonic() > deadline or cancelled.is_set() or closed.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

        return StoppingCriteriaList([Stop()])

    @contextmanager
    def _sampling(self) -> Iterator[dict[str, Any]]:
        """generate()'s sampling arguments; when sampling, the torch random state is seeded for this call
        and restored after it (the model lock is held, so calls do not share it)."""
        c = self.config
        if c.temperature <= 0:
            yield {"do_sample": False}
            return
        with self._torch.random.fork_rng(devices=[]):
            self._torch.manual_seed(c.seed)
            yield {"do_sample": True, "temperature": c.temperature, "top_p": c.top_p, "top_k": 0}

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = (),
                 adapter: str | None = None) -> list[str]:
        torch = self._torch
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        with self._use(adapter), torch.inference_mode(), self._sampling() as sampling:
            deadline = time.monotonic() + self.config.timeout_s
            out = self.model.generate(**batch, max_new_tokens=max_tokens, **sampling,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      stopping_criteria=self._stopping(deadline, threading.Event()))
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [_cut(text, stop) for text in texts]

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (),
                        adapter: str | None = None) -> Iterator[str]:
        emitted = ""
        for piece in self._stream(prompt, max_tokens, add_special_tokens=True, adapter=adapter):
            cut = _cut(emitted + piece, stop)
            if len(cut) < len(emitted) + len(piece):  # a stop marker appeared
                if len(cut) > len(emitted):
                    yield cut[len(emitted):]
                return
            emitted += piece
            yield piece

    def stream_chat(self, messages: Sequence[Message], max_tokens: int = 256) -> Iterator[str]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMError(f"model {self.name} has no chat template; give a model folder that has one")
        prompt = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        yield from self._stream(prompt, max_tokens, add_special_tokens=False, adapter=None)

    def _stream(self, prompt: str, max_tokens: int, add_special_tokens: bool, adapter: str | None) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        torch = self._torch
        batch = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self.config.timeout_s + 5)
        cancelled = threading.Event()
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with self._use(adapter), torch.inference_mode(), self._sampling() as sampling:
                    deadline = time.monotonic() + self.config.timeout_s
                    self.model.generate(**batch, max_new_tokens=max_tokens, **sampling, streamer=streamer,
                                        pad_token_id=self.tokenizer.pad_token_id,
                                        stopping_criteria=self._stopping(deadline, cancelled))
            except BaseException as exc:  # handed to the consumer below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        except Exception:  # the streamer's queue timed out: the worker is stuck
            raise LLMUnavailable(f"the in-process model produced nothing for {self.config.timeout_s} s") from None
        finally:
            cancelled.set()  # the consumer stopped early (or finished): end the generation
            worker.join(timeout=self.config.timeout_s + 5)
        if failure:
            if isinstance(failure[0], LLMError):
                raise failure[0]
            raise LLMError(f"generation failed: {failure[0]}") from failure[0]

    def close(self) -> None:
        self._closed.set()


def _cut(text: str, stop: Sequence[str]) -> str:
    for marker in stop:
        position = text.find(marker)
        if position >= 0:
            text = text[:position]
    return text


def continuation_token_logprobs(model: Any, tokenizer: Any, prefix: str, continuations: Sequence[str]) -> list[Any]:
    """Each continuation's tokens' log-probabilities after `prefix` (a 1-D tensor per continuation), from one
    pass over the prefix whose key/value cache the continuations share. Logits over the vocabulary are computed
    only where they are read: the prefix's last position and the continuations' tokens but their last.
    Differentiable: `recagent train rerank --objective likelihood` trains through it; callers that only read
    the values run it under `torch.inference_mode()`."""
    import torch

    prefix_ids = tokenizer(prefix, return_tensors="pt").input_ids
    if prefix_ids.shape[1] == 0:
        raise LLMError("continuation_logprobs needs a non-empty prefix")
    pieces = [tokenizer.encode(c, add_special_tokens=False) for c in continuations]
    if not all(pieces):
        raise LLMError("every continuation needs at least one token")
    device = next(model.parameters()).device
    width = max(len(p) for p in pieces)
    batch = torch.full((len(pieces), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(pieces), prefix_ids.shape[1] + width), dtype=torch.long)
    mask[:, :prefix_ids.shape[1]] = 1
    for row, ids in enumerate(pieces):
        batch[row, :len(ids)] = torch.tensor(ids)
        mask[row, prefix_ids.shape[1]:prefix_ids.shape[1] + len(ids)] = 1
    first = model(input_ids=prefix_ids.to(device), use_cache=True, logits_to_keep=1)  # only the next token's
    opening = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
    following = None
    if width > 1:
        cache = first.past_key_values
        cache.batch_repeat_interleave(len(pieces))
        rest = model(input_ids=batch[:, :-1].to(device), attention_mask=mask[:, :-1].to(device),
                     past_key_values=cache).logits.float()
        following = torch.log_softmax(rest, dim=-1)
    out = []
    for row, ids in enumerate(pieces):
        values = [opening[ids[0]].reshape(1)]
        if len(ids) > 1 and following is not None:
            index = torch.tensor(ids[1:], device=device).unsqueeze(1)
            values.append(following[row, :len(ids) - 1].gather(1, index).squeeze(1))
        out.append(torch.cat(values))
    return out
