#!/usr/bin/env python3
"""The two polynomials of roar-whisper's vectorised `erf` (src/kernels.rs, `erf_lane`).

    /path/to/python processors/whisper/scripts/fit_erf.py

Least-squares fits in float64 on Chebyshev nodes (numpy only):
- |x| < 1: erf(x) / x as a degree-6 polynomial in x², so erf(x) = x · P(x²);
- 1 ≤ |x| < 4: erfc(x) · e^(x²) as a degree-10 polynomial in |x| − 2.5, so
  erf(x) = 1 − e^(−x²) · Q(|x| − 2.5); past 4, erf(x) rounds to 1 in float32.
Prints the coefficients (highest power first, rounded to float32) and the largest absolute
error of the float32 evaluation (Horner, each step rounded to float32) against math.erf.
Tested with numpy 2.
"""

import math

import numpy as np

SPLIT, TOP, MID = 1.0, 4.0, 2.5
NODES = 4000


def chebyshev(lo, hi):
    return np.cos(np.linspace(0.0, np.pi, NODES)) * 0.5 * (hi - lo) + 0.5 * (hi + lo)


def horner32(coefs, x):
    p = np.full_like(x, np.float32(coefs[0]))
    for c in coefs[1:]:
        p = (p.astype(np.float64) * x.astype(np.float64) + np.float64(c)).astype(np.float32)
    return p


def main():
    erf = np.vectorize(math.erf)
    erfc = np.vectorize(math.erfc)
    xs = chebyshev(0.0, SPLIT)
    xs = xs[xs > 1e-9]
    small = [np.float32(c) for c in np.polyfit(xs * xs, erf(xs) / xs, 6)]
    xl = chebyshev(SPLIT, TOP)
    large = [np.float32(c) for c in np.polyfit(xl - MID, erfc(xl) * np.exp(xl * xl), 10)]

    x = np.linspace(-6.0, 6.0, 1_200_001).astype(np.float32)
    a = np.abs(x)
    u = (a * a).astype(np.float32)
    lo = (horner32(small, u).astype(np.float64) * a).astype(np.float32)
    q = horner32(large, (a - np.float32(MID)).astype(np.float32))
    e = np.exp(-u.astype(np.float64)).astype(np.float32)
    hi = (1.0 - q.astype(np.float64) * e).astype(np.float32)
    y = np.copysign(np.where(a < SPLIT, lo, np.where(a < TOP, hi, np.float32(1.0))), x)
    err = np.abs(y.astype(np.float64) - erf(x.astype(np.float64)))

    def show(cs):
        return ", ".join(np.format_float_scientific(c, unique=True) for c in cs)

    print("SMALL:", show(small))
    print("LARGE:", show(large))
    print(f"max abs error {err.max():.3e} at x = {x[err.argmax()]}")


if __name__ == "__main__":
    main()
