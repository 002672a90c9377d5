"""The vLLM plugin's LoRA ops for the CPU build: the same products as vLLM's own PyTorch ops for tokens
with an adapter, nothing for tokens without one, and registered where vLLM loads its plugins. (The real
server applying the shipped adapters through them is tests/agent/test_adapters.py.)"""

from __future__ import annotations

from importlib.metadata import entry_points

import torch
from vllm.lora.ops.torch_ops import lora_ops as vllm_ops
from vllm.lora.punica_wrapper import punica_cpu

from agent.llm import vllm_plugin

TOKENS, HIDDEN, OUT, RANK, SLOTS = 60, 32, 48, 8, 3


def _weights() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN, generator=generator)
    lora_a = torch.randn(SLOTS, 1, RANK, HIDDEN, generator=generator)
    lora_b = torch.randn(SLOTS, 1, OUT, RANK, generator=generator)
    return x, lora_a, lora_b


def test_prefill_ops_equal_vllms_for_one_and_several_adapters() -> None:
    x, lora_a, lora_b = _weights()
    for slots, lengths in (([1], [TOKENS]), ([0, 2, 1], [10, 30, 20])):
        indices, seq_lens = torch.tensor(slots), torch.tensor(lengths)
        meta = (None, seq_lens, indices, len(slots), max(lengths), TOKENS)
        ours, theirs = torch.zeros(TOKENS, RANK), torch.zeros(TOKENS, RANK)
        vllm_ops.sgmv_shrink(x, lora_a, theirs, *meta, 0.5)
        vllm_plugin.sgmv_shrink(x, lora_a, ours, *meta, 0.5)
        assert torch.allclose(ours, theirs, atol=1e-5) and ours.abs().sum() > 0
        out_ours, out_theirs = torch.ones(TOKENS, OUT + 4), torch.ones(TOKENS, OUT + 4)
        vllm_ops.sgmv_expand_slice(theirs, lora_b, out_theirs, *meta, 4, OUT, True)
        vllm_plugin.sgmv_expand_slice(ours, lora_b, out_ours, *meta, 4, OUT, True)
        assert torch.allclose(out_ours, out_theirs, atol=1e-4)
        full_ours, full_theirs = torch.zeros(TOKENS, OUT), torch.zeros(TOKENS, OUT)
        vllm_ops.sgmv_expand(theirs, lora_b, full_theirs, *meta, False)
        vllm_plugin.sgmv_expand(ours, lora_b, full_ours, *meta, False)
        assert torch.allclose(full_ours, full_theirs, atol=1e-4)


def test_decode_tokens_without_an_adapter_get_nothing() -> None:
    x, lora_a, _ = _weights()
    indices = torch.tensor([2, -1, 0, -1])
    ours, theirs = torch.zeros(4, RANK), torch.zeros(4, RANK)
    vllm_plugin.bgmv_shrink(x[:4], lora_a, ours, indices, 1.0)
    vllm_ops.bgmv_shrink(x[:4], lora_a, theirs, indices, 1.0)
    assert torch.equal(ours[[1, 3]], torch.zeros(2, RANK))
    assert not torch.equal(theirs[[1, 3]], torch.zeros(2, RANK))  # vLLM's gather reads -1 as the last slot
    assert torch.allclose(ours[[0, 2]], theirs[[0, 2]], atol=1e-5)


def test_registered_as_a_vllm_plugin_and_patches_the_cpu_wrapper() -> None:
    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("recagent_cpu_lora") == "agent.llm.vllm_plugin:register"
    saved = {name: getattr(punica_cpu, name) for name in vllm_plugin.PATCHED}
    try:
        vllm_plugin.register()
        vllm_plugin.register()  # vLLM may load a plugin more than once in a process
        assert all(getattr(punica_cpu, name) is getattr(vllm_plugin, name) for name in vllm_plugin.PATCHED)
    finally:
        for name, op in saved.items():
            setattr(punica_cpu, name, op)
