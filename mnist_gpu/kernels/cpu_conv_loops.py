"""The compiled loops of the CPU convolution passes (Numba), over (N, H, W, C) activations.

Each loop is one pass over memory that the array path (``mnist_gpu/model/layers.py``) makes in
several: im2col's gather and col2im's scatter-add as contiguous runs of a kernel row's ``k * C``
values (an image's rows are ``W * C`` contiguous values, passed as (N, H, W * C)), and 2x2 max
pooling with its relu (and the bias of the convolution before it) in one read of the
convolution's output, keeping for the backward pass a byte per output: which corners hold the
maximum (none where the relu cuts it). Every loop runs on the thread that calls it: a batch is
split over threads above them, by its images (``training/shards.py``), so that the loops never
wait for one another; nothing here checks shapes (``cpu_conv.py`` does).

No fastmath: each value is the array path's arithmetic in the same order, so the gathers and the
pooling are exact, col2im adds the kernel offsets in the array path's order, and the bias's
gradient is summed row after row as NumPy's ``sum(axis=0)`` sums it.
"""

from __future__ import annotations

import numpy as np

from .numba_cache import compiled

# Flat indices are unsigned: a signed index is checked for wrapping around from the end on every
# access, which keeps the copies from being vectorised (five times slower).
U = np.uint64


@compiled()
def im2col(x, c, k, pad, oh, ow, cols):  # pragma: no cover - compiled
    # cols[(i, oy, ox), (dy, dx, ch)] = x[i, oy + dy - pad, (ox + dx - pad) * c + ch], 0 outside:
    # per output position and kernel row dy, one run of k * c values, contiguous in x.
    n, h, wc = x.shape
    run = k * c
    src_flat, out = x.reshape(-1), cols.reshape(-1)
    for i in range(n):
        for oy in range(oh):
            for ox in range(ow):
                row = ((i * oh + oy) * ow + ox) * k * run
                src = (ox - pad) * c
                # The part of a kernel row inside the image (none when it lies in the padding).
                first = min(run, max(0, -src))
                last = max(first, min(run, wc - src))
                for dy in range(k):
                    iy = oy + dy - pad
                    base = U(row + dy * run)
                    if iy < 0 or iy >= h:
                        first_in, last_in = run, run
                    else:
                        first_in, last_in = first, last
                    for t in range(U(first_in)):
                        out[base + t] = 0
                    start = U((i * h + iy) * wc + src + first_in)
                    for t in range(U(last_in - first_in)):
                        out[base + U(first_in) + t] = src_flat[start + t]
                    for t in range(U(last_in), U(run)):
                        out[base + t] = 0
    return cols


@compiled()
def col2im(d_cols, c, k, pad, oh, ow, d_x):  # pragma: no cover - compiled
    # d_x (N, H, W * C) = 0, then each patch's gradient added back where im2col took it: per
    # output position and kernel row dy, one contiguous run of k * c values. The positions are
    # taken last to first, so that each input's terms arrive in the array path's order (kernel
    # offsets (dy, dx) first to last) and the sums are its sums exactly.
    n, h, wc = d_x.shape
    run = k * c
    grads, out = d_cols.reshape(-1), d_x.reshape(-1)
    for i in range(n):
        image = U(i * h * wc)
        for t in range(U(h * wc)):
            out[image + t] = 0
        for oy in range(oh - 1, -1, -1):
            for ox in range(ow - 1, -1, -1):
                row = ((i * oh + oy) * ow + ox) * k * run
                src = (ox - pad) * c
                first = min(run, max(0, -src))
                last = max(first, min(run, wc - src))
                for dy in range(k - 1, -1, -1):
                    iy = oy + dy - pad
                    if iy < 0 or iy >= h:
                        continue
                    base = U(row + dy * run + first)
                    target = U((i * h + iy) * wc + src + first)
                    for t in range(U(last - first)):
                        out[target + t] += grads[base + t]
    return d_x


@compiled()
def pool_relu(z, bias, relu, pooled, corners):  # pragma: no cover - compiled
    # pooled = relu(max over each 2x2 window of z + bias), or without relu; corners: bit
    # 2 * ry + rx set for each corner equal to the maximum, none where the relu cuts it (its
    # gradient is 0).
    n, h2, w2, c = pooled.shape
    for i in range(n):
        for py in range(h2):
            for px in range(w2):
                for ch in range(c):
                    b = bias[ch]
                    v0 = z[i, 2 * py, 2 * px, ch] + b
                    v1 = z[i, 2 * py, 2 * px + 1, ch] + b
                    v2 = z[i, 2 * py + 1, 2 * px, ch] + b
                    v3 = z[i, 2 * py + 1, 2 * px + 1, ch] + b
                    best = max(max(v0, v1), max(v2, v3))
                    if best > 0 or not relu:
                        pooled[i, py, px, ch] = best
                        corners[i, py, px, ch] = ((v0 == best) | ((v1 == best) << 1)
                                                  | ((v2 == best) << 2) | ((v3 == best) << 3))
                    else:
                        pooled[i, py, px, ch] = 0
                        corners[i, py, px, ch] = 0
    return pooled, corners


@compiled()
def unpool_relu(grad, corners, d_z, sums):  # pragma: no cover - compiled
    # d_z (N, H, W, C): each window's gradient split evenly among its maximal corners, zero for
    # the others, for a cut relu, and for a dropped odd row or column; sums (C,): d_z summed
    # over its rows (n, y, x) in order, as NumPy sums d_z.reshape(-1, C) over axis 0 (the
    # gradient of the convolution's bias, the array path's to the last bit).
    n, h2, w2, c = grad.shape
    h, w = d_z.shape[1], d_z.shape[2]
    zero = grad.dtype.type(0)
    shares = np.empty((w2, c), grad.dtype)  # one row of windows: each maximal corner's share
    for ch in range(c):
        sums[ch] = 0
    for i in range(n):
        for py in range(h2):
            for px in range(w2):
                for ch in range(c):
                    bits = corners[i, py, px, ch]
                    ties = (bits & 1) + ((bits >> 1) & 1) + ((bits >> 2) & 1) + (bits >> 3)
                    shares[px, ch] = grad[i, py, px, ch] / grad.dtype.type(ties) if ties else zero
            for ry in range(2):
                y = 2 * py + ry
                for px in range(w2):
                    for rx in range(2):
                        bit = 1 << (2 * ry + rx)
                        for ch in range(c):
                            value = shares[px, ch] if corners[i, py, px, ch] & bit else zero
                            d_z[i, y, 2 * px + rx, ch] = value
                            sums[ch] += value
                if w > 2 * w2:  # zeros: nothing to add to the sums
                    for ch in range(c):
                        d_z[i, y, w - 1, ch] = 0
        if h > 2 * h2:
            d_z[i, h - 1] = 0
    return d_z
