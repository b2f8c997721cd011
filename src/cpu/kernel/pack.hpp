// The packing pre-pass: copies a (token, head, channel) tensor into a PackedHeads buffer as fp32.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel/convert.hpp"
#include "kernel/tensor_access.hpp"
#include "plan.hpp"

namespace flashattn::cpu {
namespace {

// Zeroes a large buffer with all the threads: single-threaded, zeroing the packed operands and dQ partials
// took a large share of a 16-thread bf16 backward.
inline void parallel_zero(void* data, std::size_t bytes, int threads) {
  constexpr std::size_t kBlockBytes = std::size_t{1} << 20;
  const auto blocks = static_cast<std::int64_t>((bytes + kBlockBytes - 1) / kBlockBytes);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t i = 0; i < blocks; ++i) {
    const std::size_t begin = static_cast<std::size_t>(i) * kBlockBytes;
    std::memset(static_cast<char*>(data) + begin, 0, std::min(kBlockBytes, bytes - begin));
  }
}

// Copies `tokens_of(b)` tokens of every sequence b, token t to row base[b] + t of each head.
template <typename T, typename TokensOf>
void pack_heads(const detail::Problem& p, const detail::TokenTensor& src, bool query_side, std::int64_t heads,
                std::int64_t dim, const std::int64_t* base, const PackedHeads& dst, int threads, TokensOf tokens_of) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const detail::SequenceSpan seq = p.sequence(b);
      const auto rows = head_rows<const T>(src, b, query_side ? seq.q_begin : seq.k_begin, h);
      const std::int64_t tokens = tokens_of(seq);
      for (std::int64_t t = 0; t < tokens; ++t) load_row(rows.row(t), dst.row(h, base[b] + t), dim, dst.ld);
    }
  }
}

template <typename T>
void pack_keys(const detail::Problem& p, const detail::TokenTensor& src, std::int64_t dim,
               const std::vector<std::int64_t>& key_base, const PackedHeads& dst, int threads) {
  pack_heads<T>(p, src, false, p.heads_kv, dim, key_base.data(), dst, threads,
                [](const detail::SequenceSpan& s) { return s.seqlen_k; });
}

template <typename T>
void pack_queries(const detail::Problem& p, const detail::TokenTensor& src, std::int64_t dim,
                  const std::vector<std::int64_t>& row_base, const PackedHeads& dst, int threads) {
  pack_heads<T>(p, src, true, p.heads_q, dim, row_base.data(), dst, threads,
                [](const detail::SequenceSpan& s) { return s.seqlen_q; });
}

}  // namespace
}  // namespace flashattn::cpu
