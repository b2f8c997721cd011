// How the CUDA backend is reached and where its work runs: Backend::kAuto picks it for device tensors, every
// kernel of a call goes on AttentionOptions::stream, asynchronously to the host, and every device of the machine
// runs every call.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_cases.hpp"
#include "device_memory.hpp"
#include "kvcache_cases.hpp"

namespace flashattn::test {
namespace {

Config stream_case() {
  Config c;
  c.device = Device::cuda(0);
  c.dtype = DType::kBFloat16;
  c.batch = 2;
  c.seqlen_q = 600;
  c.seqlen_k = 800;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 128;
  c.head_dim_v = 128;
  c.causal = true;
  return c;
}

class CudaBackend : public CudaTest {};

// The CPU backend would crash on device pointers: passing the checks means the CUDA backend ran.
TEST_F(CudaBackend, AutoPicksItForDeviceTensors) {
  Instance c = make_instance(stream_case());
  c.args.options.backend = Backend::kAuto;
  run_instance(c);
}

// Each device of the machine in turn, in one process: forward and backward (Hopper's forward kernel on an H100)
// and the KV-cache call (the wide decoding tile, split, and the medium tile, paged), each launched with more
// than 48 KB of dynamic shared memory. The allowance for that belongs to each device's context: the decoding
// kernels once asked for it once per process, and their launches then failed on every device but the first.
TEST_F(CudaBackend, CallsRunOnEveryDevice) {
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  if (devices < 2) GTEST_SKIP() << "one CUDA device: the test needs at least two";
  for (int device = 0; device < devices; ++device) {
    SCOPED_TRACE("device " + std::to_string(device));
    Config attention = stream_case();
    attention.device = Device::cuda(device);
    run_case(attention);
    KVCaseConfig split;
    split.dtype = DType::kBFloat16;
    split.cache_seqlens = {3000, 17};
    split.heads_q = 8;
    split.heads_kv = 2;
    split.head_dim = split.head_dim_v = 128;
    split.workspace = true;
    split.device = Device::cuda(device);
    run_kvcache_case(split);
    KVCaseConfig paged = split;
    paged.cache_seqlens.assign(40, 100);
    paged.heads_q = paged.heads_kv = 8;
    paged.page_size = 16;
    run_kvcache_case(paged);
  }
}

// Holds a stream in a host function until opened, so that nothing queued behind it can run.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) {
    EXPECT_EQ(cudaLaunchHostFunc(stream, &StreamGate::wait, this), cudaSuccess);
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

 private:
  static void CUDART_CB wait(void* gate_pointer) {
    auto* gate = static_cast<StreamGate*>(gate_pointer);
    std::unique_lock<std::mutex> lock(gate->mutex_);
    gate->opened_.wait(lock, [gate] { return gate->open_; });
  }

  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

// A call whose stream is held must return at once with its kernels queued behind the hold: until the gate
// opens, every output is still poison when read through another stream. A kernel launched on any other
// stream (the legacy default stream does not wait for a non-blocking one) writes it at once.
TEST_F(CudaBackend, CallsQueueTheirWorkOnTheGivenStream) {
  // Far longer than any launch takes. A call that waits for its own stream (cudaStreamSynchronize, a blocking
  // copy on it, or cudaFree, which waits for the whole device) would hang; the watchdog then opens the gate.
  constexpr auto kMaxHold = std::chrono::seconds(20);
  Instance c = make_instance(stream_case());
  cudaStream_t stream = nullptr, observer = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&observer, cudaStreamNonBlocking), cudaSuccess);
  c.args.options.stream = stream;
  const Arguments& a = c.args;
  // The first launch of a kernel loads it (CUDA's lazy loading), which may wait for the whole device, held
  // stream included: a first call loads every kernel that the held calls launch.
  ASSERT_NO_THROW(call_forward(c));
  ASSERT_NO_THROW(call_backward(c));
  reset_outputs(c);

  StreamGate gate(stream);
  std::atomic<bool> calls_returned = false, opened_by_watchdog = false;
  std::thread watchdog([&] {
    const auto deadline = std::chrono::steady_clock::now() + kMaxHold;
    while (!calls_returned && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!calls_returned) {
      opened_by_watchdog = true;
      gate.open();
    }
  });
  EXPECT_NO_THROW(forward(a.q, a.k, a.v, a.out, a.lse, a.options));
  EXPECT_NO_THROW(backward(a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, a.dk, a.dv, a.options));
  calls_returned = true;
  watchdog.join();
  EXPECT_FALSE(opened_by_watchdog) << "forward / backward waited for their own held stream (synchronized it)";

  // Work wrongly put on the legacy default stream is finished once that stream is.
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  for (const Tensor* t : {&c.out, &c.lse, &c.dq, &c.dk, &c.dv}) download(*t->storage, observer);
  for (const Tensor* t : {&c.out, &c.lse, &c.dq, &c.dk, &c.dv}) {
    const std::vector<double> values = read(*t);
    EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](double x) { return std::isnan(x); }))
        << "an output was written while the call's stream was held";
  }

  gate.open();
  copy_outputs_to_host(c);  // waits for `stream`
  using reference::Precision;
  const auto forward64 = reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kFloat64);
  check_forward(c, forward64,
                reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kInputDType));
  check_backward(
      c, reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kFloat64),
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kInputDType),
      forward64.lse);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(observer), cudaSuccess);
}

}  // namespace
}  // namespace flashattn::test
