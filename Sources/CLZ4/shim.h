#ifndef VAULTLINE_CLZ4_SHIM_H
#define VAULTLINE_CLZ4_SHIM_H
#include <lz4.h>

/// LZ4_COMPRESSBOUND is a macro; LZ4_compressBound is the function form.
static inline int vl_lz4_compress_bound(int size) { return LZ4_COMPRESSBOUND(size); }
#endif
