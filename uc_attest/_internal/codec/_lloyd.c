/*
 * The Lloyd rounds of codec/codebook.py's learn_codebook (weighted 1-D k-means on sorted float64 samples), in C.
 *
 * Why native: the coder learns a codebook for every map and option it tries (about four thousand per SmolLM2
 * compression, most of them on row samples of 17-20 thousand values), and each learner ran a few dozen numpy
 * calls per round for 25 rounds: the calls' dispatch, not the arithmetic, was its cost, on the coder's single
 * thread. This file does the same float64 operations in the same order, so the entries are bit-identical to
 * the numpy path (tests/test_codec_lloyd.py holds both to it); without the extension, or with
 * UC_ATTEST_NATIVE=0, the numpy path runs.
 *
 * What it computes, given samples xs (ascending, no -0.0, finite) and weights ws (positive), n of each, and k:
 *   exact prefix sums of the columns xs*ws and ws (codebook._ExactPrefix: each value split into two integer
 *   limbs of its column's power-of-two unit, summed in int64), the weighted-quantile start
 *   (entries[j] = xs[first i with cdf[i] >= (j + 0.5) / k], clamped to n - 1), then up to `iterations` rounds:
 *   sort the entries; mid j = (e[j+1] + e[j]) * 0.5; cut j = the count of samples <= mid j; each cluster's
 *   weighted sum and weight from the prefix sums; e'[j] = sum / max(weight, 1e-30) where weight > 0, else e[j];
 *   stop after the round in which no entry moved by more than 1e-9.
 * No -ffast-math and no FMA contraction (the build passes -ffp-contract=off); rounding to integers is
 * nearbyint in the default mode, half to even, as torch.round.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_ENTRIES 4096

static int bit_length(Py_ssize_t n) {
    int bits = 0;
    while (n > 0) {
        bits++;
        n >>= 1;
    }
    return bits;
}

/* One column's two limbs into prefix[.][limb], prefix[.][limb + 1] (running int64 sums); 0 where the column is not finite. */
static int split_column(const double *xs, const double *ws, int product, Py_ssize_t n, int low_bits, int64_t *prefix,
                        int limb, double *unit) {
    double lo = INFINITY, hi = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = product ? xs[i] * ws[i] : ws[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    double peak = -lo > hi ? -lo : hi;
    if (!isfinite(peak)) {
        return 0;
    }
    int exponent = 0;
    if (peak > 0) {
        frexp(peak, &exponent);
    }
    exponent -= low_bits;
    double low_scale = ldexp(1.0, low_bits);
    int64_t high_sum = 0, low_sum = 0;
    prefix[limb] = 0;
    prefix[limb + 1] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = product ? xs[i] * ws[i] : ws[i];
        double scaled = ldexp(v, -exponent); /* exact: a power of two */
        double high = nearbyint(scaled);
        double low = nearbyint((scaled - high) * low_scale); /* scaled - high is exact, in [-0.5, 0.5] */
        high_sum += (int64_t)high;
        low_sum += (int64_t)low;
        prefix[(i + 1) * 4 + limb] = high_sum;
        prefix[(i + 1) * 4 + limb + 1] = low_sum;
    }
    *unit = ldexp(1.0, exponent);
    return 1;
}

static inline double run_sum(const int64_t *prefix, Py_ssize_t a, Py_ssize_t b, int limb, double low_unit, double unit) {
    double high = (double)(prefix[b * 4 + limb] - prefix[a * 4 + limb]);
    double low = (double)(prefix[b * 4 + limb + 1] - prefix[a * 4 + limb + 1]);
    return (high + low * low_unit) * unit;
}

/* the count of the ascending values[0..n) that are below x (left) or at most x (right) */
static inline Py_ssize_t count_before(const double *values, Py_ssize_t n, double x, int right) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (right ? values[mid] <= x : values[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* learn(xs, ws, k, iterations, out) -> bool: out (float64 [k]) holds the entries; False where a column is not finite */
static PyObject *learn(PyObject *self, PyObject *args) {
    Py_buffer xs_buf, ws_buf, out_buf;
    Py_ssize_t k, iterations;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*nnw*", &xs_buf, &ws_buf, &k, &iterations, &out_buf)) {
        return NULL;
    }
    Py_ssize_t n = xs_buf.len / (Py_ssize_t)sizeof(double);
    int ok = 1;
    if (n < 1 || k < 1 || k > MAX_ENTRIES || xs_buf.len != n * (Py_ssize_t)sizeof(double) || ws_buf.len != xs_buf.len ||
        out_buf.len != k * (Py_ssize_t)sizeof(double) || n > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "learn: buffers do not fit (n float64 samples and weights, k float64 entries)");
        ok = -1;
    }
    int64_t *prefix = NULL;
    double *cdf = NULL;
    if (ok == 1) {
        prefix = (int64_t *)malloc((size_t)(n + 1) * 4 * sizeof(int64_t));
        cdf = (double *)malloc((size_t)n * sizeof(double));
        if (prefix == NULL || cdf == NULL) {
            PyErr_NoMemory();
            ok = -1;
        }
    }
    if (ok == 1) {
        const double *xs = (const double *)xs_buf.buf, *ws = (const double *)ws_buf.buf;
        double *entries = (double *)out_buf.buf;
        Py_BEGIN_ALLOW_THREADS
        int low_bits = 62 - bit_length(n); /* n limbs below 2**low_bits each sum below 2**62 */
        double low_unit = ldexp(1.0, -low_bits);
        double unit_sum = 0.0, unit_weight = 0.0;
        if (!split_column(xs, ws, 1, n, low_bits, prefix, 0, &unit_sum) ||
            !split_column(xs, ws, 0, n, low_bits, prefix, 2, &unit_weight)) {
            ok = 0;
        } else {
            /* the start: weighted quantiles of the samples */
            for (Py_ssize_t i = 0; i < n; i++) {
                cdf[i] = run_sum(prefix, 0, i + 1, 2, low_unit, unit_weight);
            }
            double total = cdf[n - 1];
            for (Py_ssize_t i = 0; i < n; i++) {
                cdf[i] = cdf[i] / total;
            }
            for (Py_ssize_t j = 0; j < k; j++) {
                double target = ((double)j + 0.5) / (double)k;
                Py_ssize_t at = count_before(cdf, n, target, 0);
                entries[j] = xs[at < n - 1 ? at : n - 1];
            }
            Py_ssize_t bounds[MAX_ENTRIES + 1];
            double fresh[MAX_ENTRIES];
            for (Py_ssize_t round = 0; round < iterations; round++) {
                for (Py_ssize_t j = 1; j < k; j++) { /* insertion sort: k is small, and the entries nearly sorted */
                    double v = entries[j];
                    Py_ssize_t t = j;
                    while (t > 0 && entries[t - 1] > v) {
                        entries[t] = entries[t - 1];
                        t--;
                    }
                    entries[t] = v;
                }
                bounds[0] = 0;
                bounds[k] = n;
                for (Py_ssize_t j = 0; j + 1 < k; j++) {
                    bounds[j + 1] = count_before(xs, n, (entries[j + 1] + entries[j]) * 0.5, 1);
                }
                int converged = 1;
                for (Py_ssize_t j = 0; j < k; j++) {
                    double num = run_sum(prefix, bounds[j], bounds[j + 1], 0, low_unit, unit_sum);
                    double den = run_sum(prefix, bounds[j], bounds[j + 1], 2, low_unit, unit_weight);
                    fresh[j] = den > 0 ? num / (den > 1e-30 ? den : 1e-30) : entries[j];
                    if (!(fabs(fresh[j] - entries[j]) <= 1e-9)) {
                        converged = 0;
                    }
                }
                for (Py_ssize_t j = 0; j < k; j++) {
                    entries[j] = fresh[j];
                }
                if (converged) {
                    break;
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    free(prefix);
    free(cdf);
    PyBuffer_Release(&xs_buf);
    PyBuffer_Release(&ws_buf);
    PyBuffer_Release(&out_buf);
    if (ok < 0) {
        return NULL;
    }
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"learn", learn, METH_VARARGS, "The Lloyd rounds of learn_codebook on sorted float64 samples (see the file's comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lloyd", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lloyd(void) { return PyModule_Create(&module); }
