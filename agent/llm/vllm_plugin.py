"""A vLLM general plugin (entry point `vllm.general_plugins`, loaded in every vLLM process) that makes
LoRA adapters cheap on vLLM's CPU build.

The CPU build applies LoRA with PyTorch ops (`vllm.lora.ops.torch_ops`) that gather each token's adapter
weights, `weights[indices]`, into a (tokens × out × rank) tensor before a batched matrix-vector product,
a copy that grows with the prompt's length in every projection of every layer: the shipped ranker took
7.5 s a list against 2.2 s for the base model (vLLM CPU 0.32, one core, float32; the README's LLM
section). Here the same products are one matrix multiply per adapter present in the batch. Tokens
without an adapter (index -1, "no LoRA" in vLLM's mapping) get nothing added; the gathering ops read
index -1 as the last adapter slot, so a base-model request batched with adapter requests got that
adapter's weights.

It changes nothing on a GPU (the GPU build runs Triton kernels, not these ops) and nothing when vLLM's
CPU module has moved (it then logs why and leaves vLLM as it is). `VLLM_PLUGINS` can exclude it by name.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PATCHED = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice", "sgmv_shrink", "sgmv_expand", "sgmv_expand_slice")


def lora_products(inputs: Any, weights: Any, indices: Any, dtype: Any) -> Any:
    """(tokens × out): each token's input times its adapter's weights (out × in), zero where the index is
    negative. One matrix multiply per adapter present instead of a gather of per-token weights."""
    import torch

    inputs = inputs.to(dtype=dtype)
    out_dim = weights.shape[-2]
    indices = indices.view(-1)

    def transposed(index: int) -> Any:  # (in × out); slots may carry a leading dimension of 1
        return weights[index].reshape(out_dim, -1).to(dtype=dtype).t()

    present = [int(i) for i in torch.unique(indices).tolist()]
    if len(present) == 1 and present[0] >= 0 and indices.numel() == inputs.shape[0]:  # one adapter: no scatter
        return inputs @ transposed(present[0])
    outputs = inputs.new_zeros((inputs.shape[0], out_dim))
    for index in present:
        if index < 0:
            continue
        rows = (indices == index).nonzero(as_tuple=True)[0]
        outputs[rows] = inputs[rows] @ transposed(index)
    return outputs


def bgmv_shrink(inputs: Any, lora_a_weights: Any, output_tensor: Any, lora_indices_tensor: Any,
                scaling: float = 1.0) -> None:
    outputs = lora_products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs: Any, lora_b_weights: Any, output_tensor: Any, lora_indices_tensor: Any,
                add_inputs: bool = True) -> None:
    outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    common = min(outputs.shape[1], output_tensor.shape[1])  # adapter and model may pad differently
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def bgmv_expand_slice(inputs: Any, lora_b_weights: Any, output_tensor: Any, lora_indices_tensor: Any,
                      slice_offset: int, slice_size: int, add_inputs: bool = True) -> None:
    outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs


def _per_token(lora_indices_tensor: Any, seq_len_tensor: Any) -> Any:
    import torch

    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(inputs: Any, lora_a_weights: Any, output_tensor: Any, b_seq_start_loc: Any, seq_len_tensor: Any,
                lora_indices_tensor: Any, batches: int, max_seq_length: int, token_nums: int,
                scaling: float) -> None:
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _per_token(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(inputs: Any, lora_b_weights: Any, output_tensor: Any, b_seq_start_loc: Any, seq_len_tensor: Any,
                lora_indices_tensor: Any, batches: int, max_seq_length: int, token_nums: int,
                add_inputs: bool = False) -> None:
    bgmv_expand(inputs, lora_b_weights, output_tensor, _per_token(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(inputs: Any, lora_b_weights: Any, output_tensor: Any, b_seq_start_loc: Any,
                      seq_len_tensor: Any, lora_indices_tensor: Any, batches: int, max_seq_length: int,
                      token_nums: int, slice_offset: int, slice_size: int, add_inputs: bool = False) -> None:
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, _per_token(lora_indices_tensor, seq_len_tensor),
                      slice_offset, slice_size, add_inputs)


def register() -> None:
    """Entry point: replace the CPU LoRA wrapper's ops with the ones above (idempotent)."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu
    except Exception as exc:  # a vLLM without the CPU wrapper, or one that fails to import it here
        log.info("recagent: vLLM's CPU LoRA wrapper not found (%s); LoRA ops left as they are", exc)
        return
    missing = [name for name in PATCHED if not hasattr(punica_cpu, name)]
    if missing:
        log.warning("recagent: vLLM's CPU LoRA wrapper has no %s; LoRA ops left as they are", ", ".join(missing))
        return
    for name in PATCHED:
        setattr(punica_cpu, name, globals()[name])
