// A two-function C ABI over fpnge (a benchmark peer, built from its own source tree by
// benches/build.rs; nothing of fpnge is kept in this repository). Levels 1..=5 are fpnge's own
// (its FPNGEFillOptions); 8-bit samples, tightly packed rows.
#include <stddef.h>

#include "fpnge.h"

extern "C" size_t pngcast_fpnge_bound(size_t channels, size_t width, size_t height) {
  return FPNGEOutputAllocSize(1, channels, width, height);
}

extern "C" size_t pngcast_fpnge_encode(int level, size_t channels, const unsigned char *pixels,
                                       size_t width, size_t height, unsigned char *out) {
  struct FPNGEOptions options;
  FPNGEFillOptions(&options, level, FPNGE_CICP_NONE);
  return FPNGEEncode(1, channels, pixels, width, width * channels, height, out, &options);
}
