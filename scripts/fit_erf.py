#!/usr/bin/env python3
"""Fits the polynomial pieces of erf used by Sources/SKESLKernels/FastMath.swift.

|x| <= 1:     erf(x) = x P(x^2), P of degree 5 (linear least squares on 20,001 points)
1 < |x| <= 4: erf(x) = 1 - exp(-x^2) R(x), R = erfcx fitted in u = (x - 2.5)/1.5, degree 10
Prints the coefficients (highest degree last) and the float32 error of each piece.
Needs numpy and scipy (not part of the test path)."""
import numpy as np
from scipy.special import erf, erfcx

x = np.linspace(0, 1.0, 20001)
t = x * x
A = np.array([x * t**k for k in range(6)]).T
p, *_ = np.linalg.lstsq(A, erf(x), rcond=None)
print("P:", ", ".join("%.10e" % v for v in p))

xb = np.linspace(1.0, 4.0, 30001)
u = (xb - 2.5) / 1.5
B = np.array([u**k for k in range(11)]).T
r, *_ = np.linalg.lstsq(B, erfcx(xb), rcond=None)
print("R:", ", ".join("%.10e" % v for v in r))

x32 = np.linspace(-6, 6, 400001).astype(np.float32)
a = np.abs(x32)
t = a * a
pa = np.float32(0)
for c in reversed(p):
    pa = pa * t + np.float32(c)
b = np.clip(a, 1, 4)
u = (b - np.float32(2.5)) / np.float32(1.5)
rr = np.float32(0)
for c in reversed(r):
    rr = rr * u + np.float32(c)
y = np.where(a > 1, np.float32(1) - np.exp(-b * b).astype(np.float32) * rr, a * pa) * np.sign(x32)
print("max |error| in float32: %.2e" % np.abs(y.astype(np.float64) - erf(x32.astype(np.float64))).max())
