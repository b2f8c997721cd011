"""The library through flashattn.attention_forward and attention_backward on NumPy arrays (the CPU backend):
every option against the float64 reference, outputs passed in poisoned with NaN."""

from dataclasses import dataclass
from typing import Optional, Tuple

import flashattn
import numpy as np
import pytest
from conftest import check_results, numpy_dtypes, poisoned, random_array

RESULTS = ("out", "lse", "dq", "dk", "dv")


@dataclass(frozen=True)
class Case:
    name: str
    batch: int = 2
    seqlen_q: int = 24
    seqlen_k: int = 24
    heads: int = 4
    heads_kv: int = 4
    head_dim: int = 32
    head_dim_v: int = 32
    causal: bool = False
    causal_alignment: str = "bottom_right"
    window_size: Tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    alibi: str = ""  # "", "head": slopes (heads,), "batch": slopes (batch, heads)
    softmax_scale: Optional[float] = None

    def options(self, rng):
        slopes = None
        if self.alibi:
            shape = (self.heads,) if self.alibi == "head" else (self.batch, self.heads)
            slopes = rng.uniform(0.02, 0.3, shape).astype(np.float32)
        return dict(
            softmax_scale=self.softmax_scale,
            causal=self.causal,
            causal_alignment=self.causal_alignment,
            window_size=self.window_size,
            softcap=self.softcap,
            alibi_slopes=slopes,
        )


CASES = [
    Case("plain"),
    Case("odd_sizes_gqa", seqlen_q=13, seqlen_k=77, heads=6, heads_kv=2, head_dim=40, head_dim_v=24),
    Case("mqa_head_dim_256", batch=1, seqlen_q=9, seqlen_k=17, heads=3, heads_kv=1, head_dim=256, head_dim_v=8),
    Case("seqlen_q_1", seqlen_q=1, seqlen_k=65, causal=True),
    Case("seqlen_k_1", seqlen_q=19, seqlen_k=1),
    Case("seqlen_q_0", seqlen_q=0, seqlen_k=10),
    Case("seqlen_k_0", seqlen_q=7, seqlen_k=0),
    Case("batch_0", batch=0),
    Case("causal_bottom_right", seqlen_q=20, seqlen_k=50, causal=True),
    Case("causal_fully_masked_rows", seqlen_q=50, seqlen_k=20, causal=True),
    Case("causal_top_left", seqlen_q=50, seqlen_k=20, causal=True, causal_alignment="top_left"),
    Case("window", seqlen_q=40, seqlen_k=40, window_size=(8, 4)),
    Case(
        "window_causal_top_left", seqlen_q=30, seqlen_k=45, causal=True, causal_alignment="top_left", window_size=(6, 0)
    ),
    Case("softcap_scale", softcap=5.0, softmax_scale=0.5),
    Case("alibi_per_head_causal", seqlen_q=33, seqlen_k=40, causal=True, alibi="head"),
    Case("alibi_per_batch_window_softcap", alibi="batch", window_size=(5, 7), softcap=3.0),
]


@pytest.mark.parametrize("dtype", numpy_dtypes())
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_backward(case, dtype, rng):
    c = case
    q = random_array(rng, (c.batch, c.seqlen_q, c.heads, c.head_dim), dtype)
    k = random_array(rng, (c.batch, c.seqlen_k, c.heads_kv, c.head_dim), dtype)
    v = random_array(rng, (c.batch, c.seqlen_k, c.heads_kv, c.head_dim_v), dtype)
    dout = random_array(rng, (c.batch, c.seqlen_q, c.heads, c.head_dim_v), dtype)
    options = c.options(rng)

    out = poisoned((c.batch, c.seqlen_q, c.heads, c.head_dim_v), dtype)
    lse = poisoned((c.batch, c.heads, c.seqlen_q), np.float32)
    returned = flashattn.attention_forward(q, k, v, out=out, softmax_lse=lse, **options)
    assert returned[0] is out and returned[1] is lse
    dq, dk, dv = (poisoned(x.shape, dtype) for x in (q, k, v))
    returned = flashattn.attention_backward(dout, q, k, v, out, lse, dq=dq, dk=dk, dv=dv, **options)
    assert all(r is g for r, g in zip(returned, (dq, dk, dv)))
    results = dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv)
    check_results(results, (q, k, v, dout), dtype, RESULTS, **options)


@pytest.mark.parametrize("dtype", numpy_dtypes())
def test_allocated_outputs(dtype, rng):
    """Without out= and dq= the results are allocated, in the input's dtype (the lse in fp32)."""
    q, k, v, dout = (random_array(rng, (1, 10, 2, 16), dtype) for _ in range(4))
    out, lse = flashattn.attention_forward(q, k, v, causal=True)
    dq, dk, dv = flashattn.attention_backward(dout, q, k, v, out, lse, causal=True)
    assert out.dtype == dq.dtype == dk.dtype == dv.dtype == dtype and lse.dtype == np.float32
    check_results(dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv), (q, k, v, dout), dtype, RESULTS, causal=True)


# Variable-length sets: (query tokens, key tokens) per sequence, packed tokens past the last sequence
# (which must stay unwritten), and optionally the keys used per sequence.
VARLEN_SETS = {
    "mixed_lengths": ([(5, 7), (0, 3), (16, 16), (9, 0), (1, 1), (30, 11)], (3, 2), None),
    "seqused_k": ([(6, 10), (12, 12), (3, 8)], (0, 4), [4, 12, 0]),
}


@pytest.mark.parametrize("dtype", numpy_dtypes())
@pytest.mark.parametrize("masks", ["none", "causal", "causal_top_left_window", "alibi_softcap"])
@pytest.mark.parametrize("varlen_set", VARLEN_SETS)
def test_varlen(varlen_set, masks, dtype, rng):
    sequences, (trailing_q, trailing_k), seqused = VARLEN_SETS[varlen_set]
    heads, heads_kv, head_dim, head_dim_v = 4, 2, 24, 16
    cu_q = np.concatenate([[0], np.cumsum([s[0] for s in sequences])]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum([s[1] for s in sequences])]).astype(np.int32)
    total_q, total_k = int(cu_q[-1]) + trailing_q, int(cu_k[-1]) + trailing_k
    options = {
        "none": {},
        "causal": dict(causal=True),
        "causal_top_left_window": dict(causal=True, causal_alignment="top_left", window_size=(4, -1)),
        "alibi_softcap": dict(
            alibi_slopes=rng.uniform(0.02, 0.3, (len(sequences), heads)).astype(np.float32), softcap=4.0
        ),
    }[masks]
    options.update(
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        seqused_k=None if seqused is None else np.array(seqused, np.int32),
    )
    max_seqlens = dict(max_seqlen_q=max(s[0] for s in sequences), max_seqlen_k=max(s[1] for s in sequences))

    q = random_array(rng, (total_q, heads, head_dim), dtype)
    k = random_array(rng, (total_k, heads_kv, head_dim), dtype)
    v = random_array(rng, (total_k, heads_kv, head_dim_v), dtype)
    dout = random_array(rng, (total_q, heads, head_dim_v), dtype)
    out, lse = poisoned((total_q, heads, head_dim_v), dtype), poisoned((heads, total_q), np.float32)
    flashattn.attention_forward(q, k, v, out=out, softmax_lse=lse, **options, **max_seqlens)
    dq, dk, dv = (poisoned(x.shape, dtype) for x in (q, k, v))
    flashattn.attention_backward(dout, q, k, v, out, lse, dq=dq, dk=dk, dv=dv, **options, **max_seqlens)

    rows_q, rows_k = np.arange(total_q) >= cu_q[-1], np.arange(total_k) >= cu_k[-1]
    unwritten = dict(
        out=np.broadcast_to(rows_q[:, None, None], out.shape),
        lse=np.broadcast_to(rows_q[None, :], lse.shape),
        dq=np.broadcast_to(rows_q[:, None, None], dq.shape),
        dk=np.broadcast_to(rows_k[:, None, None], dk.shape),
        dv=np.broadcast_to(rows_k[:, None, None], dv.shape),
    )
    results = dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv)
    check_results(results, (q, k, v, dout), dtype, RESULTS, unwritten=unwritten, **options)


def test_strided_and_read_only_inputs(rng):
    """Views with free strides (heads and tokens interleaved, a reversed batch), read-only and broadcast
    inputs: the library reads them in place or through one contiguous copy, with the same results."""
    base = random_array(rng, (2, 3, 17, 4, 40), np.float32)
    q = base[:, 0, :, :, :32]  # last dimension contiguous, others strided
    k = base[::-1, 1, :, 1:3, 8:40]  # negative batch stride: copied first
    v = np.broadcast_to(random_array(rng, (1, 17, 1, 32), np.float32), (2, 17, 2, 32))  # stride 0
    q.flags.writeable = False
    out_base = poisoned((2, 17, 4, 64), np.float32)
    out = out_base[..., 16:48]  # a strided output
    flashattn.attention_forward(q, k, v, out=out, softmax_lse=poisoned((2, 4, 17), np.float32))
    check_results(dict(out=out), (q, k, v), np.float32, ["out"])
    assert np.isnan(out_base[..., :16]).all() and np.isnan(out_base[..., 48:]).all()


def test_threads_and_deterministic_options(rng):
    """num_threads and deterministic change nothing in the results of the CPU backend."""
    q, k, v, dout = (random_array(rng, (2, 33, 2, 16), np.float32) for _ in range(4))
    results = []
    for threads, deterministic in ((1, False), (2, True)):
        out, lse = flashattn.attention_forward(q, k, v, num_threads=threads)
        grads = flashattn.attention_backward(dout, q, k, v, out, lse, num_threads=threads, deterministic=deterministic)
        results.append((out, lse) + grads)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)
