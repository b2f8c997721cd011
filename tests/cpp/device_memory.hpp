// CUDA device copies of the tests' host storages. A CUDA case builds its tensors on the host exactly as a
// CPU case does (inputs random, outputs poisoned with NaN), then gives every storage a device copy between
// two guard regions of NaN: the library reads and writes the copies, and the outputs are copied back into the
// host bytes before the same checks as on the CPU. Storage gaps (padded layouts) travel with the copy, so
// "nothing written outside the outputs" is checked on the device too, and the guards catch writes just past
// either end; an input read past its end brings NaN into the results.
//
// flashattn_cuda_tests links the CUDA runtime implementation (tests/cuda/device_memory.cpp);
// flashattn_tests, which runs CPU cases only, links device_memory_none.cpp.
#pragma once

#include <gtest/gtest.h>

#include "flashattn/tensor.hpp"
#include "test_tensors.hpp"

namespace flashattn::test {

// Gives the storage its device copy on `device` and copies the host bytes (poison included) into it. Views
// that share a storage share its copy, so a storage already copied is left as it is.
void copy_to_device(Storage& storage, Device device);

// Host bytes -> device copy, and device copy -> host bytes, in order on `stream` (a cudaStream_t; nullptr
// is the legacy default stream); both return when the copy is done.
void upload(Storage& storage, void* stream);
void download(Storage& storage, void* stream);

// Waits for the work queued on `stream`; throws std::runtime_error naming any error the device reported.
void finish(void* stream);

// t's view moved onto its storage's device copy: same offset, shape and strides.
TensorView device_view(const Tensor& t);

// The guard regions around the storage's device copy still hold the NaN they were filled with.
testing::AssertionResult device_guards_intact(const Storage& storage);

}  // namespace flashattn::test
