"""Shared pieces of the Python tests: inputs, NaN-poisoned outputs, the tolerance rule, and what this machine
has (ml_dtypes, PyTorch, CuPy, a GPU). Every test compares against tests/python/reference.py."""

import contextlib
import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the reference module beside the tests

import reference  # noqa: E402

try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    ml_dtypes = None
    BFLOAT16 = None

NO_BFLOAT16_REASON = "ml_dtypes is not installed: NumPy has no bfloat16 without it"

# The tolerance rule of FlashAttention-3's tests, as the C++ suite applies it (tests/cpp/test_case.cpp):
#   max|result - ref64| <= 2 * max|naive - ref64| + atol,  atol = 2 * unit * (max|ref64| + 0.3),
# where naive is the same math done in the input precision (reference.Precision) and unit the dtype's
# rounding unit. fp32: 2^-14 rather than fp32's own unit, because the naive fp32 computation is not much
# worse than the library's, and either can be luckier by a few ulps.
RELATIVE_FACTOR = 2.0
ATOL_OFFSET = 0.3
ATOL_UNITS = {"float32": 2.0**-14, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def dtype_name(dtype):
    """ "float32", "float16" or "bfloat16", for NumPy and PyTorch dtypes alike."""
    text = str(dtype)
    return text.replace("torch.", "") if text.startswith("torch.") else np.dtype(dtype).name


def to_float64(x):
    """A NumPy float64 copy of a NumPy, CuPy or PyTorch array (bfloat16 included)."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().to("cpu").double().numpy()
    elif hasattr(x, "get") and not isinstance(x, np.ndarray):  # cupy
        x = x.get()
    return np.asarray(x).astype(np.float64)


def check_close(name, result, ref64, naive, dtype, unwritten=None):
    """The tolerance rule above, elementwise over the entries written; NaN never passes. `unwritten`: a
    boolean mask of entries the library must leave as they were (NaN-poisoned)."""
    result, ref64, naive = (to_float64(x) for x in (result, ref64, naive))
    assert result.shape == ref64.shape, f"{name}: shape {result.shape}, reference {ref64.shape}"
    if unwritten is not None:
        assert np.isnan(result[unwritten]).all(), f"{name}: entries that must not be written were"
        written = ~unwritten
        result, ref64, naive = result[written], ref64[written], naive[written]
    assert not np.isnan(result).any(), f"{name}: NaN at {np.argwhere(np.isnan(result))[:5].tolist()}"
    infinite = np.isinf(ref64) | np.isinf(result)
    assert np.array_equal(result[infinite], ref64[infinite]), f"{name}: infinities differ from the reference"
    result, ref64, naive = result[~infinite], ref64[~infinite], naive[~infinite]
    if result.size == 0:
        return
    error = np.abs(result - ref64).max()
    naive_error = np.abs(naive - ref64).max()
    atol = 2.0 * ATOL_UNITS[dtype_name(dtype)] * (np.abs(ref64).max() + ATOL_OFFSET)
    tolerance = RELATIVE_FACTOR * naive_error + atol
    worst = np.abs(result - ref64).argmax()
    assert error <= tolerance, (
        f"{name}: max|result - ref64| = {error:.3g} > 2 * max|naive - ref64| + atol = 2 * {naive_error:.3g} + "
        f"{atol:.3g}; worst: result {result[worst]!r}, ref64 {ref64[worst]!r}"
    )


def check_results(results, inputs, dtype, names, unwritten=None, **options):
    """Checks `results` (a dict of some of out, lse, dq, dk, dv) against the float64 reference and the
    naive one in `dtype`, both computed here from `inputs` (q, k, v and, for gradients, dout)."""
    ref64 = reference.attention(*inputs, **options)
    naive = reference.attention(*inputs, precision=reference.Precision(dtype_name(dtype)), **options)
    unwritten = unwritten or {}
    for name in names:
        check_close(name, results[name], ref64[name], naive[name], dtype, unwritten.get(name))


def random_array(rng, shape, dtype):
    """Standard normal values (never zeros) rounded to `dtype`, a NumPy dtype."""
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)


def poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def numpy_dtypes():
    """fp32, fp16 and, with ml_dtypes, bf16: the NumPy dtypes the library takes."""
    bf16 = pytest.param(BFLOAT16, id="bfloat16", marks=pytest.mark.skipif(BFLOAT16 is None, reason=NO_BFLOAT16_REASON))
    return [pytest.param(np.dtype(np.float32), id="float32"), pytest.param(np.dtype(np.float16), id="float16"), bf16]


@pytest.fixture
def rng(request):
    """A generator seeded by the test's name: fresh values per test, the same on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@contextlib.contextmanager
def on_backend(device):
    """Runs a test body; on CUDA, a NotImplementedError from the library (no CUDA kernels in this build yet,
    or none for this combination) skips the test with the library's message."""
    try:
        yield
    except NotImplementedError as error:
        if device != "cuda":
            raise
        pytest.skip(f"the CUDA backend does not run this: {error}")
