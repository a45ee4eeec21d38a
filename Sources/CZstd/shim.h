#ifndef VAULTLINE_CZSTD_SHIM_H
#define VAULTLINE_CZSTD_SHIM_H
#include <zstd.h>

/// ZSTD_isError wrapped so Swift sees a plain Bool-returning function.
static inline int vl_zstd_is_error(size_t code) { return ZSTD_isError(code) ? 1 : 0; }
/// ZSTD_CONTENTSIZE_ERROR / _UNKNOWN are macros of type unsigned long long.
static inline unsigned long long vl_zstd_contentsize_unknown(void) { return ZSTD_CONTENTSIZE_UNKNOWN; }
static inline unsigned long long vl_zstd_contentsize_error(void) { return ZSTD_CONTENTSIZE_ERROR; }
#endif
