"""flashattn: exact, IO-aware attention (the FlashAttention algorithm) for CPUs and NVIDIA GPUs.

flash-attn 2.x's functions under the same names, arguments and results, on PyTorch tensors (autograd,
torch.compile), NumPy arrays and CuPy arrays; switching over is one import line:

    from flashattn import flash_attn_func, flash_attn_varlen_func

attention_forward and attention_backward are the library's two calls without autograd, for any of these
frameworks. flash_attn_with_kvcache (flash-attn's, for inference) attends to a KV cache, contiguous or
paged, appending the new keys and values in place; merge_attention_states combines attention over disjoint
key sets. build_info() and cuda_devices() tell what this build contains and which GPUs it sees.
"""

from flashattn._calls import attention_backward, attention_forward
from flashattn._ext import build_info, cuda_devices
from flashattn._interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)
from flashattn._kvcache import flash_attn_with_kvcache, merge_attention_states

__version__ = build_info()["version"]

__all__ = [
    "attention_backward",
    "attention_forward",
    "build_info",
    "cuda_devices",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
    "merge_attention_states",
]
