#include <zlib.h>

// inflateInit2 is a macro (it passes zlib's version and the stream's size), which Swift cannot call.
static inline int bg_inflate_init2(z_streamp strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}
