# Grid features' storage type: IEEE halves to the model's float type (fastcap.data.grid reads
# each minibatch's rows through this kernel). Included by cython_backend.pyx.
from libc.stdint cimport uint16_t

cdef extern from "engine/half.h" nogil:
    float fc_half_value(unsigned int h)
    void fc_half_to_float(const uint16_t *raw, float *out, Py_ssize_t n)
    int fc_half_special(const uint16_t *raw, Py_ssize_t n)


def half_to_float(const uint16_t[:, ::1] raw,  # IN (N, M) IEEE half-precision bits
                  floating_t[:, ::1] out):  # OUT (N, M) their values
    if raw.shape[0] != out.shape[0] or raw.shape[1] != out.shape[1]:
        raise ValueError(f"half_to_float: out must have raw's shape {tuple(raw.shape)[:2]}, got "
                         f"{tuple(out.shape)[:2]}")
    cdef Py_ssize_t i, j, N = raw.shape[0], M = raw.shape[1], first = -1
    if M == 0:
        return -1
    with nogil:
        for i in range(N):
            if floating_t is float:
                fc_half_to_float(&raw[i, 0], &out[i, 0], M)
            else:  # a float64 model's: each half through float32, exactly
                for j in range(M):
                    out[i, j] = fc_half_value(raw[i, j])
            if first < 0 and fc_half_special(&raw[i, 0], M):
                first = i
    return first
