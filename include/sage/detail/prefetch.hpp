// A hint to start loading memory into the cache before it is read, for loops
// that jump through large tables (keyed state lookups and snapshots).
#pragma once

namespace sage::detail {

inline void prefetch(const void* address) {
#if defined(__GNUC__)
  __builtin_prefetch(address);
#else
  (void)address;
#endif
}

}  // namespace sage::detail
