/*
 * The canonical reconstruction as one fused pass over packed codes.
 *
 * For every element, in C order: take its b-bit code from the little-endian
 * bit stream (docs/FORMAT.md), look the float32 codebook entry up, multiply it
 * by its block's float32 scale (ONE IEEE-754 binary32 multiply) and round the
 * product once, to nearest-even, to the output type. Exactly the arithmetic of
 * uc_attest/_internal/codec/reconstruct.py's numpy path, which stays the reference: the
 * test suite asserts that both give identical bits.
 *
 * Why native: the numpy path makes five passes over memory (unpack, gather,
 * multiply, convert, hash) at about 6 ns per weight on one core; a customer
 * verifying a 70B pack should wait on the disk and the hash, not on those
 * passes. The GIL is released while the loop runs, so verification threads
 * reconstruct on every core.
 *
 * Arithmetic rules kept here: no -ffast-math, no FMA contraction (there is no
 * add to fuse, and the build passes -ffp-contract=off anyway), subnormals are
 * kept (no flush-to-zero), NaN becomes the canonical bf16 quiet NaN 0x7FC0 as
 * torch's conversion does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LITTLE_ENDIAN_HOST 1 /* the grouped path reads the stream as little-endian words */
#else
#define LITTLE_ENDIAN_HOST 0
#endif

static inline uint16_t bf16_round(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
        return 0x7FC0u; /* NaN */
    }
    uint32_t bias = 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + bias) >> 16);
}

/* Code of element i: bits [i*b, (i+1)*b) of the stream, least significant first. */
static inline uint32_t code_at(const uint8_t *packed, Py_ssize_t nbytes, uint64_t bitpos, uint32_t mask) {
    Py_ssize_t byte = (Py_ssize_t)(bitpos >> 3);
    uint32_t shift = (uint32_t)(bitpos & 7u);
    uint32_t word = packed[byte];
    if (byte + 1 < nbytes) {
        word |= (uint32_t)packed[byte + 1] << 8;
    }
    return (word >> shift) & mask;
}

/*
 * Fast path: every block starts on a whole group of 8 codes (block % 8 == 0 and
 * cols % 8 == 0), so a group's 8 codes are exactly `bits` bytes and can be
 * taken from one 64-bit little-endian word with fixed shifts. `bits` is a
 * compile-time constant in each instantiation so the loops unroll.
 */
/* A group's BITS bytes as a little-endian word: one unaligned 8-byte load where 8 bytes remain
 * (the bits past the group are never used), else exactly BITS bytes. */
#define LOAD_GROUP(word, src, end, BITS)                                                                            \
    do {                                                                                                            \
        if ((end) - (src) >= 8) {                                                                                   \
            memcpy(&(word), (src), 8);                                                                              \
        } else {                                                                                                    \
            memcpy(&(word), (src), (BITS));                                                                         \
        }                                                                                                           \
    } while (0)

#define DEFINE_GROUPED(BITS)                                                                                        \
    static void grouped_bf16_##BITS(uint16_t *restrict dst, const uint8_t *restrict src, const float *restrict cb,  \
                                    const float *restrict sc, Py_ssize_t rows, Py_ssize_t cols,                    \
                                    Py_ssize_t block) {                                                            \
        const uint8_t *end = src + rows * cols / 8 * BITS; /* an 8-byte load never reads past this */             \
        enum { ENTRIES = 1 << BITS, MASK = (1 << BITS) - 1 };                                                       \
        Py_ssize_t nblocks = cols / block, groups = block / 8;                                                      \
        int use_table = ENTRIES <= block; /* a block's ENTRIES products are fewer than its weights */             \
        uint16_t table[ENTRIES];                                                                                    \
        for (Py_ssize_t r = 0; r < rows; r++) {                                                                     \
            for (Py_ssize_t b = 0; b < nblocks; b++) {                                                              \
                float s = sc[r * nblocks + b];                                                                      \
                if (use_table) {                                                                                    \
                    for (int e = 0; e < ENTRIES; e++) {                                                             \
                        table[e] = bf16_round(cb[e] * s);                                                           \
                    }                                                                                               \
                    for (Py_ssize_t g = 0; g < groups; g++, src += BITS, dst += 8) {                                \
                        uint64_t word = 0;                                                                          \
                        LOAD_GROUP(word, src, end, BITS);                                                           \
                        for (int k = 0; k < 8; k++) {                                                               \
                            dst[k] = table[(word >> (k * BITS)) & MASK];                                            \
                        }                                                                                           \
                    }                                                                                               \
                } else {                                                                                            \
                    for (Py_ssize_t g = 0; g < groups; g++, src += BITS, dst += 8) {                                \
                        uint64_t word = 0;                                                                          \
                        LOAD_GROUP(word, src, end, BITS);                                                           \
                        for (int k = 0; k < 8; k++) {                                                               \
                            dst[k] = bf16_round(cb[(word >> (k * BITS)) & MASK] * s);                               \
                        }                                                                                           \
                    }                                                                                               \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
    }
DEFINE_GROUPED(2)
DEFINE_GROUPED(3)
DEFINE_GROUPED(4)
DEFINE_GROUPED(5)
DEFINE_GROUPED(6)
DEFINE_GROUPED(7)
DEFINE_GROUPED(8)

typedef void (*grouped_fn)(uint16_t *, const uint8_t *, const float *, const float *, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t);
static const grouped_fn GROUPED_BF16[9] = {NULL, NULL, grouped_bf16_2, grouped_bf16_3, grouped_bf16_4,
                                           grouped_bf16_5, grouped_bf16_6, grouped_bf16_7, grouped_bf16_8};

/*
 * Vector path (x86-64 with AVX-512 VBMI, chosen at run time): the same arithmetic, 32 weights per step.
 *
 * Per block, the 2^b products codebook[e] * scale are computed with one float32
 * multiply each (vmulps, IEEE binary32, like the scalar loop) and rounded to
 * bf16 with the same integer round-to-nearest-even, so the table is bit-for-bit
 * the scalar one. Then each run of 32 codes (4*b bytes) is spread into 16-bit
 * lanes with one byte permute (lane k gets the two bytes holding bits
 * [k*b, k*b + b)), shifted right by (k*b) mod 8 and masked; a word permute
 * looks the 32 codes up in the table (two tables for b = 6). Applies when
 * 2 <= b <= 6, block % 32 == 0 and cols % block == 0; anything else takes the
 * scalar loops above. UC_ATTEST_NATIVE=scalar forces them, which the tests use
 * to compare both paths on a machine that has the vector one.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_VECTOR_PATH 1
#define VECTOR_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi")))

VECTOR_TARGET static inline __m256i bf16_round16(__m512 product) {
    __m512i bits = _mm512_castps_si512(product);
    __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F800000));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i bias = _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_set1_epi32(0x7FC0));
    return _mm512_cvtepi32_epi16(rounded);
}

VECTOR_TARGET static inline __m512i product_table(const __m512 *entries, int first, __m512 scale) {
    __m256i low = bf16_round16(_mm512_mul_ps(entries[first], scale));
    __m256i high = bf16_round16(_mm512_mul_ps(entries[first + 1], scale));
    return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
}

VECTOR_TARGET static void grouped_bf16_vector(uint16_t *dst, const uint8_t *src, const float *cb, const float *sc,
                                              Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t block, int bits) {
    int entries = 1 << bits;
    __m512 cbv[4];
    for (int v = 0; v < 4; v++) {
        int left = entries - 16 * v;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1u) : (__mmask16)0;
        cbv[v] = _mm512_maskz_loadu_ps(m, cb + (left > 0 ? 16 * v : 0));
    }
    uint8_t spread[64];
    uint16_t shift[32];
    for (int k = 0; k < 32; k++) {
        int start = k * bits;
        spread[2 * k] = (uint8_t)(start >> 3);
        spread[2 * k + 1] = (uint8_t)((start >> 3) + 1);
        shift[k] = (uint16_t)(start & 7);
    }
    __m512i spread_v = _mm512_loadu_si512(spread), shift_v = _mm512_loadu_si512(shift);
    __m512i mask_v = _mm512_set1_epi16((short)(entries - 1));
    __mmask64 chunk = (__mmask64)((1ULL << (4 * bits)) - 1ULL); /* 4*bits <= 24 bytes: never read past the codes */
    Py_ssize_t nblocks = cols / block, chunks = block / 32;
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t b = 0; b < nblocks; b++) {
            __m512 scale = _mm512_set1_ps(sc[r * nblocks + b]);
            __m512i low = product_table(cbv, 0, scale);
            __m512i high = entries > 32 ? product_table(cbv, 2, scale) : low;
            for (Py_ssize_t c = 0; c < chunks; c++, src += 4 * bits, dst += 32) {
                __m512i bytes = _mm512_maskz_loadu_epi8(chunk, src);
                __m512i codes = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi8(spread_v, bytes), shift_v), mask_v);
                __m512i out = entries > 32 ? _mm512_permutex2var_epi16(low, codes, high) : _mm512_permutexvar_epi16(codes, low);
                _mm512_storeu_si512(dst, out);
            }
        }
    }
}

/*
 * AVX2 path (x86-64 CPUs without AVX-512 VBMI), 16 weights per step, same arithmetic.
 *
 * Per block the 2^b products are computed 8 at a time (vmulps, binary32) and rounded
 * to bf16 with the scalar loop's integer round-to-nearest-even; the table is kept as
 * two byte tables (low and high bytes of each bf16) of 16 entries per segment, since
 * vpshufb looks up bytes, 16 entries per 128-bit lane. Each run of 16 codes (2*b
 * bytes, two groups of 8) is spread into 16-bit lanes with one vpshufb, shifted right
 * per lane (a multiply by 2^(7-s), then a fixed shift of 7, as AVX2 has no variable
 * 16-bit shift) and masked; codes >= 16 select their segment with byte blends on
 * code bits 4 and 5. Applies when 2 <= b <= 6, block % 16 == 0 and cols % block == 0.
 */
#define AVX2_TARGET __attribute__((target("avx2")))

AVX2_TARGET static inline __m256i bf16_round8(__m256 product) {
    __m256i bits = _mm256_castps_si256(product);
    __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000)); /* both non-negative as int32 */
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i bias = _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
    return _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), nan);
}

/* 16 table entries codebook[0..16) * scale as byte tables: *lo gets their low bytes, *hi their high bytes, each in
 * both 128-bit lanes. */
AVX2_TARGET static inline void product_bytes(const float *cb16, __m256 scale, __m256i *lo, __m256i *hi) {
    __m256i a = bf16_round8(_mm256_mul_ps(_mm256_loadu_ps(cb16), scale));
    __m256i b = bf16_round8(_mm256_mul_ps(_mm256_loadu_ps(cb16 + 8), scale));
    __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8); /* 16 x u16 in entry order */
    __m256i bytes = _mm256_packus_epi16(_mm256_and_si256(words, _mm256_set1_epi16(0xFF)), _mm256_srli_epi16(words, 8));
    bytes = _mm256_permute4x64_epi64(bytes, 0xD8); /* [low bytes 0..15 | high bytes 0..15] */
    *lo = _mm256_permute2x128_si256(bytes, bytes, 0x00);
    *hi = _mm256_permute2x128_si256(bytes, bytes, 0x11);
}

AVX2_TARGET static void grouped_bf16_avx2(uint16_t *dst, const uint8_t *src, const float *cb, const float *sc,
                                          Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t block, int bits) {
    int entries = 1 << bits, segments = entries > 16 ? entries / 16 : 1;
    float padded[64] = {0}; /* entries past 2^b are computed but never looked up */
    memcpy(padded, cb, sizeof(float) * (size_t)entries);
    uint8_t spread[32];
    int16_t shift_mul[16];
    for (int k = 0; k < 8; k++) {
        int start = k * bits;
        for (int lane = 0; lane < 2; lane++) {
            spread[16 * lane + 2 * k] = (uint8_t)(start >> 3);
            spread[16 * lane + 2 * k + 1] = (uint8_t)((start >> 3) + 1);
            shift_mul[8 * lane + k] = (int16_t)(1 << (7 - (start & 7)));
        }
    }
    __m256i spread_v = _mm256_loadu_si256((const __m256i *)spread);
    __m256i shift_v = _mm256_loadu_si256((const __m256i *)shift_mul);
    __m256i mask_v = _mm256_set1_epi16((short)(entries - 1));
    __m256i zero_high = _mm256_set1_epi16((short)0x8000), zero_low = _mm256_set1_epi16(0x0080);
    const uint8_t *end = src + rows * cols / 8 * bits;
    Py_ssize_t nblocks = cols / block, runs = block / 16;
    __m256i lo[4], hi[4];
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t b = 0; b < nblocks; b++) {
            __m256 scale = _mm256_set1_ps(sc[r * nblocks + b]);
            for (int s = 0; s < segments; s++) {
                product_bytes(padded + 16 * s, scale, &lo[s], &hi[s]);
            }
            for (Py_ssize_t c = 0; c < runs; c++, src += 2 * bits, dst += 16) {
                __m128i g0, g1;
                if (end - src >= bits + 16) {
                    g0 = _mm_loadu_si128((const __m128i *)src);
                    g1 = _mm_loadu_si128((const __m128i *)(src + bits));
                } else { /* the last runs: never read past the codes */
                    uint8_t tail[32] = {0};
                    memcpy(tail, src, (size_t)(2 * bits));
                    g0 = _mm_loadu_si128((const __m128i *)tail);
                    g1 = _mm_loadu_si128((const __m128i *)(tail + bits));
                }
                __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(g0), g1, 1);
                __m256i words = _mm256_shuffle_epi8(bytes, spread_v);
                __m256i codes = _mm256_and_si256(_mm256_srli_epi16(_mm256_mullo_epi16(words, shift_v), 7), mask_v);
                __m256i both = _mm256_or_si256(codes, _mm256_slli_epi16(codes, 8)); /* the code in both bytes */
                __m256i idx_lo = _mm256_or_si256(both, zero_high), idx_hi = _mm256_or_si256(both, zero_low);
#define SEGMENT(s) _mm256_or_si256(_mm256_shuffle_epi8(lo[s], idx_lo), _mm256_shuffle_epi8(hi[s], idx_hi))
                __m256i out = SEGMENT(0);
                if (segments > 1) {
                    __m256i bit4 = _mm256_slli_epi16(both, 3); /* code bit 4 in each byte's top bit */
                    out = _mm256_blendv_epi8(out, SEGMENT(1), bit4);
                    if (segments > 2) {
                        __m256i upper = _mm256_blendv_epi8(SEGMENT(2), SEGMENT(3), bit4);
                        out = _mm256_blendv_epi8(out, upper, _mm256_slli_epi16(both, 2)); /* code bit 5 */
                    }
                }
#undef SEGMENT
                _mm256_storeu_si256((__m256i *)dst, out);
            }
        }
    }
}

/* Vector paths, best first: 2 = AVX-512 VBMI, 1 = AVX2, 0 = none (cached; the CPU does not change). */
static int vector_level(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vbmi"))
                     ? 2
                     : __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}
#else
#define HAVE_VECTOR_PATH 0
static int vector_level(void) { return 0; }
#endif

/*
 * decode(out, packed, bits, codebook, scales, rows, cols, block, out_kind[, max_vector])
 *
 * out:      writable buffer of rows*cols elements (uint16 for bf16, float32 for f32)
 * packed:   the codes of exactly these rows, starting at bit 0 of its first byte
 * codebook: float32[2**bits]
 * scales:   float32[rows * ceil(cols / block)], block axis last
 * out_kind: 0 = bfloat16 (round-to-nearest-even), 1 = float32 (the product itself)
 * max_vector: the best vector path allowed: 0 = scalar loops only, 1 = AVX2 at most, 2 (default) = AVX-512 VBMI
 *             where this CPU has it; each applies only where its shape conditions hold
 */
static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer out, packed, codebook, scales;
    int bits, out_kind, max_vector = 2;
    Py_ssize_t rows, cols, block;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*y*iy*y*nnni|i", &out, &packed, &bits, &codebook, &scales, &rows, &cols, &block,
                          &out_kind, &max_vector)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t nblocks = block > 0 ? (cols + block - 1) / block : 0;
    Py_ssize_t count = rows * cols;
    Py_ssize_t out_item = out_kind == 0 ? 2 : 4;
    if (bits < 2 || bits > 8 || block <= 0 || rows < 0 || cols < 0 || (out_kind != 0 && out_kind != 1)) {
        PyErr_SetString(PyExc_ValueError, "bad codec parameters");
    } else if (codebook.len != (Py_ssize_t)(sizeof(float) << bits)) {
        PyErr_SetString(PyExc_ValueError, "codebook must hold 2**bits float32 entries");
    } else if (scales.len != (Py_ssize_t)sizeof(float) * rows * nblocks) {
        PyErr_SetString(PyExc_ValueError, "scales do not fit the shape");
    } else if (packed.len != (Py_ssize_t)(((uint64_t)count * (uint64_t)bits + 7) / 8)) {
        PyErr_SetString(PyExc_ValueError, "packed codes do not fit the shape");
    } else if (out.len != count * out_item) {
        PyErr_SetString(PyExc_ValueError, "output buffer does not fit the shape");
    } else {
        const uint8_t *src = (const uint8_t *)packed.buf;
        const float *cb = (const float *)codebook.buf;
        const float *sc = (const float *)scales.buf;
        uint32_t mask = (1u << bits) - 1u;
        int grouped = LITTLE_ENDIAN_HOST && out_kind == 0 && block % 8 == 0 && cols % block == 0;
        int level = grouped && bits <= 6 ? vector_level() : 0;
        level = level < max_vector ? level : max_vector;
        int avx512 = level == 2 && block % 32 == 0, avx2 = !avx512 && level >= 1 && block % 16 == 0;
        Py_BEGIN_ALLOW_THREADS
        if (avx512) {
#if HAVE_VECTOR_PATH
            grouped_bf16_vector((uint16_t *)out.buf, src, cb, sc, rows, cols, block, bits);
#endif
        } else if (avx2) {
#if HAVE_VECTOR_PATH
            grouped_bf16_avx2((uint16_t *)out.buf, src, cb, sc, rows, cols, block, bits);
#endif
        } else if (grouped) {
            GROUPED_BF16[bits]((uint16_t *)out.buf, src, cb, sc, rows, cols, block);
        } else {
        uint64_t bitpos = 0;
        for (Py_ssize_t r = 0; r < rows; r++) {
            const float *row_scales = sc + r * nblocks;
            for (Py_ssize_t b0 = 0; b0 < cols; b0 += block) {
                float s = row_scales[b0 / block];
                Py_ssize_t b1 = b0 + block < cols ? b0 + block : cols;
                Py_ssize_t base = r * cols;
                if (out_kind == 0) {
                    uint16_t *dst = (uint16_t *)out.buf + base;
                    for (Py_ssize_t j = b0; j < b1; j++, bitpos += (uint64_t)bits) {
                        float product = cb[code_at(src, packed.len, bitpos, mask)] * s;
                        dst[j] = bf16_round(product);
                    }
                } else {
                    float *dst = (float *)out.buf + base;
                    for (Py_ssize_t j = b0; j < b1; j++, bitpos += (uint64_t)bits) {
                        dst[j] = cb[code_at(src, packed.len, bitpos, mask)] * s;
                    }
                }
            }
        }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&packed);
    PyBuffer_Release(&codebook);
    PyBuffer_Release(&scales);
    return result;
}

/*
 * The incoherence transform's steps 1-4 (uc_attest/_internal/codec/incoherence.py, docs/FORMAT.md 1.1), in place on float32
 * rows of `width` elements: per run of `size` elements, the butterfly stages h = 1, 2, ..., size/2 in this order
 * (each pair: one float32 addition and one subtraction of the values before the update), then one multiply by the
 * power of two `scale`, one by the sign of the position (+1.0 or -1.0), and every NaN set to 0x7FC00000. With an
 * optional uint16 buffer, each result is also rounded once to bf16 into it (the canonical rounding). The numpy
 * definition stays the reference; the tests hold both bit-identical.
 */
static PyObject *hadamard(PyObject *self, PyObject *args) {
    Py_buffer values, signs, rounded = {0};
    Py_ssize_t size, width;
    float scale;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*y*nnf|w*", &values, &signs, &size, &width, &scale, &rounded)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = values.len / (Py_ssize_t)sizeof(float);
    if (size < 2 || (size & (size - 1)) || width <= 0 || width % size || values.len % (Py_ssize_t)sizeof(float) ||
        count % width || signs.len != width * (Py_ssize_t)sizeof(float) ||
        (rounded.buf != NULL && rounded.len != count * (Py_ssize_t)sizeof(uint16_t))) {
        PyErr_SetString(PyExc_ValueError, "bad hadamard parameters");
    } else {
        float *x = (float *)values.buf;
        const float *sg = (const float *)signs.buf;
        uint16_t *bf16 = (uint16_t *)rounded.buf; /* given: also the one rounding to bf16, fused */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r0 = 0; r0 < count; r0 += width) {
            float *row = x + r0;
            for (Py_ssize_t run = 0; run < width; run += size) {
                float *v = row + run;
                for (Py_ssize_t h = 1; h < size; h <<= 1) {
                    for (Py_ssize_t i0 = 0; i0 < size; i0 += 2 * h) {
                        for (Py_ssize_t k = 0; k < h; k++) {
                            float a = v[i0 + k], b = v[i0 + k + h];
                            v[i0 + k] = a + b;
                            v[i0 + k + h] = a - b;
                        }
                    }
                }
            }
            for (Py_ssize_t j = 0; j < width; j++) {
                float w = (row[j] * scale) * sg[j];
                if (w != w) {
                    uint32_t nan = 0x7FC00000u;
                    memcpy(&w, &nan, sizeof w);
                }
                row[j] = w;
                if (bf16 != NULL) {
                    bf16[r0 + j] = bf16_round(w);
                }
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&signs);
    if (rounded.buf != NULL) {
        PyBuffer_Release(&rounded);
    }
    return result;
}

static PyObject *vector_level_py(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(vector_level());
}

static PyMethodDef methods[] = {
    {"vector_level", vector_level_py, METH_NOARGS, "Best vector path this CPU runs: 2 AVX-512 VBMI, 1 AVX2, 0 none."},
    {"decode", decode, METH_VARARGS, "Fused canonical reconstruction of packed codes (see the module source)."},
    {"hadamard", hadamard, METH_VARARGS, "The incoherence transform in place on float32 rows (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
