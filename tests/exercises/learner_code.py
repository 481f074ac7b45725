"""Code a learner writes in lessons 00-04, shared by their checkers' tests: a plain-loop
NCHW pool (plain Python, then compiled with ``@njit``) and the output-size formula."""
import numpy as np
from numba import njit, prange


def out_size(L, k, s, p):
    return (L + 2 * p - k) // s + 1


def nchw_loops(x, k, s, p, op):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for q in prange(N * C):
        n, c = q // C, q % C
        for i in range(OH):
            for j in range(OW):
                m = -np.inf if op == 0 else 0.0
                for a in range(k):
                    r = i * s - p + a
                    if r < 0 or r >= H:
                        continue
                    for b in range(k):
                        cc = j * s - p + b
                        if cc < 0 or cc >= W:
                            continue
                        if op == 0:
                            if x[n, c, r, cc] > m:
                                m = x[n, c, r, cc]
                        else:
                            m += x[n, c, r, cc]
                out[n, c, i, j] = m if op == 0 else m / (k * k)
    return out


def nchw_max(x, k, s, p):
    return nchw_loops(x, k, s, p, 0)


def nchw_avg(x, k, s):
    return nchw_loops(x, k, s, 0, 1)


nchw_loops_jit = njit(nchw_loops)
