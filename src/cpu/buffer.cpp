#include "buffer.hpp"

#include <cstdlib>
#include <deque>
#include <mutex>
#include <new>
#include <utility>

namespace flashattn::cpu {
namespace {

constexpr std::size_t kAlignment = 64;  // a cache line, and the widest vector
// Freed blocks kept for the next calls, at most this much in all (oldest given back first).
constexpr std::size_t kMaxCachedBytes = std::size_t{2} << 30;
// A cached block serves a request of at least half its size.
constexpr std::size_t kMaxWasteFactor = 2;

// Every call allocates its packed copies, partial sums and per-thread scratch afresh; blocks that large
// come from mmap, and their pages fault in again on first touch each time (glibc unmaps them on free).
// Keeping freed blocks for the next call avoids that cost, which grows with the thread count.
class BlockCache {
 public:
  ~BlockCache() {
    for (const Block& block : blocks_) std::free(block.data);
  }

  float* take(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto best = blocks_.end();
      for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
        if (it->bytes >= bytes && it->bytes <= kMaxWasteFactor * bytes &&
            (best == blocks_.end() || it->bytes < best->bytes)) {
          best = it;
        }
      }
      if (best != blocks_.end()) {
        float* data = best->data;
        cached_bytes_ -= best->bytes;
        blocks_.erase(best);
        return data;
      }
    }
    auto* data = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
    if (data == nullptr) throw std::bad_alloc();
    return data;
  }

  void give(float* data, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.push_back({data, bytes});
    cached_bytes_ += bytes;
    while (cached_bytes_ > kMaxCachedBytes) {
      cached_bytes_ -= blocks_.front().bytes;
      std::free(blocks_.front().data);
      blocks_.pop_front();
    }
  }

 private:
  struct Block {
    float* data;
    std::size_t bytes;
  };
  std::mutex mutex_;
  std::deque<Block> blocks_;
  std::size_t cached_bytes_ = 0;
};

BlockCache& block_cache() {
  static BlockCache cache;
  return cache;
}

std::size_t block_bytes(std::size_t count) {
  return (count * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

FloatBuffer::FloatBuffer(std::size_t count) : size_(count) {
  if (count > 0) data_ = block_cache().take(block_bytes(count));
}

FloatBuffer::FloatBuffer(FloatBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

FloatBuffer& FloatBuffer::operator=(FloatBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}

FloatBuffer::~FloatBuffer() {
  if (data_ != nullptr) block_cache().give(data_, block_bytes(size_));
}

}  // namespace flashattn::cpu
