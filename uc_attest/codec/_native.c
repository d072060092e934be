/*
 * The canonical reconstruction as one fused pass over packed codes.
 *
 * For every element, in C order: take its b-bit code from the little-endian
 * bit stream (docs/FORMAT.md), look the float32 codebook entry up, multiply it
 * by its block's float32 scale (ONE IEEE-754 binary32 multiply) and round the
 * product once, to nearest-even, to the output type. Exactly the arithmetic of
 * uc_attest/codec/reconstruct.py's numpy path, which stays the reference: the
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
 * decode(out, packed, bits, codebook, scales, rows, cols, block, out_kind)
 *
 * out:      writable buffer of rows*cols elements (uint16 for bf16, float32 for f32)
 * packed:   the codes of exactly these rows, starting at bit 0 of its first byte
 * codebook: float32[2**bits]
 * scales:   float32[rows * ceil(cols / block)], block axis last
 * out_kind: 0 = bfloat16 (round-to-nearest-even), 1 = float32 (the product itself)
 */
static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer out, packed, codebook, scales;
    int bits, out_kind;
    Py_ssize_t rows, cols, block;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*y*iy*y*nnni", &out, &packed, &bits, &codebook, &scales, &rows, &cols, &block,
                          &out_kind)) {
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
        Py_BEGIN_ALLOW_THREADS
        if (grouped) {
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

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "Fused canonical reconstruction of packed codes (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
