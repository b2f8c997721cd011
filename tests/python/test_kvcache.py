"""flash_attn_with_kvcache and merge_attention_states against the float64 NumPy reference
(reference_kvcache.py): every output element under the tolerance rule, the appended cache slots exactly (or
within an ulp of the dtype when rotated), every other cache slot unchanged. PyTorch tensors on the CPU and,
where torch sees a GPU, the same grid in fp16/bf16 on CUDA plus a CUDA graph capture; NumPy arrays;
torch.compile(fullgraph=True) of the in-place append; validation errors as ValueError."""

import inspect
from dataclasses import dataclass, replace
from typing import Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the KV-cache tests run where it is")

import flashattn  # noqa: E402
import reference  # noqa: E402
import reference_kvcache  # noqa: E402
from conftest import check_close, dtype_name, on_backend, random_array, to_float64  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
NO_CUDA_REASON = "torch sees no CUDA device"

# A dtype's unit in the last place at 1 (fp32, fp16, bf16), for the cache check of rotated keys.
EPSILONS = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
SMALLEST_NORMALS = {"float32": 2.0**-126, "float16": 2.0**-14, "bfloat16": 2.0**-126}


@dataclass(frozen=True)
class Case:
    name: str
    batch: int = 3
    seqlen_q: int = 1
    seqlen_new: int = 1  # -1: no k and v (nothing appended)
    heads: int = 4
    heads_kv: int = 4
    head_dim: int = 32
    head_dim_v: int = 32
    capacity: int = 40  # tokens a sequence can hold
    page_size: int = 0  # 0: contiguous cache
    causal: bool = False
    window_size: Tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    alibi: str = ""  # "", "head" (heads,), "batch" (batch, heads)
    rotary: str = ""  # "", "interleaved", "neox"
    rotary_dim: int = 0  # 0: head_dim
    leftpad: bool = False
    batch_idx: bool = False  # a larger cache, rows picked by cache_batch_idx
    int_seqlens: bool = False  # cache_seqlens as an int

    @property
    def appends(self):
        return self.seqlen_new >= 0


CASES = [
    Case("decode"),
    Case("no_append", seqlen_new=-1),
    Case("append_0", seqlen_new=0),
    Case("append_5_gqa4", seqlen_new=5, heads=8, heads_kv=2),
    Case("mqa_head_dim_v", heads=4, heads_kv=1, head_dim_v=16),
    Case("causal_q3_new3", seqlen_q=3, seqlen_new=3, causal=True),
    Case("causal_q3_new5", seqlen_q=3, seqlen_new=5, causal=True, heads=8, heads_kv=2),
    Case("causal_q3_no_append", seqlen_q=3, seqlen_new=-1, causal=True),
    Case("paged_1", page_size=1, seqlen_new=5, heads=8, heads_kv=2),
    Case("paged_16", page_size=16, capacity=48, seqlen_q=3, seqlen_new=3, causal=True),
    Case("paged_64", page_size=64, capacity=128, seqlen_new=5),
    Case("paged_16_rotary_leftpad", page_size=16, capacity=48, seqlen_new=1, rotary="interleaved", leftpad=True),
    Case("rotary_interleaved", seqlen_new=5, rotary="interleaved"),
    Case("rotary_neox", seqlen_new=5, rotary="neox"),
    Case("rotary_causal_q3", seqlen_q=3, seqlen_new=3, causal=True, rotary="neox", heads=8, heads_kv=2),
    Case("rotary_dim_16_interleaved", head_dim=64, head_dim_v=64, rotary="interleaved", rotary_dim=16, seqlen_new=5),
    Case("rotary_dim_16_neox_window", head_dim=64, head_dim_v=64, rotary="neox", rotary_dim=16, window_size=(6, 0)),
    Case("leftpad", seqlen_q=3, seqlen_new=3, causal=True, leftpad=True),
    Case("batch_idx", seqlen_new=5, batch_idx=True, heads=8, heads_kv=2),
    Case("window", seqlen_q=3, seqlen_new=5, window_size=(7, 1)),
    Case("softcap", seqlen_new=5, softcap=4.0),
    Case("alibi_head_causal", seqlen_q=3, seqlen_new=3, causal=True, alibi="head"),
    Case("alibi_batch", seqlen_new=1, alibi="batch"),
    Case("int_seqlens", seqlen_new=5, int_seqlens=True),
    Case("int_seqlens_paged", page_size=16, capacity=48, seqlen_new=1, int_seqlens=True, batch=2),
]


def rotary_tables(capacity, rotary_dim):
    """cos and sin (capacity, rotary_dim / 2) of the usual RoPE frequencies, float32."""
    inverse_frequencies = 10000.0 ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
    angles = np.arange(capacity)[:, None] * inverse_frequencies[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def make_inputs(case, rng):
    """The call's arguments as NumPy arrays (floats in float32, indices in int32) and the options."""
    c = case
    pages_per_sequence = -(-c.capacity // c.page_size) if c.page_size else 0
    capacity = pages_per_sequence * c.page_size if c.page_size else c.capacity
    new = max(c.seqlen_new, 0)
    if c.page_size:
        rows, slots = c.batch * pages_per_sequence + 3, c.page_size  # a few spare pages
    else:
        rows, slots = (c.batch + 2 if c.batch_idx else c.batch), capacity
    arrays = dict(
        q=rng.standard_normal((c.batch, c.seqlen_q, c.heads, c.head_dim)).astype(np.float32),
        k_cache=rng.standard_normal((rows, slots, c.heads_kv, c.head_dim)).astype(np.float32),
        v_cache=rng.standard_normal((rows, slots, c.heads_kv, c.head_dim_v)).astype(np.float32),
    )
    if c.appends:
        arrays["k"] = rng.standard_normal((c.batch, new, c.heads_kv, c.head_dim)).astype(np.float32)
        arrays["v"] = rng.standard_normal((c.batch, new, c.heads_kv, c.head_dim_v)).astype(np.float32)
    leftpad = rng.integers(0, 6, c.batch) if c.leftpad else np.zeros(c.batch, np.int64)
    if c.int_seqlens:
        seqlens = np.full(c.batch, int(rng.integers(0, capacity - new + 1)))
    else:  # one empty sequence, one full one, the rest anywhere
        seqlens = rng.integers(leftpad, capacity - new + 1)
        seqlens[0] = leftpad[0]
        seqlens[-1] = capacity - new
    arrays["cache_seqlens"] = seqlens.astype(np.int32)
    if c.leftpad:
        arrays["cache_leftpad"] = leftpad.astype(np.int32)
    if c.batch_idx:
        arrays["cache_batch_idx"] = rng.permutation(rows)[: c.batch].astype(np.int32)
    if c.page_size:
        pages = rng.permutation(rows)[: c.batch * pages_per_sequence]  # shuffled, a few left out
        arrays["block_table"] = pages.reshape(c.batch, -1).astype(np.int32)
    if c.rotary:
        arrays["rotary_cos"], arrays["rotary_sin"] = rotary_tables(capacity, c.rotary_dim or c.head_dim)
    options = dict(causal=c.causal, window_size=c.window_size, softcap=c.softcap)
    if c.rotary:
        options["rotary_interleaved"] = c.rotary == "interleaved"
    if c.alibi:
        shape = (c.heads,) if c.alibi == "head" else (c.batch, c.heads)
        options["alibi_slopes"] = rng.uniform(0.05, 0.5, shape).astype(np.float32)
    return arrays, options


def to_torch(arrays, options, dtype, device):
    """Floats in `dtype` (the rotary tables too: they take q's dtype), indices int32, slopes fp32."""
    tensors = {
        name: torch.from_numpy(x).to(device=device, dtype=None if x.dtype == np.int32 else dtype)
        for name, x in arrays.items()
    }
    options = {name: torch.from_numpy(x).to(device) if isinstance(x, np.ndarray) else x for name, x in options.items()}
    return tensors, options


def ulp(values, dtype):
    """The dtype's spacing at |values|."""
    name = dtype_name(dtype)
    magnitude = np.maximum(np.abs(values), SMALLEST_NORMALS[name])
    return EPSILONS[name] * 2.0 ** np.floor(np.log2(magnitude))


def check_cache(name, after, before, ref, appended, dtype, rotated=None):
    """Slots not appended: unchanged, bit for bit. Appended ones: exactly the reference's, or within 1 ulp of
    the dtype plus the fp32 rounding of a rotation (`rotated`: (rotary_dim, interleaved), for keys)."""
    after, before = to_float64(after), to_float64(before)
    assert not np.isnan(after).any(), f"{name}: NaN in the cache"
    untouched = ~appended
    assert np.array_equal(after[untouched], before[untouched]), f"{name}: slots that were not appended changed"
    if rotated is None:
        assert np.array_equal(after[appended], ref[appended]), f"{name}: appended slots differ from the new tokens"
        return
    tolerance = ulp(ref, dtype) + 2.0**-22 * reference_kvcache.pair_norm(ref, *rotated)
    error = np.abs(after - ref)[appended]
    assert (error <= tolerance[appended]).all(), f"{name}: rotated keys off by {error.max():.3g}"


def index_array(x):
    return x.cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def check_kvcache_call(case, results, after, arrays, options, dtype):
    """out and lse under the tolerance rule, and the caches in `after` (the call's arguments), from the inputs
    in `arrays` (the caches as they were before the call), in float64."""
    inputs = {name: index_array(x) if name in INDEX_ARRAYS else to_float64(x) for name, x in arrays.items()}
    numpy_options = {name: to_float64(x) if hasattr(x, "shape") else x for name, x in options.items()}
    rotary_interleaved = numpy_options.pop("rotary_interleaved", True)  # flash-attn's default
    numpy_options.update(inputs, rotary_interleaved=rotary_interleaved)
    ref64 = reference_kvcache.kvcache_attention(**numpy_options)
    naive = reference_kvcache.kvcache_attention(**numpy_options, precision=reference.Precision(dtype_name(dtype)))
    for name in results:
        check_close(name, results[name], ref64[name], naive[name], dtype)
    rotated = ((case.rotary_dim or case.head_dim), rotary_interleaved) if case.rotary else None
    check_cache("k_cache", after["k_cache"], inputs["k_cache"], ref64["k_cache"], ref64["appended"], dtype, rotated)
    check_cache("v_cache", after["v_cache"], inputs["v_cache"], ref64["v_cache"], ref64["appended"], dtype)


INDEX_ARRAYS = ("cache_seqlens", "cache_leftpad", "cache_batch_idx", "block_table")


def run_torch_case(case, dtype, device, rng):
    arrays, options = make_inputs(case, rng)
    tensors, options = to_torch(arrays, options, dtype, device)
    before = {name: x.clone() for name, x in tensors.items()}
    call = dict(tensors)
    if case.int_seqlens:
        call["cache_seqlens"] = int(arrays["cache_seqlens"][0])
    with on_backend(device):
        out, lse = flashattn.flash_attn_with_kvcache(**call, return_softmax_lse=True, **options)
    assert out.dtype == dtype and out.device == tensors["q"].device and lse.dtype == torch.float32
    assert out.shape == tensors["q"].shape[:-1] + tensors["v_cache"].shape[-1:]
    assert lse.shape == (case.batch, case.heads, case.seqlen_q)
    check_kvcache_call(case, dict(out=out, lse=lse), tensors, before, options, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_kvcache_cpu(case, dtype, rng):
    run_torch_case(case, dtype, "cpu", rng)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_kvcache_cuda(case, dtype, rng):
    run_torch_case(case, dtype, "cuda", rng)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
@pytest.mark.parametrize("num_splits", [1, 3, 0])
def test_kvcache_cuda_num_splits(num_splits, rng):
    """Split-KV (the workspace the call allocates) against unsplit runs and the reference, long caches."""
    case = Case("long", batch=2, seqlen_q=1, seqlen_new=1, heads=8, heads_kv=2, head_dim=128, head_dim_v=128,
                capacity=2048, page_size=64, causal=True)
    arrays, options = make_inputs(case, rng)
    tensors, options = to_torch(arrays, options, torch.bfloat16, "cuda")
    before = {name: x.clone() for name, x in tensors.items()}
    with on_backend("cuda"):
        out, lse = flashattn.flash_attn_with_kvcache(**tensors, num_splits=num_splits, return_softmax_lse=True,
                                                     **options)
    check_kvcache_call(case, dict(out=out, lse=lse), tensors, before, options, torch.bfloat16)


def test_returns_out_alone_and_no_gradient(rng):
    """Without return_softmax_lse the result is out alone, as in flash-attn; outputs never require grad."""
    arrays, options = make_inputs(Case("plain", seqlen_new=2), rng)
    tensors, _ = to_torch(arrays, options, torch.float32, "cpu")
    tensors["q"].requires_grad_()
    version = tensors["k_cache"]._version
    out = flashattn.flash_attn_with_kvcache(**tensors)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    assert tensors["k_cache"]._version > version  # the in-place write is visible to autograd's bookkeeping


def test_eager_path_inference_mode_and_dispatch_modes(rng):
    """Plain eager calls skip the dispatcher; they must also work on inference tensors (no version counter),
    and under a dispatch mode the call goes through the custom op, which the mode sees."""
    arrays, options = make_inputs(Case("eager", seqlen_new=2), rng)
    tensors, _ = to_torch(arrays, options, torch.float32, "cpu")
    expected = flashattn.flash_attn_with_kvcache(**{name: x.clone() for name, x in tensors.items()})
    with torch.inference_mode():
        inference = {name: x.clone() for name, x in tensors.items()}
        torch.testing.assert_close(flashattn.flash_attn_with_kvcache(**inference), expected, rtol=0, atol=0)

    seen = []

    class Recorder(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with Recorder():
        result = flashattn.flash_attn_with_kvcache(**{name: x.clone() for name, x in tensors.items()})
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    assert torch.ops.flashattn.forward_kvcache.default in seen


NUMPY_CASES = ("append_5_gqa4", "paged_16", "rotary_neox", "leftpad", "batch_idx", "int_seqlens", "alibi_batch")


def test_workspace_allocation_path(rng, monkeypatch):
    """The split-KV workspace path of GPUs, run on the CPU: the size comes from the library (0 on CPUs), and a
    workspace the framework allocates reaches the call (the CPU backend accepts and ignores it). The size is
    asked once per call signature (shapes, num_splits, device), again when a shape or num_splits changes."""
    case = Case("workspace", seqlen_new=2, page_size=16, capacity=32)
    arrays, options = make_inputs(case, rng)
    tensors, _ = to_torch(arrays, options, torch.float32, "cpu")
    ext = flashattn._calls._ext
    exported = {name: torch.utils.dlpack.to_dlpack(x) for name, x in tensors.items()}
    cache = [exported.pop(name) for name in ("q", "k_cache", "v_cache", "cache_seqlens")]
    size = ext.kvcache_workspace_size(*cache, **exported)
    assert size == 0
    expected = flashattn.flash_attn_with_kvcache(**{name: x.clone() for name, x in tensors.items()})
    sizes = []
    monkeypatch.setattr(flashattn._calls, "_WORKSPACE_SIZES", {})
    monkeypatch.setattr(flashattn._arrays.TorchTensors, "cuda_device", staticmethod(lambda x: 0))
    monkeypatch.setattr(ext, "kvcache_workspace_size", lambda *args, **kwargs: sizes.append(kwargs) or 1000)
    torch.testing.assert_close(flashattn.flash_attn_with_kvcache(**tensors), expected, rtol=0, atol=0)
    assert len(sizes) == 1 and sizes[0]["block_table"] is not None and sizes[0]["num_splits"] == 0
    # The same signature again (new contents): the size is not asked again.
    again = {name: x.clone() for name, x in tensors.items()}
    flashattn.flash_attn_with_kvcache(**again)
    assert len(sizes) == 1
    # A new signature: num_splits, then a shorter block table (a smaller capacity).
    flashattn.flash_attn_with_kvcache(**{name: x.clone() for name, x in tensors.items()}, num_splits=3)
    assert len(sizes) == 2 and sizes[1]["num_splits"] == 3
    narrower = {name: x.clone() for name, x in tensors.items()}
    narrower["block_table"] = narrower["block_table"][:, :1].contiguous()
    narrower["cache_seqlens"] = torch.clamp(narrower["cache_seqlens"], max=case.page_size - case.seqlen_new)
    flashattn.flash_attn_with_kvcache(**narrower)
    assert len(sizes) == 3 and sizes[2]["block_table"] is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("case", [c for c in CASES if c.name in NUMPY_CASES], ids=lambda case: case.name)
def test_kvcache_numpy(case, dtype, rng):
    """NumPy arrays: the same call, results as NumPy arrays, the caches updated in place."""
    arrays, options = make_inputs(case, rng)
    arrays = {name: x if x.dtype == np.int32 else x.astype(dtype) for name, x in arrays.items()}
    before = {name: x.copy() for name, x in arrays.items()}
    call = dict(arrays)
    if case.int_seqlens:
        call["cache_seqlens"] = int(arrays["cache_seqlens"][0])
    out, lse = flashattn.flash_attn_with_kvcache(**call, return_softmax_lse=True, **options)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and lse.dtype == np.float32
    check_kvcache_call(case, dict(out=out, lse=lse), arrays, before, options, np.dtype(dtype))


def test_read_only_numpy_cache(rng):
    """A read-only NumPy cache is attended to as is; appending to it is a ValueError."""
    arrays, options = make_inputs(Case("read_only", seqlen_new=1), rng)
    for name in ("k_cache", "v_cache"):
        arrays[name].flags.writeable = False
    k, v = arrays.pop("k"), arrays.pop("v")
    out = flashattn.flash_attn_with_kvcache(**arrays)
    assert isinstance(out, np.ndarray) and not np.isnan(out).any()
    with pytest.raises(ValueError, match="read-only"):
        flashattn.flash_attn_with_kvcache(**arrays, k=k, v=v)


def test_cache_seqlens_none_means_full_cache(rng):
    """None: every sequence holds the cache's capacity (flash-attn's meaning); refused with k and v."""
    case = Case("full", seqlen_new=-1, capacity=24)
    arrays, options = make_inputs(case, rng)
    tensors, _ = to_torch(arrays, options, torch.float32, "cpu")
    full = dict(tensors, cache_seqlens=torch.full((case.batch,), 24, dtype=torch.int32))
    expected = flashattn.flash_attn_with_kvcache(**full)
    torch.testing.assert_close(flashattn.flash_attn_with_kvcache(**dict(tensors, cache_seqlens=None)), expected,
                               rtol=0, atol=0)
    k = torch.zeros(case.batch, 1, case.heads_kv, case.head_dim)
    with pytest.raises(ValueError, match="cache_seqlens"):
        flashattn.flash_attn_with_kvcache(tensors["q"], tensors["k_cache"], tensors["v_cache"], k, k)


FLASH_ATTN_SIGNATURE = [
    ("q", inspect.Parameter.empty),
    ("k_cache", inspect.Parameter.empty),
    ("v_cache", inspect.Parameter.empty),
    ("k", None),
    ("v", None),
    ("rotary_cos", None),
    ("rotary_sin", None),
    ("cache_seqlens", None),
    ("cache_batch_idx", None),
    ("cache_leftpad", None),
    ("block_table", None),
    ("softmax_scale", None),
    ("causal", False),
    ("window_size", (-1, -1)),
    ("softcap", 0.0),
    ("rotary_interleaved", True),
    ("alibi_slopes", None),
    ("num_splits", 0),
    ("return_softmax_lse", False),
]


def test_signature_matches_flash_attn():
    parameters = inspect.signature(flashattn.flash_attn_with_kvcache).parameters.values()
    assert [(p.name, p.default) for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD] == FLASH_ATTN_SIGNATURE
    assert {p.name: p.default for p in parameters if p.kind == p.KEYWORD_ONLY} == {"causal_alignment": "bottom_right"}
    assert {"flash_attn_with_kvcache", "merge_attention_states"} <= set(flashattn.__all__)


def validation_arguments(rng):
    arrays, options = make_inputs(Case("rules", seqlen_new=2, rotary="interleaved"), rng)
    tensors, _ = to_torch(arrays, options, torch.float16, "cpu")
    return tensors


VALIDATION_RULES = {
    "cache_seqlens int64": (lambda t: dict(t, cache_seqlens=t["cache_seqlens"].long()), "cache_seqlens"),
    "rotary without k": (lambda t: dict(t, k=None, v=None, cache_seqlens=t["cache_seqlens"]), "rotary_cos"),
    "block_table with cache_batch_idx": (
        lambda t: dict(
            t,
            block_table=torch.arange(t["q"].shape[0], dtype=torch.int32)[:, None],
            cache_batch_idx=torch.arange(t["q"].shape[0], dtype=torch.int32),
        ),
        "cache_batch_idx",
    ),
    "k without v": (lambda t: dict(t, v=None), "k_new|v_new|v"),
    "head dim 20": (
        lambda t: dict(t, q=t["q"][..., :20], k_cache=t["k_cache"][..., :20], k=t["k"][..., :20], rotary_cos=None,
                       rotary_sin=None),
        "in place",
    ),
    "window_size": (lambda t: dict(t, window_size=(3,)), "window_size"),
    "causal_alignment": (lambda t: dict(t, causal_alignment="middle"), "causal_alignment"),
    "overfull cache": (lambda t: dict(t, cache_seqlens=torch.full_like(t["cache_seqlens"], 39)), "cache_seqlens"),
}


@pytest.mark.parametrize("rule", VALIDATION_RULES)
def test_validation_errors(rule, rng):
    """Broken rules raise ValueError, the library's (InvalidArgument) and the Python layer's alike, and leave
    the cache as it was."""
    tensors = validation_arguments(rng)
    arguments = VALIDATION_RULES[rule][0](tensors)
    k_cache = tensors["k_cache"].clone()
    with pytest.raises(ValueError, match=VALIDATION_RULES[rule][1]):
        flashattn.flash_attn_with_kvcache(**arguments)
    assert torch.equal(tensors["k_cache"], k_cache)


def decode_step(q, k_cache, v_cache, k, v, cache_seqlens, rotary_cos, rotary_sin):
    """One decoding step of a model: rotary append and attention, then a use of the output."""
    out = flashattn.flash_attn_with_kvcache(
        q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_seqlens=cache_seqlens, causal=True
    )
    return out * 2.0


def test_torch_compile_fullgraph_append(rng):
    """fullgraph=True makes a graph break an error; the compiled step must write the cache as eager does."""
    torch._dynamo.reset()
    arrays, _ = make_inputs(Case("compile", seqlen_q=2, seqlen_new=2, causal=True, rotary="interleaved"), rng)
    tensors, _ = to_torch(arrays, {}, torch.bfloat16, "cpu")
    names = ("q", "k_cache", "v_cache", "k", "v", "cache_seqlens", "rotary_cos", "rotary_sin")
    eager = [tensors[name].clone() for name in names]
    compiled = [tensors[name].clone() for name in names]
    expected = decode_step(*eager)
    result = torch.compile(decode_step, fullgraph=True)(*compiled)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    torch.testing.assert_close(compiled[1], eager[1], rtol=0, atol=0)
    torch.testing.assert_close(compiled[2], eager[2], rtol=0, atol=0)
    assert not torch.equal(compiled[1], tensors["k_cache"])  # the append happened


def test_opcheck(rng):
    """torch.library.opcheck: the schema's mutations (k_cache, v_cache written; nothing else), the fake
    implementation, and dispatch through AOT autograd."""
    arrays, options = make_inputs(Case("opcheck", seqlen_q=2, seqlen_new=2, causal=True, rotary="neox"), rng)
    t, _ = to_torch(arrays, options, torch.float32, "cpu")
    arguments = (t["q"], t["k_cache"], t["v_cache"], t["cache_seqlens"], t["k"], t["v"], t["rotary_cos"],
                 t["rotary_sin"], None, None, None, None, 0.2, True, "bottom_right", -1, 0, 0.0, False, 0)
    torch.library.opcheck(torch.ops.flashattn.forward_kvcache.default, arguments)
    out_a, out_b = (torch.randn(2, 3, 4, 16) for _ in range(2))
    lse_a, lse_b = (torch.randn(2, 4, 3) for _ in range(2))
    merge_arguments = (out_a, lse_a, out_b, lse_b, torch.empty_like(out_a), torch.empty_like(lse_a))
    torch.library.opcheck(torch.ops.flashattn.merge_attention_states.default, merge_arguments)


def merge_inputs(rng, packed, dtypes):
    """Random attention states, with some rows -inf on one side and some on both."""
    out_shape, lse_shape = ((20, 4, 24), (4, 20)) if packed else ((2, 10, 4, 24), (2, 4, 10))
    out_a, out_b = (random_array(rng, out_shape, np.float32) for _ in range(2))
    lse_a, lse_b = ((rng.standard_normal(lse_shape) * 3).astype(np.float32) for _ in range(2))
    lse_a.reshape(-1)[::7] = -np.inf
    lse_b.reshape(-1)[::5] = -np.inf  # every 35th on both sides
    a, b = (torch.from_numpy(x).to(dtype) for x, dtype in zip((out_a, out_b), dtypes))
    return a, torch.from_numpy(lse_a), b, torch.from_numpy(lse_b)


MERGE_DTYPES = {
    "fp32": (torch.float32, torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16, torch.bfloat16),
    "fp32_to_fp16": (torch.float32, torch.float32, torch.float16),
    "mixed": (torch.float16, torch.float32, torch.bfloat16),
}


def check_merge(out, lse, out_a, lse_a, out_b, lse_b):
    inputs = [to_float64(x) for x in (out_a, lse_a, out_b, lse_b)]
    ref_out, ref_lse = reference_kvcache.merge_attention_states(*inputs)
    name = dtype_name(out.dtype)
    naive_out, naive_lse = reference_kvcache.merge_attention_states(*inputs, precision=reference.Precision(name))
    check_close("out", out, ref_out, naive_out, out.dtype)
    check_close("lse", lse, ref_lse, naive_lse, torch.float32)
    both = np.isneginf(inputs[1]) & np.isneginf(inputs[3])
    assert both.any() and np.isneginf(to_float64(lse)[both]).all()


@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
@pytest.mark.parametrize("dtypes", MERGE_DTYPES)
def test_merge_attention_states(dtypes, packed, rng):
    dtype_a, dtype_b, dtype_out = MERGE_DTYPES[dtypes]
    out_a, lse_a, out_b, lse_b = merge_inputs(rng, packed, (dtype_a, dtype_b))
    out = torch.full(out_a.shape, float("nan"), dtype=dtype_out)
    lse = torch.full(lse_a.shape, float("nan"))
    returned = flashattn.merge_attention_states(out_a, lse_a, out_b, lse_b, out=out, lse=lse)
    assert returned[0] is out and returned[1] is lse
    check_merge(out, lse, out_a, lse_a, out_b, lse_b)
    allocated, allocated_lse = flashattn.merge_attention_states(out_a, lse_a, out_b, lse_b)
    assert allocated.dtype == dtype_a and allocated_lse.dtype == torch.float32
    check_merge(allocated, allocated_lse, out_a, lse_a, out_b, lse_b)


def test_merge_in_place_and_numpy(rng):
    """out = out_a and lse = lse_a in place; NumPy arrays too."""
    out_a, lse_a, out_b, lse_b = merge_inputs(rng, False, (torch.float32, torch.float32))
    originals = [x.clone() for x in (out_a, lse_a, out_b, lse_b)]
    out, lse = flashattn.merge_attention_states(out_a, lse_a, out_b, lse_b, out=out_a, lse=lse_a)
    assert out is out_a and lse is lse_a
    check_merge(out, lse, *originals)
    arrays = [x.numpy() for x in originals]
    out, lse = flashattn.merge_attention_states(*arrays)
    assert isinstance(out, np.ndarray)
    check_merge(out, lse, *arrays)


def test_merge_matches_attention_over_the_union(rng):
    """Attention over a cache split in two halves, merged, is the attention over the whole cache."""
    case = Case("halves", batch=2, seqlen_q=3, seqlen_new=-1, capacity=32, int_seqlens=True)
    arrays, options = make_inputs(case, rng)
    t, _ = to_torch({name: arrays[name] for name in ("q", "k_cache", "v_cache")}, {}, torch.float32, "cpu")
    halves = [
        flashattn.flash_attn_with_kvcache(t["q"], cache[0], cache[1], cache_seqlens=16, return_softmax_lse=True)
        for cache in ((t["k_cache"][:, :16], t["v_cache"][:, :16]), (t["k_cache"][:, 16:], t["v_cache"][:, 16:]))
    ]
    out, lse = flashattn.merge_attention_states(*halves[0], *halves[1])
    whole_out, whole_lse = flashattn.flash_attn_with_kvcache(**t, cache_seqlens=32, return_softmax_lse=True)
    torch.testing.assert_close(out, whole_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, whole_lse, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_merge_cuda(rng):
    out_a, lse_a, out_b, lse_b = (x.cuda() for x in merge_inputs(rng, False, (torch.bfloat16, torch.float32)))
    with on_backend("cuda"):
        out, lse = flashattn.merge_attention_states(out_a, lse_a, out_b, lse_b)
    check_merge(out, lse, out_a, lse_a, out_b, lse_b)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_cuda_graph_capture_and_replay(rng):
    """A decoding step captured in a CUDA graph (out, lse and the split-KV workspace from torch's allocator),
    replayed after new q, k, v and cache_seqlens are copied into its static inputs."""
    case = Case("graph", batch=4, seqlen_new=1, heads=8, heads_kv=2, head_dim=128, head_dim_v=128, capacity=1024,
                page_size=64, rotary="neox", causal=True)
    arrays, options = make_inputs(case, rng)
    static, options = to_torch(arrays, options, torch.float16, "cuda")

    def step():
        return flashattn.flash_attn_with_kvcache(**static, return_softmax_lse=True, **options)

    with on_backend("cuda"):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()  # warm-up on a side stream, as torch.cuda.graphs asks (it appends at the same slots again)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, lse = step()

    fresh, _ = make_inputs(case, rng)
    fresh_tensors, _ = to_torch(fresh, {}, torch.float16, "cuda")
    for name in ("q", "k", "v", "cache_seqlens"):
        static[name].copy_(fresh_tensors[name])
    before = {name: x.clone() for name, x in static.items()}
    graph.replay()
    torch.cuda.synchronize()
    check_kvcache_call(case, dict(out=out, lse=lse), static, before, options, torch.float16)


def test_causal_top_left(rng):
    """causal_alignment="top_left" (beyond flash-attn): query i sees the sequence's keys j <= i."""
    case = replace(next(c for c in CASES if c.name == "causal_q3_new3"), name="top_left")
    arrays, options = make_inputs(case, rng)
    tensors, options = to_torch(arrays, options, torch.float32, "cpu")
    before = {name: x.clone() for name, x in tensors.items()}
    options["causal_alignment"] = "top_left"
    out, lse = flashattn.flash_attn_with_kvcache(**tensors, return_softmax_lse=True, **options)
    check_kvcache_call(case, dict(out=out, lse=lse), tensors, before, options, torch.float32)
