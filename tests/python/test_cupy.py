"""CuPy arrays (the CUDA backend): attention_forward, attention_backward and flash_attn_func on CuPy's current
stream, against the float64 reference. They run once the CUDA backend does, and skip with its message until
then; today's check is that CuPy arrays reach the library as CUDA views of the right device."""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the CuPy tests run where it is")

import flashattn  # noqa: E402
from conftest import check_results, on_backend, random_array  # noqa: E402


def _device_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


pytestmark = pytest.mark.skipif(_device_count() == 0, reason="CuPy sees no CUDA device")


def test_cuda_arrays_reach_the_library(rng):
    if flashattn.build_info()["cuda_kernels"]:
        pytest.skip("this build has CUDA kernels: the tests below run them")
    for index in range(_device_count()):
        with cupy.cuda.Device(index):
            q = cupy.asarray(random_array(rng, (1, 8, 2, 16), np.float16))
        with pytest.raises(NotImplementedError, match=f"cuda:{index}"):
            flashattn.attention_forward(q, q, q)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["float16", "float32"])
def test_forward_backward_on_a_side_stream(dtype, rng):
    shapes = [(2, 37, 4, 64), (2, 50, 2, 64), (2, 50, 2, 64), (2, 37, 4, 64)]
    host = [random_array(rng, shape, dtype) for shape in shapes]
    q, k, v, dout = (cupy.asarray(x) for x in host)
    options = dict(causal=True, softcap=6.0, window_size=(16, 0))
    with on_backend("cuda"), cupy.cuda.Stream(non_blocking=True) as stream:
        out = cupy.full(q.shape, cupy.nan, dtype)
        lse = cupy.full((2, 4, 37), cupy.nan, cupy.float32)
        flashattn.attention_forward(q, k, v, out=out, softmax_lse=lse, **options)
        dq, dk, dv = (cupy.full(x.shape, cupy.nan, dtype) for x in (q, k, v))
        flashattn.attention_backward(dout, q, k, v, out, lse, dq=dq, dk=dk, dv=dv, **options)
        stream.synchronize()
    results = dict(out=out, lse=lse, dq=dq, dk=dk, dv=dv)
    check_results(results, host, np.dtype(dtype), list(results), **options)


def test_flash_attn_func_returns_cupy_arrays(rng):
    host = [random_array(rng, (1, 24, 2, 20), np.float16) for _ in range(3)]
    with on_backend("cuda"):
        out, lse, _ = flashattn.flash_attn_func(*(cupy.asarray(x) for x in host), return_attn_probs=True)
    assert isinstance(out, cupy.ndarray) and isinstance(lse, cupy.ndarray)
    check_results(dict(out=out, lse=lse), host, np.dtype(np.float16), ["out", "lse"])
