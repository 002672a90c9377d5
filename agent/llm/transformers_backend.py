"""The model in-process with transformers: zero servers, for a laptop."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from agent.llm.base import LLMConfig, LLMError, Message
from agent.llm.model_files import resolve_model


class TransformersLLM:
    def __init__(self, config: LLMConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - torch and transformers are core dependencies
            raise LLMError("the transformers backend needs torch and transformers") from exc
        self._torch = torch
        folder = resolve_model(config.model)
        self.name = config.served_model or os.path.basename(folder.rstrip("/"))
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype))
        self.model.eval()
        self._lock = threading.Lock()  # one forward pass at a time: the model is not thread-safe

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        ids = []
        for label in labels:
            tokens = self.tokenizer.encode(label, add_special_tokens=False)
            if len(tokens) != 1:
                raise LLMError(f"label {label!r} is {len(tokens)} tokens for this tokenizer; labels must be one")
            ids.append(tokens[0])
        return ids

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        torch = self._torch
        label_ids = self.label_token_ids(labels)
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        with self._lock, torch.inference_mode():
            logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)[:, label_ids]
        return [{label: float(value) for label, value in zip(labels, row, strict=True)} for row in logprobs]

    def complete(self, prompts: Sequence[str], max_tokens: int = 64, stop: Sequence[str] = ()) -> list[str]:
        torch = self._torch
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        with self._lock, torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [_cut(text, stop) for text in texts]

    def stream_complete(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ()) -> Iterator[str]:
        emitted = ""
        for piece in self._stream(prompt, max_tokens, add_special_tokens=True):
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
        yield from self._stream(prompt, max_tokens, add_special_tokens=False)

    def _stream(self, prompt: str, max_tokens: int, add_special_tokens: bool) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        torch = self._torch
        batch = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def generate() -> None:
            with self._lock, torch.inference_mode():
                self.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, streamer=streamer,
                                    pad_token_id=self.tokenizer.pad_token_id)

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()


def _cut(text: str, stop: Sequence[str]) -> str:
    for marker in stop:
        position = text.find(marker)
        if position >= 0:
            text = text[:position]
    return text
