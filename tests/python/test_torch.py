"""flash-attn's functions on PyTorch tensors: autograd gradients against the float64 reference, the custom ops
under torch.library.opcheck and torch.compile(fullgraph=True), and CUDA tensors (the caller's device and
stream reach the library; the CUDA tests run once the CUDA backend does, and skip with its message until
then)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the torch tests run where it is")

import flashattn  # noqa: E402
from conftest import check_results, on_backend, to_float64  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
NO_CUDA_REASON = "torch sees no CUDA device"
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_tensor(generator, shape, dtype, device, requires_grad=False):
    values = torch.randn(shape, generator=generator, dtype=torch.float32).to(dtype=dtype, device=device)
    return values.requires_grad_(requires_grad)


@pytest.fixture
def generator(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def check_attention(results, q, k, v, dout, dtype, **options):
    """out, lse and the gradients in `results` against the reference, computed from the same inputs."""
    inputs = tuple(to_float64(x) for x in (q, k, v, dout))
    numpy_options = {name: to_float64(value) if torch.is_tensor(value) else value for name, value in options.items()}
    check_results(results, inputs, dtype, list(results), **numpy_options)


AUTOGRAD_CASES = {
    "gqa_odd_sizes": dict(shape=(2, 13, 37, 6, 2, 40, 40), options={}),
    "causal_bottom_right": dict(shape=(1, 20, 45, 4, 4, 32, 32), options=dict(causal=True)),
    "causal_top_left_window": dict(
        shape=(2, 40, 25, 2, 1, 64, 64), options=dict(causal=True, causal_alignment="top_left", window_size=(7, 0))
    ),
    "softcap_alibi": dict(shape=(2, 24, 24, 4, 2, 32, 32), options=dict(softcap=4.0, alibi="per_batch")),
    "padded_head_dim": dict(shape=(2, 17, 17, 2, 2, 20, 20), options=dict(window_size=(4, 4))),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", AUTOGRAD_CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_autograd(case, device, dtype, generator):
    batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim, head_dim_v = AUTOGRAD_CASES[case]["shape"]
    options = dict(AUTOGRAD_CASES[case]["options"])
    if options.pop("alibi", None):
        options["alibi_slopes"] = torch.rand((batch, heads), generator=generator).mul(0.3).to(device)
    q = random_tensor(generator, (batch, seqlen_q, heads, head_dim), dtype, device, requires_grad=True)
    k = random_tensor(generator, (batch, seqlen_k, heads_kv, head_dim), dtype, device, requires_grad=True)
    v = random_tensor(generator, (batch, seqlen_k, heads_kv, head_dim_v), dtype, device, requires_grad=True)
    dout = random_tensor(generator, (batch, seqlen_q, heads, head_dim_v), dtype, device)
    with on_backend(device):
        out, lse, probs = flashattn.flash_attn_func(q, k, v, return_attn_probs=True, **options)
        out.backward(dout)
    assert probs is None and not lse.requires_grad
    assert out.dtype == dtype and out.device == q.device and lse.dtype == torch.float32
    results = dict(out=out, lse=lse, dq=q.grad, dk=k.grad, dv=v.grad)
    check_attention(results, q, k, v, dout, dtype, **options)


@pytest.mark.parametrize("device", DEVICES)
def test_packed_autograd(device, generator):
    """The packed functions' gradients land in the packed tensors."""
    dtype = torch.bfloat16
    qkv = random_tensor(generator, (2, 19, 3, 4, 32), dtype, device, requires_grad=True)
    dout = random_tensor(generator, (2, 19, 4, 32), dtype, device)
    with on_backend(device):
        flashattn.flash_attn_qkvpacked_func(qkv, causal=True).backward(dout)
    q, k, v = qkv.detach().unbind(dim=2)
    dq, dk, dv = qkv.grad.unbind(dim=2)
    check_attention(dict(dq=dq, dk=dk, dv=dv), q, k, v, dout, dtype, causal=True)

    q = random_tensor(generator, (2, 11, 4, 32), dtype, device, requires_grad=True)
    kv = random_tensor(generator, (2, 19, 2, 2, 32), dtype, device, requires_grad=True)
    dout = random_tensor(generator, (2, 11, 4, 32), dtype, device)
    with on_backend(device):
        out = flashattn.flash_attn_kvpacked_func(q, kv, softcap=5.0)
        out.backward(dout)
    k, v = kv.detach().unbind(dim=2)
    dk, dv = kv.grad.unbind(dim=2)
    check_attention(dict(out=out, dq=q.grad, dk=dk, dv=dv), q, k, v, dout, dtype, softcap=5.0)


def varlen_offsets(lengths, device):
    return torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_varlen_autograd(device, dtype, generator):
    lengths_q, lengths_k = [9, 0, 21, 5], [12, 7, 21, 1]
    cu_q, cu_k = varlen_offsets(lengths_q, device), varlen_offsets(lengths_k, device)
    heads, heads_kv, head_dim = 4, 2, 24
    q = random_tensor(generator, (sum(lengths_q), heads, head_dim), dtype, device, requires_grad=True)
    kv = random_tensor(generator, (sum(lengths_k), 2, heads_kv, head_dim), dtype, device, requires_grad=True)
    dout = random_tensor(generator, q.shape, dtype, device)
    options = dict(causal=True)
    with on_backend(device):
        out, lse, _ = flashattn.flash_attn_varlen_kvpacked_func(
            q, kv, cu_q, cu_k, max(lengths_q), max(lengths_k), return_attn_probs=True, **options
        )
        out.backward(dout)
    assert lse.shape == (heads, sum(lengths_q))
    k, v = kv.detach().unbind(dim=1)
    dk, dv = kv.grad.unbind(dim=1)
    results = dict(out=out, lse=lse, dq=q.grad, dk=dk, dv=dv)
    check_attention(results, q, k, v, dout, dtype, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, **options)

    qkv = random_tensor(generator, (sum(lengths_k), 3, heads, head_dim), dtype, device, requires_grad=True)
    dout = random_tensor(generator, (sum(lengths_k), heads, head_dim), dtype, device)
    with on_backend(device):
        flashattn.flash_attn_varlen_qkvpacked_func(qkv, cu_k, max(lengths_k), window_size=(3, 2)).backward(dout)
    q, k, v = qkv.detach().unbind(dim=1)
    dq, dk, dv = qkv.grad.unbind(dim=1)
    check_attention(
        dict(dq=dq, dk=dk, dv=dv), q, k, v, dout, dtype, cu_seqlens_q=cu_k, cu_seqlens_k=cu_k, window_size=(3, 2)
    )


def attention_loss(q, k, v, cu_seqlens, max_seqlen):
    """A small model step: batched, packed and varlen attention, all differentiated."""
    batched = flashattn.flash_attn_func(q, k, v, causal=True, softcap=8.0)
    packed = flashattn.flash_attn_qkvpacked_func(torch.stack([q, k, v], dim=2), window_size=(3, 3))
    varlen = flashattn.flash_attn_varlen_func(
        q.flatten(0, 1),
        k.flatten(0, 1),
        v.flatten(0, 1),
        cu_seqlens,
        cu_seqlens,
        max_seqlen,
        max_seqlen,
        window_size=(4, 0),
    )
    return (batched.float().square().sum() + packed.float().mean() + varlen.float().sum()) / q.numel()


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device, generator):
    """fullgraph=True makes any graph break an error; the compiled step must match the eager one."""
    torch._dynamo.reset()
    tensors = [random_tensor(generator, (2, 16, 4, 32), torch.bfloat16, device) for _ in range(3)]
    cu_seqlens = varlen_offsets([16, 16], device)
    eager = [t.clone().requires_grad_() for t in tensors]
    compiled = [t.clone().requires_grad_() for t in tensors]
    with on_backend(device):
        attention_loss(*eager, cu_seqlens, 16).backward()
        step = torch.compile(attention_loss, fullgraph=True)
        step(*compiled, cu_seqlens, 16).backward()
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a.grad, b.grad)
    explanation = torch._dynamo.explain(attention_loss)(*compiled, cu_seqlens, 16)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def opcheck_arguments(generator, device, varlen):
    dtype = torch.bfloat16
    if varlen:
        cu = varlen_offsets([5, 11], device)
        shapes, seqlens = [(16, 4, 32), (16, 2, 32), (16, 2, 16)], (cu, cu, None, 11, 11)
        lse_shape = (4, 16)
    else:
        shapes, seqlens = [(2, 7, 4, 32), (2, 9, 2, 32), (2, 9, 2, 16)], (None, None, None, 0, 0)
        lse_shape = (2, 4, 7)
    q, k, v = (random_tensor(generator, shape, dtype, device, requires_grad=True) for shape in shapes)
    slopes = torch.full((4,), 0.1, device=device)
    options = (slopes, 0.2, True, "bottom_right", 3, 0, 2.0, False)
    forward_args = (q, k, v) + seqlens + options
    out = random_tensor(generator, q.shape[:-1] + v.shape[-1:], dtype, device)
    dout = random_tensor(generator, out.shape, dtype, device)
    lse = random_tensor(generator, lse_shape, torch.float32, device)
    backward_args = (dout, q.detach(), k.detach(), v.detach(), out, lse) + seqlens + options
    return forward_args, backward_args


@pytest.mark.parametrize("varlen", [False, True], ids=["batched", "varlen"])
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, varlen, generator):
    """torch.library.opcheck: schema, fake (meta) implementations, autograd registration, AOT dispatch."""
    forward_args, backward_args = opcheck_arguments(generator, device, varlen)
    with on_backend(device):  # opcheck wraps the library's errors: a plain call first, to skip on CUDA
        torch.ops.flashattn.forward.default(*forward_args)
    torch.library.opcheck(torch.ops.flashattn.forward.default, forward_args)
    torch.library.opcheck(torch.ops.flashattn.backward.default, backward_args)


def test_no_gradient_reaching_out(generator):
    """A consumer of out that returns no gradient for it: the backward op does not run, k and v get none."""

    class NoGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return None

    q, k, v = (random_tensor(generator, (1, 8, 2, 32), torch.float32, "cpu", requires_grad=True) for _ in range(3))
    out = flashattn.flash_attn_func(q, k, v)
    (NoGradient.apply(out).sum() + q.sum()).backward()
    torch.testing.assert_close(q.grad, torch.ones_like(q))
    assert k.grad is None and v.grad is None


def test_errors_through_torch(generator):
    q = random_tensor(generator, (1, 8, 2, 16), torch.float32, "cpu")
    with pytest.raises(NotImplementedError, match="dropout"):
        flashattn.flash_attn_func(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match="q: head_dim 264"):
        flashattn.flash_attn_func(*(random_tensor(generator, (1, 8, 2, 260), torch.float32, "cpu") for _ in range(3)))
    with pytest.raises(ValueError, match="dtype float64"):
        flashattn.flash_attn_func(q.double(), q.double(), q.double())
    with pytest.raises(NotImplementedError, match="fp8"):
        flashattn.attention_forward(*(q.to(torch.float8_e4m3fn) for _ in range(3)))
    with pytest.raises(TypeError, match="one framework"):
        flashattn.attention_forward(q, q.numpy(), q)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_cuda_tensors_reach_the_library(generator):
    """CUDA tensors go to the library as CUDA views of the right device: without CUDA kernels in this build
    the library itself answers NotImplementedError, naming the device."""
    if flashattn.build_info()["cuda_kernels"]:
        pytest.skip("this build has CUDA kernels: the CUDA tests above run them")
    for index in range(torch.cuda.device_count()):
        q = random_tensor(generator, (1, 8, 2, 16), torch.float16, f"cuda:{index}")
        with pytest.raises(NotImplementedError, match=f"cuda:{index}"):
            flashattn.flash_attn_func(q, q, q)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_cuda_side_stream_and_graph_capture(generator):
    """On a side stream and inside a CUDA graph: the launch goes to torch's current stream, outputs come
    from torch's allocator, and a replay recomputes from new inputs."""
    q, k, v = (random_tensor(generator, (2, 64, 4, 64), torch.float16, "cuda") for _ in range(3))
    with on_backend("cuda"):
        expected = flashattn.flash_attn_func(q, k, v, causal=True)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            on_side_stream = flashattn.flash_attn_func(q, k, v, causal=True)
            for _ in range(2):  # warm-up before capture, on the side stream as torch.cuda.graphs asks
                flashattn.flash_attn_func(q, k, v, causal=True)
        torch.cuda.current_stream().wait_stream(stream)
        torch.testing.assert_close(on_side_stream, expected, rtol=0, atol=0)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = flashattn.flash_attn_func(q, k, v, causal=True)
        q.copy_(torch.flip(q, dims=[1]))
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(captured, flashattn.flash_attn_func(q, k, v, causal=True), rtol=0, atol=0)
