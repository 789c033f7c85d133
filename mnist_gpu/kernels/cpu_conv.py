"""The CPU's compiled passes for convolutions and 2x2 max pooling (the host side of
``cpu_conv_loops``): NumPy arrays in and out, the matrix products left to NumPy's BLAS.

``ConvPassCPU`` has the array path's functions (``mnist_gpu/model/layers.py``) at their
signatures, ``xp`` taken and ignored: ``im2col``, ``conv_forward``, ``conv_backward``,
``col2im``, ``pool_forward``, ``pool_backward``; and the fused block a convolutional network is
made of, a convolution followed by 2x2 max pooling and a relu:

* ``conv_pool_relu_forward(x, kernels, bias, shape) -> (y, saved)``: the bias added and the
  relu applied as the pooling reads the convolution's output, one byte per output kept for the
  backward pass (which corners hold the maximum);
* ``conv_pool_relu_backward(grad, saved, kernels, need_input) -> (d kernels, d bias, d input
  or None)``; the bias's gradient summed as the pooling's gradient is spread, in the array
  path's order.

Both give the three layers' results on the array path to the last bit. ``ConvBlockCPU`` runs
them as one step of a network's passes (``model.layer.Context.blocks``).

A pass keeps the buffers of its arrays (the patches, the convolution's output and their
gradients, the block's output) and reuses them from one batch to the next of the same shape,
so one pass serves one layer of one thread: a network makes one per block and per thread. What
it returns is valid until its next forward pass."""

from __future__ import annotations

import numpy as np

from ..model.layers import ConvShape
from . import cpu_conv_loops as loops


class ConvPassCPU:
    """The compiled passes of one convolutional layer (see the module's docstring)."""

    def __init__(self):
        self.buffers = {}

    def buffer(self, role: str, shape: tuple, dtype) -> np.ndarray:
        """This pass's array for ``role``, reused while its shape and dtype stay the same."""
        found = self.buffers.get(role)
        if found is None or found.shape != shape or found.dtype != dtype:
            found = self.buffers[role] = np.empty(shape, dtype)
        return found

    def ready(self, dtype) -> None:
        """Every loop compiled for ``dtype`` (or loaded from the cache) now, on a tiny image, so
        that a run's clock, started after, counts none of it."""
        shape = ConvShape(4, 4, 1, 3, 1)
        x = np.zeros((1, 4, 4, 1), dtype)
        self.col2im(self.im2col(x, shape), x, shape)
        pooled, corners = self.pool_forward(x)
        self.pool_backward(pooled, corners, pooled, x.shape)

    # ------------------------------------------------------------ the array path's functions

    def im2col(self, x, shape: ConvShape, indices=None, xp=None, out=None):
        n = x.shape[0]
        rows = n * shape.out_height * shape.out_width
        cols = out if out is not None else np.empty(
            (rows, shape.k * shape.k * shape.channels), x.dtype)
        flat = np.ascontiguousarray(x).reshape(n, shape.height, shape.width * shape.channels)
        return loops.im2col(flat, shape.channels, shape.k, shape.pad, shape.out_height,
                            shape.out_width, cols)

    def conv_forward(self, x, kernels, bias, shape: ConvShape, indices=None, xp=None):
        cols = self.im2col(x, shape)
        out = cols @ kernels
        if bias is not None:
            out += bias
        return out.reshape(x.shape[0], shape.out_height, shape.out_width, -1), cols

    def conv_backward(self, grad_out, x, cols, kernels, shape: ConvShape, xp=None,
                      need_input=True):
        g = grad_out.reshape(-1, kernels.shape[1])
        d_kernels = cols.T @ g
        d_bias = g.sum(axis=0)
        if not need_input:
            return d_kernels, d_bias, None
        return d_kernels, d_bias, self.col2im(g @ kernels.T, x, shape)

    def col2im(self, d_cols, x, shape: ConvShape, xp=None, out=None):
        n = x.shape[0]
        d_x = out if out is not None else np.empty(x.shape, d_cols.dtype)
        flat = d_x.reshape(n, shape.height, shape.width * shape.channels)
        loops.col2im(d_cols, shape.channels, shape.k, shape.pad, shape.out_height,
                     shape.out_width, flat)
        return d_x

    def pool_forward(self, x, xp=None):
        """(2x2 max pooling of ``x``, which corners hold each maximum)."""
        n, h, w, c = x.shape
        pooled = np.empty((n, h // 2, w // 2, c), x.dtype)
        corners = np.empty(pooled.shape, np.uint8)
        loops.pool_relu(np.ascontiguousarray(x), np.zeros(c, x.dtype), False, pooled, corners)
        return pooled, corners

    def pool_backward(self, grad_out, corners, out, input_shape, xp=None):
        return loops.unpool_relu(np.ascontiguousarray(grad_out), corners,
                                 np.empty(input_shape, grad_out.dtype),
                                 np.empty(input_shape[3], grad_out.dtype))

    # ---------------------------------------------------------- the fused convolution block

    def conv_pool_relu_forward(self, x, kernels, bias, shape: ConvShape):
        """relu(max pool 2x2(conv(x) + bias)): (y (N, out_h // 2, out_w // 2, F), saved)."""
        n, filters = x.shape[0], kernels.shape[1]
        oh, ow = shape.out_height, shape.out_width
        cols = self.im2col(x, shape, out=self.buffer(
            "cols", (n * oh * ow, shape.k * shape.k * shape.channels), x.dtype))
        z = np.matmul(cols, kernels, out=self.buffer("z", (n * oh * ow, filters), x.dtype))
        pooled = self.buffer("pooled", (n, oh // 2, ow // 2, filters), x.dtype)
        corners = self.buffer("corners", pooled.shape, np.uint8)
        loops.pool_relu(z.reshape(n, oh, ow, filters),
                        bias if bias is not None else np.zeros(filters, x.dtype), True, pooled,
                        corners)
        return pooled, (x, cols, corners, shape)

    def conv_pool_relu_backward(self, grad, saved, kernels, need_input=True):
        """(d kernels, d bias, d input or None) of ``conv_pool_relu_forward`` from the gradient
        of its output."""
        x, cols, corners, shape = saved
        n, filters = x.shape[0], kernels.shape[1]
        d_bias = np.empty(filters, grad.dtype)
        d_z = loops.unpool_relu(np.ascontiguousarray(grad), corners, self.buffer(
            "d_z", (n, shape.out_height, shape.out_width, filters), grad.dtype), d_bias)
        g = d_z.reshape(-1, filters)
        d_kernels = cols.T @ g
        if not need_input:
            return d_kernels, d_bias, None
        d_cols = np.matmul(g, kernels.T, out=self.buffer("d_cols", cols.shape, grad.dtype))
        return d_kernels, d_bias, self.col2im(d_cols, x, shape,
                                              out=self.buffer("d_x", x.shape, grad.dtype))


class ConvBlockCPU:
    """``convFxK``, ``pool2`` and ``relu`` (the layers of ``model/conv.py`` and ``dense.py``) as
    one step of a network's passes, through one ``ConvPassCPU``: the block of
    ``model.layer.Context.blocks``, for one thread's passes."""

    def __init__(self, layers):
        self.conv, self.fused = layers[0], ConvPassCPU()

    def forward(self, params, x, xp, ctx):
        shape = self.conv.shape
        x = x.reshape(x.shape[0], shape.height, shape.width, shape.channels)
        kernels = params[0]
        return self.fused.conv_pool_relu_forward(x, kernels[0], kernels[1] if self.conv.bias
                                                 else None, shape)

    def backward(self, params, saved, grad, xp, ctx, need_input=True):
        d_kernels, d_bias, grad_in = self.fused.conv_pool_relu_backward(
            grad, saved, params[0][0], need_input)
        return [[d_kernels] + ([d_bias] if self.conv.bias else []), [], []], grad_in
