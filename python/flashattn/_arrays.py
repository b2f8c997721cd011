"""The array frameworks flashattn takes (NumPy, CuPy, PyTorch): how each allocates an output, hands an array
to the native module through DLPack, names its current CUDA stream, pads the head dimension and tells whether
an array lives on a GPU (the KV-cache call allocates its split-KV workspace only there)."""

import sys

import numpy as np

# NumPy has no DLPack code for ml_dtypes' types: such arrays travel as unsigned integers of the same width,
# with the name of the type their bits hold (the native module's `bits_dtype`).
_NUMPY_BITS_DTYPES = {"bfloat16": ("bf16", np.uint16), "float8_e4m3fn": ("fp8_e4m3", np.uint8)}


class NumPyArrays:
    name = "numpy"

    @staticmethod
    def owns(x):
        return isinstance(x, np.ndarray)

    @staticmethod
    def empty(shape, like, fp32=False, zero=False):
        dtype = np.float32 if fp32 else like.dtype
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)

    @staticmethod
    def export(x):
        bits = _NUMPY_BITS_DTYPES.get(x.dtype.name)
        return x.view(bits[1]) if bits else x

    @staticmethod
    def bits_dtype(x):
        bits = _NUMPY_BITS_DTYPES.get(x.dtype.name)
        return bits[0] if bits else ""

    @staticmethod
    def stream(x):
        return 0

    @staticmethod
    def last_dim_contiguous(x):
        # The library reads the last dimension contiguously and takes no negative strides.
        strided = x.ndim > 0 and x.shape[-1] > 1 and x.strides[-1] != x.itemsize
        return np.ascontiguousarray(x) if strided or any(s < 0 for s in x.strides) else x

    @staticmethod
    def pad_last(x, width):
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width)])

    @staticmethod
    def full_int32(shape, value, like):
        return np.full(shape, value, np.int32)

    @staticmethod
    def cuda_device(x):
        return None


class CuPyArrays:
    name = "cupy"

    @staticmethod
    def owns(x):
        cupy = sys.modules.get("cupy")  # a CuPy array implies an imported CuPy
        return cupy is not None and isinstance(x, cupy.ndarray)

    @staticmethod
    def empty(shape, like, fp32=False, zero=False):
        import cupy

        dtype = cupy.float32 if fp32 else like.dtype
        with like.device:
            return cupy.zeros(shape, dtype) if zero else cupy.empty(shape, dtype)

    @staticmethod
    def export(x):
        # stream=-1: no synchronisation; the call runs on CuPy's current stream, passed explicitly.
        return x.__dlpack__(stream=-1)

    @staticmethod
    def bits_dtype(x):
        return ""

    @staticmethod
    def stream(x):
        import cupy

        with x.device:
            return cupy.cuda.get_current_stream().ptr

    @staticmethod
    def last_dim_contiguous(x):
        import cupy

        strided = x.ndim > 0 and x.shape[-1] > 1 and x.strides[-1] != x.itemsize
        return cupy.ascontiguousarray(x) if strided or any(s < 0 for s in x.strides) else x

    @staticmethod
    def pad_last(x, width):
        import cupy

        return cupy.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width)])

    @staticmethod
    def full_int32(shape, value, like):
        import cupy

        with like.device:
            return cupy.full(shape, value, cupy.int32)

    @staticmethod
    def cuda_device(x):
        return x.device.id


class TorchTensors:
    name = "torch"

    @staticmethod
    def owns(x):
        torch = sys.modules.get("torch")  # a tensor implies an imported torch
        return torch is not None and isinstance(x, torch.Tensor)

    @staticmethod
    def empty(shape, like, fp32=False, zero=False):
        import torch

        dtype = torch.float32 if fp32 else like.dtype
        make = torch.zeros if zero else torch.empty
        return make(shape, dtype=dtype, device=like.device)

    @staticmethod
    def export(x):
        # A capsule rather than the tensor, from to_dlpack: it synchronises no streams (Tensor.__dlpack__ would
        # unless given stream=-1, and recording events breaks CUDA graph capture; the call runs on torch's current
        # stream) and costs 0.3 us where x.detach().__dlpack__(stream=-1) cost 2.9 (CPU, torch 2.15).
        import torch.utils.dlpack

        return torch.utils.dlpack.to_dlpack(x.detach() if x.requires_grad else x)

    @staticmethod
    def bits_dtype(x):
        return ""

    @staticmethod
    def stream(x):
        if x.device.type != "cuda":
            return 0
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream

    @staticmethod
    def last_dim_contiguous(x):
        return x.contiguous() if x.dim() > 0 and x.shape[-1] > 1 and x.stride(-1) != 1 else x

    @staticmethod
    def pad_last(x, width):
        import torch

        return torch.nn.functional.pad(x, (0, width))

    @staticmethod
    def full_int32(shape, value, like):
        import torch

        return torch.full(shape, value, dtype=torch.int32, device=like.device)

    @staticmethod
    def cuda_device(x):
        return x.device.index if x.device.type == "cuda" else None


_FRAMEWORKS = (NumPyArrays, TorchTensors, CuPyArrays)


def framework_of(*arrays):
    """The one framework that owns every array given (None entries skipped); TypeError otherwise."""
    found = None
    for array in arrays:
        if array is None:
            continue
        owner = next((f for f in _FRAMEWORKS if f.owns(array)), None)
        if owner is None:
            raise TypeError(f"flashattn takes NumPy arrays, CuPy arrays or PyTorch tensors, got {type(array)!r}")
        if found is not None and owner is not found:
            raise TypeError(f"all arrays of one call must come from one framework, got {found.name} and {owner.name}")
        found = owner
    if found is None:
        raise TypeError("flashattn takes NumPy arrays, CuPy arrays or PyTorch tensors, got None")
    return found
