"""Sixteen-lane row operations over lit pixels, for the compiled CPU loops (Numba intrinsics).

The compiled passes of ``fused_cpu`` work on weights padded to 16 columns (the 10 outputs and 6
zeros), so that a row of weights is one SIMD vector: 64 bytes in float32, one AVX-512 register.
Numba does not emit such vector code for a 16-element loop by itself: it unrolls the loop into
scalars, and the pass that would pack them back (LLVM's SLP vectoriser) is off by default in Numba
because of miscompilations (numba/numba#8852). These intrinsics therefore write the LLVM vector
operations directly, for the steps of a sparse forward and backward pass:

* ``lit_scores(W, indices, values, first, last)``: ``x @ W`` over the lit pixels ``first:last``,
  in pixel order, as a 16-tuple;
* ``minus_onehot(scores, label)``: ``scores - onehot(label)``, the tutorial's delta;
* ``lit_deltas_group(W16s, vector, count, indices, values, first, last, label, columns, out)``:
  the same deltas for several vectors of a stack of models side by side, scored in one walk
  (``delta_row`` reads them back as 16-tuples);
* ``add_lit_outer(G, indices, values, first, last, delta)``: ``G[k] += x[k] * delta`` for each
  lit pixel ``k``, the image's share of the gradient ``X^T delta``;
* ``sub_lit_outer(W, indices, values, first, last, delta, alpha)``: ``W[k] -= alpha * (x[k] *
  delta)``, the tutorial's per-image update; ``alpha`` is one number, or a 16-tuple of them (one
  per lane: models side by side, each with its own learning rate).

Each term is a separate multiply and add, as the array path rounds them (no fused multiply-add,
no reassociation): results differ from the dense product only by the order of the sums.

The values of the lit pixels are either in the weights' dtype or uint8 pixels; a pixel is then
scaled as it is read, through a table of ``scale_images`` over the 256 pixel values, so that the
pass computes with exactly the values of the dense float copy, without building it (a list of
uint8 pixels and int16 indices is 3 bytes per lit pixel, against 8 in float32).

``W`` and ``G`` must be C-contiguous 2-D arrays of 16 columns and ``indices`` must be valid rows:
the callers check shapes and the listing guarantees the indices, for nothing is checked here.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..model.tutorial import scale_images

LANES = 16

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


# --------------------------------------------------------------------------- IR helpers


def _vector_type(context, dtype):
    return ir.VectorType(context.get_value_type(dtype), LANES)


def _as_i64(builder, value):
    return builder.sext(value, _I64) if value.type.width < 64 else value


def _splat(builder, scalar, vector_type):
    """A vector with ``scalar`` in every lane."""
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                   ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _vector_of_tuple(builder, tup, vector_type):
    vec = ir.Constant(vector_type, ir.Undefined)
    for lane in range(LANES):
        vec = builder.insert_element(vec, builder.extract_value(tup, lane),
                                     ir.Constant(_I32, lane))
    return vec


def _item_pointer(context, builder, array_type, array, inds):
    """The address of ``array[inds]`` (a ``make_array`` struct), with no bounds check."""
    return cgutils.get_item_pointer2(
        context, builder, data=array.data, shape=cgutils.unpack_tuple(builder, array.shape),
        strides=cgutils.unpack_tuple(builder, array.strides), layout=array_type.layout,
        inds=inds, wraparound=False)


def _tuple_of_vector(builder, vec, tuple_type):
    tup = ir.Constant(tuple_type, ir.Undefined)
    for lane in range(LANES):
        tup = builder.insert_value(tup, builder.extract_element(vec, ir.Constant(_I32, lane)),
                                   lane)
    return tup


class _LitPixelReader:
    """Loads of the listing's entries and of the 16-lane rows they name, inside a codegen."""

    def __init__(self, context, builder, rows_type, rows, indices_type, indices, values_type,
                 values):
        self.context, self.builder = context, builder
        self.arrays = [(t, context.make_array(t)(context, builder, v))
                       for t, v in ((rows_type, rows), (indices_type, indices),
                                    (values_type, values))]
        self.vector_type = _vector_type(context, rows_type.dtype)

    def _pointer(self, which, indices):
        array_type, array = self.arrays[which]
        return _item_pointer(self.context, self.builder, array_type, array, indices)

    def entry(self, t):
        """(pointer to the 16-lane row of lit pixel ``t``, its value splatted to all lanes)."""
        builder = self.builder
        pixel = _as_i64(builder, builder.load(self._pointer(1, [t])))
        value = _lit_value(self.context, builder, self.arrays[2][0], self._pointer(2, [t]),
                           self.vector_type.element)
        row = builder.bitcast(self._pointer(0, [pixel, ir.Constant(_I64, 0)]),
                              self.vector_type.as_pointer())
        return row, _splat(builder, value, self.vector_type)


def _lit_value(context, builder, values_type, pointer, float_type):
    """A lit pixel's value in the weights' type: as listed, or for a uint8 pixel its entry in
    ``_pixel_scale``'s table."""
    if values_type.dtype != types.uint8:
        return builder.load(pointer)
    table = _pixel_scale(builder.module, float_type)
    pixel = builder.zext(builder.load(pointer), _I64)
    return builder.load(builder.gep(table, [ir.Constant(_I64, 0), pixel], inbounds=True))


def _pixel_scale(module, float_type):
    """A constant table of the 256 pixel values as ``scale_images`` scales them (``p / 255`` in
    the weights' dtype), so that a pass over uint8 pixels computes with the very bits of the
    dense copy it never builds."""
    dtype = np.dtype(np.float32 if isinstance(float_type, ir.FloatType) else np.float64)
    name = f"mnist_gpu_pixel_scale_{dtype.name}"
    table = module.globals.get(name)
    if table is None:
        scaled = scale_images(np.arange(256, dtype=np.uint8), dtype, xp=np)
        table = cgutils.global_constant(module, name, ir.Constant(
            ir.ArrayType(float_type, 256), [float(v) for v in scaled]))
    return table


def _for_each_lit_pixel(builder, first, last):
    return cgutils.for_range_slice(builder, _as_i64(builder, first), _as_i64(builder, last),
                                   ir.Constant(_I64, 1), inc=True)


# --------------------------------------------------------------------------- the intrinsics


@intrinsic
def lit_scores(typingctx, W, indices, values, first, last):
    """``x @ W`` over the lit pixels ``first:last``, in pixel order: a 16-tuple of W's dtype."""
    result_type = types.UniTuple(W.dtype, LANES)

    def codegen(context, builder, signature, args):
        W_, indices_, values_, first_, last_ = args
        reader = _LitPixelReader(context, builder, W, W_, indices, indices_, values, values_)
        vector_type = reader.vector_type
        # The running sum lives in a stack slot that LLVM promotes to a register.
        total = cgutils.alloca_once_value(builder, ir.Constant(vector_type, [0.0] * LANES))
        with _for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            product = builder.fmul(value, builder.load(row, align=4))
            builder.store(builder.fadd(builder.load(total), product), total)
        return _tuple_of_vector(builder, builder.load(total), context.get_value_type(result_type))

    return result_type(W, indices, values, first, last), codegen


SCORE_GROUP = 4


@intrinsic
def lit_deltas_group(typingctx, W16s, vector, count, indices, values, first, last, label,
                     columns, out):
    """The deltas (scores minus the one-hot of ``label``) of the ``count`` (at most
    ``SCORE_GROUP``) vectors ``vector ...`` of a stack ``W16s`` (vectors, pixels, 16), into rows 0
    to ``count - 1`` of ``out`` (``count`` or more rows of 16; no other row is written). The
    vectors hold models side by side, ten columns each: lane ``l`` of vector ``v`` is column
    ``16 v + l`` of ``columns``, output ``% 10``, and the padding lanes past ``columns`` get no
    one-hot.
    The scores are ``lit_scores`` taken in one walk over the lit pixels with independent running
    sums, so that the additions of one vector do not wait for each other (each sum still in pixel
    order, as ``lit_scores`` takes it)."""

    def codegen(context, builder, signature, args):
        W_, vector_, count_, indices_, values_, first_, last_, label_, columns_, out_ = args
        rows = context.make_array(W16s)(context, builder, W_)
        index_array = context.make_array(indices)(context, builder, indices_)
        value_array = context.make_array(values)(context, builder, values_)
        out_array = context.make_array(out)(context, builder, out_)
        vector_type = _vector_type(context, W16s.dtype)

        def pointer(array_type, array, inds):
            return _item_pointer(context, builder, array_type, array, inds)

        zero = ir.Constant(vector_type, [0.0] * LANES)
        totals = [cgutils.alloca_once_value(builder, zero) for _ in range(SCORE_GROUP)]
        v0, n = _as_i64(builder, vector_), _as_i64(builder, count_)
        used = [builder.icmp_signed("<", ir.Constant(_I64, q), n) for q in range(SCORE_GROUP)]
        with _for_each_lit_pixel(builder, first_, last_) as (t, _):
            pixel = _as_i64(builder, builder.load(pointer(indices, index_array, [t])))
            value = _splat(builder, _lit_value(context, builder, values,
                                               pointer(values, value_array, [t]),
                                               vector_type.element), vector_type)
            for q, total in enumerate(totals):
                with builder.if_then(used[q], likely=True):
                    v = builder.add(v0, ir.Constant(_I64, q))
                    row = builder.bitcast(pointer(W16s, rows, [v, pixel, ir.Constant(_I64, 0)]),
                                          vector_type.as_pointer())
                    product = builder.fmul(value, builder.load(row, align=4))
                    builder.store(builder.fadd(builder.load(total), product), total)
        for q, total in enumerate(totals):
            with builder.if_then(used[q], likely=True):
                column0 = builder.mul(builder.add(v0, ir.Constant(_I64, q)),
                                      ir.Constant(_I64, LANES))
                onehot = _onehot(builder, vector_type, label_, column0,
                                 _as_i64(builder, columns_))
                target = builder.bitcast(
                    pointer(out, out_array, [ir.Constant(_I64, q), ir.Constant(_I64, 0)]),
                    vector_type.as_pointer())
                builder.store(builder.fsub(builder.load(total), onehot), target, align=4)
        return context.get_dummy_value()

    return (types.void(W16s, vector, count, indices, values, first, last, label, columns, out),
            codegen)


@intrinsic
def delta_row(typingctx, out, q):
    """Row ``q`` of a (group, 16) array as a 16-tuple, the form the row updates take."""
    result_type = types.UniTuple(out.dtype, LANES)

    def codegen(context, builder, signature, args):
        out_, q_ = args
        array = context.make_array(out)(context, builder, out_)
        vector_type = _vector_type(context, out.dtype)
        row = _item_pointer(context, builder, out, array,
                            [_as_i64(builder, q_), ir.Constant(_I64, 0)])
        vec = builder.load(builder.bitcast(row, vector_type.as_pointer()), align=4)
        return _tuple_of_vector(builder, vec, context.get_value_type(result_type))

    return result_type(out, q), codegen


def _onehot(builder, vector_type, label, column0, columns):
    """One where lane ``l``'s column ``column0 + l`` has output (``% 10``) ``label`` and lies
    within the first ``columns`` columns; zero elsewhere."""
    i64_vector = ir.VectorType(_I64, LANES)
    column = builder.add(_splat(builder, column0, i64_vector),
                         ir.Constant(i64_vector, list(range(LANES))))
    output = builder.urem(column, ir.Constant(i64_vector, [10] * LANES))
    label64 = builder.zext(label, _I64) if label.type.width < 64 else label
    is_label = builder.and_(
        builder.icmp_unsigned("==", output, _splat(builder, label64, i64_vector)),
        builder.icmp_signed("<", column, _splat(builder, columns, i64_vector)))
    return builder.select(is_label, ir.Constant(vector_type, [1.0] * LANES),
                          ir.Constant(vector_type, [0.0] * LANES))


@intrinsic
def minus_onehot(typingctx, scores, label):
    """``scores - onehot(label)``: one subtracted from lane ``label``, zero from the others."""

    def codegen(context, builder, signature, args):
        scores_, label_ = args
        vector_type = _vector_type(context, scores.dtype)
        onehot = _onehot(builder, vector_type, label_, ir.Constant(_I64, 0),
                         ir.Constant(_I64, 10))
        delta = builder.fsub(_vector_of_tuple(builder, scores_, vector_type), onehot)
        return _tuple_of_vector(builder, delta, context.get_value_type(scores))

    return scores(scores, label), codegen


@intrinsic
def add_lit_outer(typingctx, G, indices, values, first, last, delta):
    """``G[k] += x[k] * delta`` for every lit pixel ``k`` of ``first:last``."""

    def codegen(context, builder, signature, args):
        G_, indices_, values_, first_, last_, delta_ = args
        reader = _LitPixelReader(context, builder, G, G_, indices, indices_, values, values_)
        delta_vector = _vector_of_tuple(builder, delta_, reader.vector_type)
        with _for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            product = builder.fmul(value, delta_vector)
            builder.store(builder.fadd(builder.load(row, align=4), product), row, align=4)
        return context.get_dummy_value()

    return types.void(G, indices, values, first, last, delta), codegen


@intrinsic
def sub_lit_outer(typingctx, W, indices, values, first, last, delta, alpha):
    """``W[k] -= alpha * (x[k] * delta)`` for every lit pixel ``k`` of ``first:last``: the
    tutorial's per-image update, rounded as the array path rounds it."""

    def codegen(context, builder, signature, args):
        W_, indices_, values_, first_, last_, delta_, alpha_ = args
        reader = _LitPixelReader(context, builder, W, W_, indices, indices_, values, values_)
        delta_vector = _vector_of_tuple(builder, delta_, reader.vector_type)
        alpha_vector = (_vector_of_tuple(builder, alpha_, reader.vector_type)
                        if isinstance(alpha, types.UniTuple)
                        else _splat(builder, alpha_, reader.vector_type))
        with _for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            step = builder.fmul(alpha_vector, builder.fmul(value, delta_vector))
            builder.store(builder.fsub(builder.load(row, align=4), step), row, align=4)
        return context.get_dummy_value()

    return types.void(W, indices, values, first, last, delta, alpha), codegen
