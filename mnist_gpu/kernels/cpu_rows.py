"""Sixteen-lane row operations over lit pixels, for the compiled CPU loops (Numba intrinsics).

The compiled passes of ``cpu_loops`` work on weights padded to 16 columns (the 10 outputs and 6
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

Types are checked when a loop is compiled: each intrinsic refuses (a Numba ``TypingError``) any
argument whose type would make its IR wrong, such as weights that are not a C-contiguous float32 or
float64 array of the right dimensions, a listing whose values are neither in the weights' dtype
nor uint8 or whose indices are not int16, int32 or int64, or a delta of another dtype. Values are
not: ``W`` and ``G`` must have 16 columns and ``indices`` must name valid rows; the callers check
shapes and the listing guarantees the indices.

The IR is written for opaque pointers (``cpu_ir.py``).

The values of the lit pixels are either in the weights' dtype or uint8 pixels; a pixel is then
scaled as it is read, through a table of ``scale_images`` over the 256 pixel values, so that the
pass computes with exactly the values of the dense float copy, without building it (a list of
uint8 pixels and int16 indices is 3 bytes per lit pixel, against 8 in float32).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .cpu_ir import (
    I64, LANES, ArrayArg, LitPixelReader, as_i64, for_each_lit_pixel, splat, tuple_of_vector,
    lanes_type, vector_of_tuple,
)


_FLOATS = (types.float32, types.float64)
_INDICES = (types.int16, types.int32, types.int64)


# --------------------------------------------------------------------------- type guards
# The intrinsics emit vector loads and stores of whole 16-lane rows, so a row array must be
# C-contiguous in float32 or float64, and every operand of one operation must share its dtype:
# anything else would be wrong IR or a wrong address. Checked when a loop is typed, never at run
# time.


def _require(condition, message):
    if not condition:
        raise TypingError(message)


def _check_rows(name, array, ndim, writes=False):
    """A C-contiguous ``ndim``-d float32 or float64 array (writable if the operation stores)."""
    _require(isinstance(array, types.Array) and array.ndim == ndim and array.layout == "C"
             and array.dtype in _FLOATS and (array.mutable or not writes),
             f"{name} must be a{' writable' if writes else ''} C-contiguous {ndim}-d array of "
             f"float32 or float64, not {array}")


def _check_listing(indices, values, dtype):
    """The lit pixels' numbers (int16, int32 or int64) and values (in the weights' dtype, or
    uint8 pixels), 1-d and C-contiguous."""
    _require(isinstance(indices, types.Array) and indices.ndim == 1 and indices.layout == "C"
             and indices.dtype in _INDICES,
             f"indices must be a C-contiguous 1-d array of int16, int32 or int64, not {indices}")
    _require(isinstance(values, types.Array) and values.ndim == 1 and values.layout == "C"
             and values.dtype in (dtype, types.uint8),
             f"values must be a C-contiguous 1-d array of {dtype} (the weights' dtype) or of "
             f"uint8 pixels, not {values}")


def _check_integers(**named):
    for name, value in named.items():
        _require(isinstance(value, types.Integer), f"{name} must be an integer, not {value}")


def _check_lanes(name, value, dtype):
    _require(value == types.UniTuple(dtype, LANES),
             f"{name} must be a {LANES}-tuple of {dtype} (the weights' dtype), not {value}")


# --------------------------------------------------------------------------- the intrinsics


@intrinsic
def lit_scores(typingctx, W, indices, values, first, last):
    """``x @ W`` over the lit pixels ``first:last``, in pixel order: a 16-tuple of W's dtype."""
    _check_rows("W", W, 2)
    _check_listing(indices, values, W.dtype)
    _check_integers(first=first, last=last)
    result_type = types.UniTuple(W.dtype, LANES)

    def codegen(context, builder, signature, args):
        W_, indices_, values_, first_, last_ = args
        reader = LitPixelReader(context, builder, W, W_, indices, indices_, values, values_)
        vector_type = reader.vector_type
        # The running sum lives in a stack slot that LLVM promotes to a register.
        total = cgutils.alloca_once_value(builder, ir.Constant(vector_type, [0.0] * LANES))
        with for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            product = builder.fmul(value, builder.load(row, typ=vector_type, align=4))
            builder.store(builder.fadd(builder.load(total, typ=vector_type), product), total)
        return tuple_of_vector(builder, builder.load(total, typ=vector_type),
                                context.get_value_type(result_type))

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
    _check_rows("W16s", W16s, 3)
    _check_listing(indices, values, W16s.dtype)
    _check_rows("out", out, 2, writes=True)
    _require(out.dtype == W16s.dtype,
             f"out must be in the weights' dtype {W16s.dtype}, not {out.dtype}")
    _check_integers(vector=vector, count=count, first=first, last=last, label=label,
                    columns=columns)

    def codegen(context, builder, signature, args):
        W_, vector_, count_, indices_, values_, first_, last_, label_, columns_, out_ = args
        reader = LitPixelReader(context, builder, W16s, W_, indices, indices_, values, values_)
        out_array = ArrayArg(context, builder, out, out_)
        vector_type = reader.vector_type

        zero = ir.Constant(vector_type, [0.0] * LANES)
        totals = [cgutils.alloca_once_value(builder, zero) for _ in range(SCORE_GROUP)]
        v0, n = as_i64(builder, vector_), as_i64(builder, count_)
        used = [builder.icmp_signed("<", ir.Constant(I64, q), n) for q in range(SCORE_GROUP)]
        with for_each_lit_pixel(builder, first_, last_) as (t, _):
            pixel, value = reader.pixel(t), reader.value(t)
            for q, total in enumerate(totals):
                with builder.if_then(used[q], likely=True):
                    v = builder.add(v0, ir.Constant(I64, q))
                    row = reader.rows.address([v, pixel, ir.Constant(I64, 0)])
                    product = builder.fmul(value, builder.load(row, typ=vector_type, align=4))
                    builder.store(builder.fadd(builder.load(total, typ=vector_type), product),
                                  total)
        for q, total in enumerate(totals):
            with builder.if_then(used[q], likely=True):
                column0 = builder.mul(builder.add(v0, ir.Constant(I64, q)),
                                      ir.Constant(I64, LANES))
                onehot = _onehot(builder, vector_type, label_, column0,
                                 as_i64(builder, columns_))
                target = out_array.address([ir.Constant(I64, q), ir.Constant(I64, 0)])
                builder.store(builder.fsub(builder.load(total, typ=vector_type), onehot), target,
                              align=4)
        return context.get_dummy_value()

    return (types.void(W16s, vector, count, indices, values, first, last, label, columns, out),
            codegen)


@intrinsic
def delta_row(typingctx, out, q):
    """Row ``q`` of a (group, 16) array as a 16-tuple, the form the row updates take."""
    _check_rows("out", out, 2)
    _check_integers(q=q)
    result_type = types.UniTuple(out.dtype, LANES)

    def codegen(context, builder, signature, args):
        out_, q_ = args
        vector_type = lanes_type(context, out.dtype)
        row = ArrayArg(context, builder, out, out_).address([as_i64(builder, q_),
                                                          ir.Constant(I64, 0)])
        vec = builder.load(row, typ=vector_type, align=4)
        return tuple_of_vector(builder, vec, context.get_value_type(result_type))

    return result_type(out, q), codegen


def _onehot(builder, vector_type, label, column0, columns):
    """One where lane ``l``'s column ``column0 + l`` has output (``% 10``) ``label`` and lies
    within the first ``columns`` columns; zero elsewhere."""
    i64_vector = ir.VectorType(I64, LANES)
    column = builder.add(splat(builder, column0, i64_vector),
                         ir.Constant(i64_vector, list(range(LANES))))
    output = builder.urem(column, ir.Constant(i64_vector, [10] * LANES))
    label64 = builder.zext(label, I64) if label.type.width < 64 else label
    is_label = builder.and_(
        builder.icmp_unsigned("==", output, splat(builder, label64, i64_vector)),
        builder.icmp_signed("<", column, splat(builder, columns, i64_vector)))
    return builder.select(is_label, ir.Constant(vector_type, [1.0] * LANES),
                          ir.Constant(vector_type, [0.0] * LANES))


@intrinsic
def minus_onehot(typingctx, scores, label):
    """``scores - onehot(label)``: one subtracted from lane ``label``, zero from the others."""
    _require(isinstance(scores, types.UniTuple) and scores.count == LANES
             and scores.dtype in _FLOATS,
             f"scores must be a {LANES}-tuple of float32 or float64, not {scores}")
    _check_integers(label=label)

    def codegen(context, builder, signature, args):
        scores_, label_ = args
        vector_type = lanes_type(context, scores.dtype)
        onehot = _onehot(builder, vector_type, label_, ir.Constant(I64, 0),
                         ir.Constant(I64, 10))
        delta = builder.fsub(vector_of_tuple(builder, scores_, vector_type), onehot)
        return tuple_of_vector(builder, delta, context.get_value_type(scores))

    return scores(scores, label), codegen


@intrinsic
def add_lit_outer(typingctx, G, indices, values, first, last, delta):
    """``G[k] += x[k] * delta`` for every lit pixel ``k`` of ``first:last``."""
    _check_rows("G", G, 2, writes=True)
    _check_listing(indices, values, G.dtype)
    _check_integers(first=first, last=last)
    _check_lanes("delta", delta, G.dtype)

    def codegen(context, builder, signature, args):
        G_, indices_, values_, first_, last_, delta_ = args
        reader = LitPixelReader(context, builder, G, G_, indices, indices_, values, values_)
        vector_type = reader.vector_type
        delta_vector = vector_of_tuple(builder, delta_, vector_type)
        with for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            product = builder.fmul(value, delta_vector)
            builder.store(builder.fadd(builder.load(row, typ=vector_type, align=4), product),
                          row, align=4)
        return context.get_dummy_value()

    return types.void(G, indices, values, first, last, delta), codegen


@intrinsic
def sub_lit_outer(typingctx, W, indices, values, first, last, delta, alpha):
    """``W[k] -= alpha * (x[k] * delta)`` for every lit pixel ``k`` of ``first:last``: the
    tutorial's per-image update, rounded as the array path rounds it. ``alpha``: one number or
    one per lane, in W's dtype."""
    _check_rows("W", W, 2, writes=True)
    _check_listing(indices, values, W.dtype)
    _check_integers(first=first, last=last)
    _check_lanes("delta", delta, W.dtype)
    _require(alpha == W.dtype or alpha == types.UniTuple(W.dtype, LANES),
             f"alpha must be a {W.dtype} or a {LANES}-tuple of {W.dtype} (the weights' dtype), "
             f"not {alpha}")

    def codegen(context, builder, signature, args):
        W_, indices_, values_, first_, last_, delta_, alpha_ = args
        reader = LitPixelReader(context, builder, W, W_, indices, indices_, values, values_)
        vector_type = reader.vector_type
        delta_vector = vector_of_tuple(builder, delta_, vector_type)
        alpha_vector = (vector_of_tuple(builder, alpha_, vector_type)
                        if isinstance(alpha, types.UniTuple)
                        else splat(builder, alpha_, vector_type))
        with for_each_lit_pixel(builder, first_, last_) as (t, _):
            row, value = reader.entry(t)
            step = builder.fmul(alpha_vector, builder.fmul(value, delta_vector))
            builder.store(builder.fsub(builder.load(row, typ=vector_type, align=4), step), row,
                          align=4)
        return context.get_dummy_value()

    return types.void(W, indices, values, first, last, delta, alpha), codegen
