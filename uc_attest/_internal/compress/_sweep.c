/*
 * GPTQ's per-column loop over one block of columns, for the CPU coder (uc_attest/_internal/compress/gptq.py).
 *
 * Why native: the loop visits every column of every coded matrix one at a time and, written with torch
 * operations, issues a dozen small operations per column. On the row samples the --target-bpw sensitivity
 * pass codes (a few hundred rows) the dispatch of those operations, not the arithmetic, was the cost.
 *
 * The arithmetic is exactly that of gptq._sweep_columns' torch loop, operation for operation, and the tests
 * hold both bit-identical: per row r of column i (column-major arrays, a column is a contiguous row here)
 *   x = w[i][r] * inv_s[i][r]                       one float32 multiply
 *   c = number of mids[r][t] < x                    torch.searchsorted(..., right=False)
 *   q = values[r][c] * s[i][r]                      one float32 multiply, then (round_bf16) rounded once to
 *                                                   bfloat16, nearest-even, and widened back
 *   e = (w[i][r] - q) / pivot[i]                    float32 subtract, float32 divide
 *   w[k][r] = w[k][r] - h[i][k] * e  for k > i      one float32 multiply, one subtract (never fused: torch's
 *                                                   addr_ fuses them in its vector lanes and not in the tail,
 *                                                   so both loops spell out the product and the subtraction)
 * No -ffast-math and no FMA contraction (the build passes -ffp-contract=off). The lazy update of the columns
 * after the block is one matrix product and stays in torch, on every thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_rounded(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
        bits = 0x7FC00000u; /* NaN: torch's canonical bf16 quiet NaN */
    } else {
        bits = ((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16) << 16;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* the count of entries of the ascending row mids[0..n) that are below x (NaN: n, as torch sorts NaN last) */
static inline Py_ssize_t below(const float *mids, Py_ssize_t n, float x) {
    if (x != x) {
        return n;
    }
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (mids[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/*
 * sweep_block(w, inv_s, s, mids, values, h, codes, err, rows, columns, entries, round_bf16)
 *
 * w:      float32 [columns, rows], updated in place (the block's columns, column-major)
 * inv_s:  float32 [columns, rows]; s: float32 [columns, rows] (each weight's scale and its inverse)
 * mids:   float32 [rows, entries - 1] (midpoints of each row's codebook, +inf past a shorter one)
 * values: float32 [rows, entries]
 * h:      float32 [columns, columns] (the block of the inverse Hessian's upper Cholesky factor)
 * codes:  int64 [columns, rows], written; err: float32 [columns, rows], written (the scaled errors)
 */
static PyObject *sweep_block(PyObject *self, PyObject *args) {
    Py_buffer w, inv_s, s, mids, values, h, codes, err;
    Py_ssize_t rows, columns, entries;
    int round_bf16;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*y*y*y*y*y*w*w*nnnp", &w, &inv_s, &s, &mids, &values, &h, &codes, &err, &rows,
                          &columns, &entries, &round_bf16)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t cells = rows * columns;
    Py_ssize_t f = (Py_ssize_t)sizeof(float);
    if (rows < 0 || columns < 0 || entries < 1 || w.len != cells * f || inv_s.len != cells * f || s.len != cells * f ||
        mids.len != rows * (entries - 1) * f || values.len != rows * entries * f || h.len != columns * columns * f ||
        codes.len != cells * (Py_ssize_t)sizeof(int64_t) || err.len != cells * f) {
        PyErr_SetString(PyExc_ValueError, "sweep_block: buffers do not fit the shape");
    } else {
        float *wv = (float *)w.buf;
        const float *inv = (const float *)inv_s.buf, *sv = (const float *)s.buf, *mv = (const float *)mids.buf;
        const float *vv = (const float *)values.buf, *hv = (const float *)h.buf;
        int64_t *cv = (int64_t *)codes.buf;
        float *ev = (float *)err.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < columns; i++) {
            float *col = wv + i * rows;
            float *e = ev + i * rows;
            float pivot = hv[i * columns + i];
            for (Py_ssize_t r = 0; r < rows; r++) {
                float x = col[r] * inv[i * rows + r];
                Py_ssize_t c = below(mv + r * (entries - 1), entries - 1, x);
                float q = vv[r * entries + c] * sv[i * rows + r];
                if (round_bf16) {
                    q = bf16_rounded(q);
                }
                cv[i * rows + r] = (int64_t)c;
                e[r] = (col[r] - q) / pivot;
            }
            for (Py_ssize_t k = i + 1; k < columns; k++) {
                float hk = hv[i * columns + k];
                float *target = wv + k * rows;
                for (Py_ssize_t r = 0; r < rows; r++) {
                    target[r] = target[r] - hk * e[r];
                }
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&inv_s);
    PyBuffer_Release(&s);
    PyBuffer_Release(&mids);
    PyBuffer_Release(&values);
    PyBuffer_Release(&h);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&err);
    return result;
}

static PyMethodDef methods[] = {
    {"sweep_block", sweep_block, METH_VARARGS, "GPTQ's per-column loop over one block of columns (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sweep", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sweep(void) { return PyModule_Create(&module); }
