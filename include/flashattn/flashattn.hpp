// flashattn: exact, IO-aware attention (the FlashAttention algorithm) for CPUs and NVIDIA GPUs.
#pragma once

#include "flashattn/attention.hpp"
#include "flashattn/errors.hpp"
#include "flashattn/export.hpp"
#include "flashattn/info.hpp"
#include "flashattn/kvcache.hpp"
#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"
#include "flashattn/version.hpp"
