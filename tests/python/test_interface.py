"""flash-attn's functions on NumPy arrays: signatures, return conventions, packed variants, head-dim padding,
and every validation rule (Python-level and the library's, mapped to Python exceptions)."""

import inspect

import flashattn
import numpy as np
import pytest
from conftest import BFLOAT16, NO_BFLOAT16_REASON, check_results, ml_dtypes, poisoned, random_array

COMMON_TAIL = [
    ("dropout_p", 0.0),
    ("softmax_scale", None),
    ("causal", False),
    ("window_size", (-1, -1)),
    ("softcap", 0.0),
    ("alibi_slopes", None),
    ("deterministic", False),
    ("return_attn_probs", False),
]
REQUIRED = inspect.Parameter.empty

# flash-attn 2.x's positional parameters and defaults, in order; our additions are keyword-only.
FLASH_ATTN_SIGNATURES = {
    "flash_attn_func": [("q", REQUIRED), ("k", REQUIRED), ("v", REQUIRED)] + COMMON_TAIL,
    "flash_attn_qkvpacked_func": [("qkv", REQUIRED)] + COMMON_TAIL,
    "flash_attn_kvpacked_func": [("q", REQUIRED), ("kv", REQUIRED)] + COMMON_TAIL,
    "flash_attn_varlen_func": [(name, REQUIRED) for name in ("q", "k", "v", "cu_seqlens_q", "cu_seqlens_k")]
    + [("max_seqlen_q", REQUIRED), ("max_seqlen_k", REQUIRED)]
    + COMMON_TAIL
    + [("block_table", None)],
    "flash_attn_varlen_qkvpacked_func": [("qkv", REQUIRED), ("cu_seqlens", REQUIRED), ("max_seqlen", REQUIRED)]
    + COMMON_TAIL,
    "flash_attn_varlen_kvpacked_func": [(name, REQUIRED) for name in ("q", "kv", "cu_seqlens_q", "cu_seqlens_k")]
    + [("max_seqlen_q", REQUIRED), ("max_seqlen_k", REQUIRED)]
    + COMMON_TAIL,
}


@pytest.mark.parametrize("name", FLASH_ATTN_SIGNATURES)
def test_signature_matches_flash_attn(name):
    parameters = inspect.signature(getattr(flashattn, name)).parameters.values()
    positional = [(p.name, p.default) for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == FLASH_ATTN_SIGNATURES[name]
    keyword_only = {p.name: p.default for p in parameters if p.kind == p.KEYWORD_ONLY}
    assert keyword_only.get("causal_alignment") == "bottom_right"


def make_qkv(
    rng, batch=2, seqlen_q=19, seqlen_k=23, heads=4, heads_kv=2, head_dim=32, head_dim_v=None, dtype=np.float32
):
    q = random_array(rng, (batch, seqlen_q, heads, head_dim), dtype)
    k = random_array(rng, (batch, seqlen_k, heads_kv, head_dim), dtype)
    v = random_array(rng, (batch, seqlen_k, heads_kv, head_dim_v or head_dim), dtype)
    return q, k, v


def test_flash_attn_func_and_return_attn_probs(rng):
    q, k, v = make_qkv(rng)
    out = flashattn.flash_attn_func(q, k, v, causal=True, window_size=(5, 0))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    triple = flashattn.flash_attn_func(q, k, v, 0.0, None, True, (5, 0), return_attn_probs=True)
    assert isinstance(triple, tuple) and len(triple) == 3 and triple[2] is None
    np.testing.assert_array_equal(triple[0], out)
    check_results(dict(out=out, lse=triple[1]), (q, k, v), np.float32, ["out", "lse"], causal=True, window_size=(5, 0))


@pytest.mark.parametrize("head_dim, head_dim_v", [(20, 20), (36, 12), (3, 8)])
def test_head_dim_padding(head_dim, head_dim_v, rng):
    """Head dims that are not multiples of 8 are padded with zeros, as flash-attn does, and the default
    softmax_scale stays 1 / sqrt(the caller's head dim)."""
    q, k, v = make_qkv(rng, head_dim=head_dim, head_dim_v=head_dim_v)
    out, lse, _ = flashattn.flash_attn_func(q, k, v, softcap=2.0, return_attn_probs=True)
    assert out.shape == q.shape[:-1] + (head_dim_v,)
    check_results(dict(out=out, lse=lse), (q, k, v), np.float32, ["out", "lse"], softcap=2.0)


def test_packed_functions_match_unpacked(rng):
    batch, seqlen, heads, head_dim = 2, 21, 4, 16
    qkv = random_array(rng, (batch, seqlen, 3, heads, head_dim), np.float32)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    options = dict(causal=True, softcap=3.0)
    expected = flashattn.flash_attn_func(q, k, v, **options)
    np.testing.assert_array_equal(flashattn.flash_attn_qkvpacked_func(qkv, **options), expected)
    np.testing.assert_array_equal(flashattn.flash_attn_kvpacked_func(q, qkv[:, :, 1:], **options), expected)
    check_results(dict(out=expected), (q, k, v), np.float32, ["out"], **options)


def varlen_inputs(rng, lengths_q, lengths_k, heads=4, heads_kv=2, head_dim=16):
    cu_q = np.concatenate([[0], np.cumsum(lengths_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lengths_k)]).astype(np.int32)
    q = random_array(rng, (int(cu_q[-1]), heads, head_dim), np.float32)
    kv = random_array(rng, (int(cu_k[-1]), 2, heads_kv, head_dim), np.float32)
    return q, kv, cu_q, cu_k


def test_varlen_functions(rng):
    q, kv, cu_q, cu_k = varlen_inputs(rng, [7, 0, 12], [9, 4, 12])
    k, v = kv[:, 0], kv[:, 1]
    options = dict(causal=True, alibi_slopes=np.linspace(0.05, 0.2, 4, dtype=np.float32))
    out, lse, none = flashattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 12, 12, return_attn_probs=True, **options)
    assert none is None and lse.shape == (4, q.shape[0])
    np.testing.assert_array_equal(flashattn.flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, 12, 12, **options), out)
    check_results(
        dict(out=out, lse=lse), (q, k, v), np.float32, ["out", "lse"], cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, **options
    )

    qkv = random_array(rng, (int(cu_k[-1]), 3, 2, 16), np.float32)
    out = flashattn.flash_attn_varlen_qkvpacked_func(qkv, cu_k, 12, window_size=(3, 3))
    check_results(
        dict(out=out),
        (qkv[:, 0], qkv[:, 1], qkv[:, 2]),
        np.float32,
        ["out"],
        cu_seqlens_q=cu_k,
        cu_seqlens_k=cu_k,
        window_size=(3, 3),
    )


def test_varlen_seqused_k_and_top_left(rng):
    q, kv, cu_q, cu_k = varlen_inputs(rng, [5, 9], [11, 6])
    seqused = np.array([7, 6], np.int32)
    options = dict(causal=True, causal_alignment="top_left")
    out = flashattn.flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_q, cu_k, 9, 11, seqused_k=seqused, **options)
    check_results(
        dict(out=out),
        (q, kv[:, 0], kv[:, 1]),
        np.float32,
        ["out"],
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        seqused_k=seqused,
        **options,
    )


@pytest.mark.skipif(BFLOAT16 is None, reason=NO_BFLOAT16_REASON)
def test_bfloat16_flash_attn_func(rng):
    q, k, v = make_qkv(rng, dtype=BFLOAT16, head_dim=12)
    out = flashattn.flash_attn_func(q, k, v, causal=True)
    assert out.dtype == BFLOAT16
    check_results(dict(out=out), (q, k, v), BFLOAT16, ["out"], causal=True)


# ---- Errors ---------------------------------------------------------------------------------------


def test_dropout_is_not_implemented(rng):
    q, k, v = make_qkv(rng)
    with pytest.raises(NotImplementedError, match="dropout"):
        flashattn.flash_attn_func(q, k, v, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="dropout"):
        flashattn.flash_attn_qkvpacked_func(np.stack([q, q, q], axis=2), 0.5)


def test_block_table_is_not_implemented(rng):
    q, kv, cu_q, cu_k = varlen_inputs(rng, [4], [4])
    with pytest.raises(NotImplementedError, match="block_table"):
        flashattn.flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_q, cu_k, 4, 4, block_table=cu_q)


def python_rule_calls(rng):
    """One call per rule the Python layer checks, each breaking exactly that rule."""
    q, k, v = make_qkv(rng)
    qv, kv, cu_q, cu_k = varlen_inputs(rng, [4, 5], [6, 3])
    return {
        "dropout_p negative": lambda: flashattn.flash_attn_func(q, k, v, dropout_p=-0.1),
        "window_size not a pair": lambda: flashattn.flash_attn_func(q, k, v, window_size=3),
        "window_size not ints": lambda: flashattn.flash_attn_func(q, k, v, window_size=(1.5, 0)),
        "causal_alignment unknown": lambda: flashattn.flash_attn_func(q, k, v, causal_alignment="top_right"),
        "q rank": lambda: flashattn.flash_attn_func(q[0], k, v),
        "v rank": lambda: flashattn.attention_forward(q, k, v[0]),
        "qkv shape": lambda: flashattn.flash_attn_qkvpacked_func(np.stack([q, q], axis=2)),
        "kv shape": lambda: flashattn.flash_attn_kvpacked_func(q, np.stack([k, k, k], axis=2)),
        "varlen qkv shape": lambda: flashattn.flash_attn_varlen_qkvpacked_func(kv, cu_k, 6),
        "varlen kv shape": lambda: flashattn.flash_attn_varlen_kvpacked_func(qv, kv[:, 0], cu_q, cu_k, 5, 6),
        "cu_seqlens missing": lambda: flashattn.flash_attn_varlen_func(qv, kv[:, 0], kv[:, 1], None, cu_k, 5, 6),
        "max_seqlen missing": lambda: flashattn.attention_forward(
            qv, kv[:, 0], kv[:, 1], cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=5
        ),
        "seqused_k without varlen": lambda: flashattn.attention_forward(q, k, v, seqused_k=np.zeros(2, np.int32)),
    }


@pytest.mark.parametrize("rule", list(python_rule_calls(np.random.default_rng(0))))
def test_python_validation_rules(rule, rng):
    with pytest.raises(ValueError):
        python_rule_calls(rng)[rule]()


def library_rule_calls(rng):
    """Rules the library checks (flashattn::InvalidArgument): ValueError naming the argument."""
    q, k, v = make_qkv(rng)
    qv, kv, cu_q, cu_k = varlen_inputs(rng, [4, 5], [6, 3])
    return {
        "k: head_dim": lambda: flashattn.flash_attn_func(q, k[..., :16], v),
        "q: heads_q 3 is not a multiple": lambda: flashattn.flash_attn_func(q[:, :, :3], k, v),
        "q: head_dim 264": lambda: flashattn.flash_attn_func(*make_qkv(rng, head_dim=260)),
        "q: dtype float64": lambda: flashattn.flash_attn_func(q.astype(np.float64), k, v),
        "k: dtype": lambda: flashattn.flash_attn_func(q, k.astype(np.float16), v),
        "softcap": lambda: flashattn.flash_attn_func(q, k, v, softcap=-1.0),
        "window_left": lambda: flashattn.flash_attn_func(q, k, v, window_size=(-2, 0)),
        "alibi_slopes": lambda: flashattn.flash_attn_func(q, k, v, alibi_slopes=np.ones(3, np.float32)),
        "cu_seqlens_q: dtype": lambda: flashattn.flash_attn_varlen_kvpacked_func(
            qv, kv, cu_q.astype(np.int64), cu_k, 5, 6
        ),
        "max_seqlen_k": lambda: flashattn.flash_attn_varlen_kvpacked_func(qv, kv, cu_q, cu_k, 5, 5),
        "out: shape": lambda: flashattn.attention_forward(q, k, v, out=poisoned((2, 19, 4, 16), np.float32)),
        "cu_seqlens_k: is required": lambda: flashattn.attention_forward(
            qv, kv[:, 0], kv[:, 1], cu_seqlens_q=cu_q, max_seqlen_q=5, max_seqlen_k=6
        ),
        "alibi_slopes: has 5 dimensions": lambda: flashattn.flash_attn_func(
            q, k, v, alibi_slopes=np.ones((1, 1, 1, 1, 4), np.float32)
        ),
    }


@pytest.mark.parametrize("message", list(library_rule_calls(np.random.default_rng(0))))
def test_library_rules_raise_value_error(message, rng):
    with pytest.raises(ValueError, match=message):
        library_rule_calls(rng)[message]()


def test_failed_call_writes_nothing(rng):
    q, k, v = make_qkv(rng)
    out, lse = poisoned((2, 19, 4, 32), np.float32), poisoned((2, 4, 19), np.float32)
    with pytest.raises(ValueError, match="window_right"):
        flashattn.attention_forward(q, k, v, out=out, softmax_lse=lse, causal=True, window_size=(-1, 4))
    assert np.isnan(out).all() and np.isnan(lse).all()


@pytest.mark.skipif(ml_dtypes is None, reason=NO_BFLOAT16_REASON)
def test_fp8_is_not_implemented(rng):
    """fp8 is a valid dtype the library reserves (flashattn::NotSupported): NotImplementedError."""
    q, k, v = (x.astype(ml_dtypes.float8_e4m3fn) for x in make_qkv(rng))
    with pytest.raises(NotImplementedError, match="fp8"):
        flashattn.attention_forward(
            q, k, v, out=np.empty(q.shape, q.dtype), softmax_lse=np.empty((2, 4, 19), np.float32)
        )


def test_array_types(rng):
    q, k, v = make_qkv(rng)
    with pytest.raises(TypeError, match="NumPy arrays, CuPy arrays or PyTorch tensors"):
        flashattn.flash_attn_func(q.tolist(), k, v)
    with pytest.raises(TypeError):
        flashattn.attention_forward(q, k, v, alibi_slopes=[0.1] * 4)


def test_build_info():
    info = flashattn.build_info()
    assert info["version"] == flashattn.__version__ and info["cpu_backend"] is True
    assert {"cuda_compiled", "cuda_kernels", "cpu_isa", "cpu_threads"} <= set(info)
    assert isinstance(flashattn.cuda_devices(), list)
