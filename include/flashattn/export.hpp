// Symbol visibility: the shared library exports only what is marked FLASHATTN_API.
#pragma once

#if defined(_WIN32)
#define FLASHATTN_API
#else
#define FLASHATTN_API __attribute__((visibility("default")))
#endif
