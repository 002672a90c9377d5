"""What the machine's processor can do fast, for choices that depend on it (torch is imported lazily)."""

from __future__ import annotations


def native_bfloat16(device: str = "auto") -> bool:
    """Whether bfloat16 matmuls run natively on `device` ("cpu", "cuda", or "auto": the GPU if there is one):
    a CUDA GPU that supports them, or a CPU with AVX512-BF16 or AMX. Elsewhere (an AVX2-only CPU) torch
    emulates them and bfloat16 autocast is far slower than float32 (one LoRA training step of `train adapt`
    on such a 2-core CPU: 53 s in float32, over 11 minutes in bfloat16), so callers choose float32 there."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
