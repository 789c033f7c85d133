"""The array path of convolution and 2x2 max pooling, forward and backward, written once against
``xp`` (the layers that use it are ``conv.py``'s).

The array API has neither strided views nor scatter-add, so:

* a convolution is im2col and one matrix product: the patches of every output position are
  gathered with ``xp.take`` through an index array computed once per shape on the host
  (``ConvShape``), a padded position pointing at an extra zero column rather than at padding
  that would have to be built;
* the gradient of a convolution's input is the product of the output's gradient with the
  kernels (every patch's gradient), added back where each patch came from (``col2im``): one
  in-place addition of a shifted window per kernel offset, slicing and assignment being
  standard where scatter-add is not;
* 2x2 max pooling and its gradient are reshapes: each window a pair of axes, its maximum over
  them, and the gradient sent back to the maximum (split evenly between ties).

Activations are (N, height, width, channels), so a convolution's product is already in that
layout and no transpose is needed; kernels are (k * k * in_channels, out_channels) matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvShape:
    """A k x k, stride-1 convolution of (height, width, channels) inputs, ``pad`` zeros around.

    ``host_indices()`` are the im2col positions into an image flattened with one zero appended:
    for each output position, its k x k x channels inputs, in the kernel's order (uploaded once
    per model by ``mlp.ConvPlan``)."""

    height: int
    width: int
    channels: int
    k: int
    pad: int

    @property
    def out_height(self) -> int:
        return self.height + 2 * self.pad - self.k + 1

    @property
    def out_width(self) -> int:
        return self.width + 2 * self.pad - self.k + 1

    def host_indices(self) -> np.ndarray:
        oy = np.arange(self.out_height)[:, None, None, None, None]
        ox = np.arange(self.out_width)[None, :, None, None, None]
        dy = np.arange(self.k)[None, None, :, None, None]
        dx = np.arange(self.k)[None, None, None, :, None]
        c = np.arange(self.channels)[None, None, None, None, :]
        iy, ix = oy + dy - self.pad, ox + dx - self.pad
        inside = (iy >= 0) & (iy < self.height) & (ix >= 0) & (ix < self.width)
        flat = (iy * self.width + ix) * self.channels + c
        zero = self.height * self.width * self.channels  # the appended zero column
        return np.where(inside, flat, zero).reshape(-1).astype(np.int64)


def im2col(x, shape: ConvShape, indices, xp):
    """(N, H, W, C) -> (N * out_h * out_w, k * k * C): every output position's inputs."""
    n = x.shape[0]
    flat = xp.reshape(x, (n, shape.height * shape.width * shape.channels))
    flat = xp.concat([flat, xp.zeros_like(flat[:, :1])], axis=1)  # on x's device, in its dtype
    cols = xp.take(flat, indices, axis=1)
    return xp.reshape(cols, (n * shape.out_height * shape.out_width,
                             shape.k * shape.k * shape.channels))


def conv_forward(x, kernels, bias, shape: ConvShape, indices, xp):
    """(output (N, out_h, out_w, F), the patches, kept for the backward pass)."""
    cols = im2col(x, shape, indices, xp)
    out = cols @ kernels
    if bias is not None:
        out = out + bias
    return xp.reshape(out, (x.shape[0], shape.out_height, shape.out_width, kernels.shape[1])), cols


def conv_backward(grad_out, x, cols, kernels, shape: ConvShape, xp, need_input=True):
    """(d kernels, d bias, d input or None) from the output's gradient (N, out_h, out_w, F),
    for the convolution of ``x`` whose patches were ``cols``."""
    filters = kernels.shape[1]
    g = xp.reshape(grad_out, (-1, filters))
    d_kernels = cols.T @ g
    d_bias = xp.sum(g, axis=0)
    if not need_input:
        return d_kernels, d_bias, None
    return d_kernels, d_bias, col2im(g @ kernels.T, x, shape, xp)


def col2im(d_cols, x, shape: ConvShape, xp):
    """The gradient of ``x`` from its patches' gradients (N * out_h * out_w, k * k * C): each
    patch's values added back where ``im2col`` took them.

    One slice per kernel offset (dy, dx): the values at that offset of every patch come from one
    shifted window of the input, so they are added to it in one step, k * k steps in all, the
    window clipped where it reaches into the padding. The textbook route for stride 1, the
    full convolution of the output's gradient with the flipped kernels, gathers k * k values
    per input position and multiplies twice as much (docs/performance.md has the timings)."""
    n, k, pad = x.shape[0], shape.k, shape.pad
    oh, ow = shape.out_height, shape.out_width
    patches = xp.reshape(d_cols, (n, oh, ow, k, k, shape.channels))
    d_input = xp.zeros_like(x)
    for dy in range(k):
        y0, y1 = max(0, pad - dy), min(oh, shape.height + pad - dy)  # rows inside the input
        for dx in range(k):
            x0, x1 = max(0, pad - dx), min(ow, shape.width + pad - dx)
            if y1 <= y0 or x1 <= x0:
                continue
            d_input[:, y0 + dy - pad:y1 + dy - pad, x0 + dx - pad:x1 + dx - pad, :] += \
                patches[:, y0:y1, x0:x1, dy, dx, :]
    return d_input


def pool_forward(x, xp):
    """2x2 max pooling of (N, H, W, C) (an odd last row or column is dropped): (output, the
    windows, kept for the backward pass)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    if (h2 * 2, w2 * 2) != (h, w):
        x = x[:, :2 * h2, :2 * w2, :]
    windows = xp.reshape(x, (n, h2, 2, w2, 2, c))
    # The larger of four corners, elementwise: faster than a reduction over the two window axes,
    # which walks memory against its grain.
    top = xp.maximum(windows[:, :, 0, :, 0, :], windows[:, :, 0, :, 1, :])
    bottom = xp.maximum(windows[:, :, 1, :, 0, :], windows[:, :, 1, :, 1, :])
    return xp.maximum(top, bottom), windows


def pool_backward(grad_out, windows, out, input_shape, xp):
    """The gradient of 2x2 max pooling: each window's gradient to its maximum (split evenly
    between equal maxima), zero for a dropped odd row or column."""
    n, h, w, c = input_shape
    is_max = xp.astype(windows == out[:, :, None, :, None, :], windows.dtype)
    # How many corners share the maximum, added corner by corner (as the forward pass compares
    # them, and faster than a reduction for the same reason).
    ties = ((is_max[:, :, 0:1, :, 0:1, :] + is_max[:, :, 0:1, :, 1:2, :])
            + (is_max[:, :, 1:2, :, 0:1, :] + is_max[:, :, 1:2, :, 1:2, :]))
    grad = xp.reshape(is_max * (grad_out[:, :, None, :, None, :] / ties),
                      (n, 2 * out.shape[1], 2 * out.shape[2], c))
    if grad.shape[1] != h:
        grad = xp.concat([grad, xp.zeros_like(grad[:, :1, :, :])], axis=1)
    if grad.shape[2] != w:
        grad = xp.concat([grad, xp.zeros_like(grad[:, :, :1, :])], axis=2)
    return grad

