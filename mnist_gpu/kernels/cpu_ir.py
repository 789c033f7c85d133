"""The LLVM IR that the row operations (``cpu_rows.py``) are built from: vectors of 16 lanes, and
the arrays and lit-pixel lists of a loop read through opaque pointers.

The IR is written for opaque pointers (``ir.PointerType()``), as llvmlite's deprecation of typed
pointers asks: every address is computed by a GEP that names its element type and every load names
the type it loads, so nothing depends on a pointer's pointee type (tests/test_cpu_rows.py compiles
the passes with llvmlite's typed pointers turned off and compares their weights).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils

from ..model.tutorial import scale_images

LANES = 16

I32 = ir.IntType(32)
I64 = ir.IntType(64)
# The opaque pointer: an address with no element type (what every pointer is in LLVM itself).
POINTER = ir.PointerType()


def lanes_type(context, dtype):
    return ir.VectorType(context.get_value_type(dtype), LANES)


def as_i64(builder, value):
    return builder.sext(value, I64) if value.type.width < 64 else value


def splat(builder, scalar, vector_type):
    """A vector with ``scalar`` in every lane."""
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                   ir.Constant(I32, 0))
    return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, LANES), [0] * LANES))


def vector_of_tuple(builder, tup, vector_type):
    vec = ir.Constant(vector_type, ir.Undefined)
    for lane in range(LANES):
        vec = builder.insert_element(vec, builder.extract_value(tup, lane),
                                     ir.Constant(I32, lane))
    return vec


def tuple_of_vector(builder, vec, tuple_type):
    tup = ir.Constant(tuple_type, ir.Undefined)
    for lane in range(LANES):
        tup = builder.insert_value(tup, builder.extract_element(vec, ir.Constant(I32, lane)),
                                   lane)
    return tup


class ArrayArg:
    """A C-contiguous array argument inside a codegen: its shape, and its data as an opaque
    pointer, from which each element's address is one GEP that names the element type."""

    def __init__(self, context, builder, array_type, value):
        self.builder = builder
        self.element = context.get_value_type(array_type.dtype)
        self.shape = cgutils.unpack_tuple(
            builder, context.make_array(array_type)(context, builder, value).shape)
        # The data pointer read from the array's struct as an opaque pointer. Numba's structs
        # still hold typed pointers, and llvmlite's bitcast from one to ``ptr`` returns it
        # unchanged (the two types compare equal), which leaves a typed pointer that refuses to
        # store a vector; the load's own type makes it opaque. LLVM folds the stack slot away.
        field = context.data_model_manager[array_type].get_field_position("data")
        slot = cgutils.alloca_once_value(builder, value)
        self.data = builder.load(
            builder.gep(slot, [ir.Constant(I32, 0), ir.Constant(I32, field)], inbounds=True,
                        source_etype=value.type),
            typ=POINTER)

    def address(self, inds):
        """The address of ``array[inds]`` (64-bit indices, unchecked): the sum of each index
        times the product of the sizes after it, as Numba indexes a C-contiguous array."""
        builder = self.builder
        offset = ir.Constant(I64, 0)
        for axis, index in enumerate(inds):
            step = ir.Constant(I64, 1)
            for size in self.shape[axis + 1:]:
                step = builder.mul(step, size)
            offset = builder.add(offset, builder.mul(index, step))
        return builder.gep(self.data, [offset], source_etype=self.element)

    def load(self, inds):
        """The element ``array[inds]``."""
        return self.builder.load(self.address(inds), typ=self.element)


class LitPixelReader:
    """Loads of the listing's entries and of the 16-lane rows they name, inside a codegen."""

    def __init__(self, context, builder, rows_type, rows, indices_type, indices, values_type,
                 values):
        self.builder = builder
        self.rows = ArrayArg(context, builder, rows_type, rows)
        self.indices = ArrayArg(context, builder, indices_type, indices)
        self.values = ArrayArg(context, builder, values_type, values)
        self.vector_type = lanes_type(context, rows_type.dtype)

    def pixel(self, t):
        """The pixel number of entry ``t``, as a 64-bit integer."""
        return as_i64(self.builder, self.indices.load([t]))

    def value(self, t):
        """The value of entry ``t`` in the weights' type, splatted to all lanes: as listed, or
        for a uint8 pixel its entry in ``pixel_scale``'s table."""
        builder, element = self.builder, self.vector_type.element
        value = self.values.load([t])
        if value.type != element:
            table, table_type = pixel_scale(builder.module, element)
            at = builder.gep(table, [ir.Constant(I64, 0), builder.zext(value, I64)],
                             inbounds=True, source_etype=table_type)
            value = builder.load(at, typ=element)
        return splat(builder, value, self.vector_type)

    def entry(self, t):
        """(the address of the 16-lane row of lit pixel ``t``, its value splatted to all
        lanes)."""
        return self.rows.address([self.pixel(t), ir.Constant(I64, 0)]), self.value(t)


def pixel_scale(module, float_type):
    """(a constant table of the 256 pixel values as ``scale_images`` scales them, ``p / 255`` in
    the weights' dtype, its type), so that a pass over uint8 pixels computes with the very bits
    of the dense copy it never builds."""
    dtype = np.dtype(np.float32 if isinstance(float_type, ir.FloatType) else np.float64)
    table_type = ir.ArrayType(float_type, 256)
    name = f"mnist_gpu_pixel_scale_{dtype.name}"
    table = module.globals.get(name)
    if table is None:
        scaled = scale_images(np.arange(256, dtype=np.uint8), dtype, xp=np)
        table = cgutils.global_constant(module, name,
                                        ir.Constant(table_type, [float(v) for v in scaled]))
    return table, table_type


def for_each_lit_pixel(builder, first, last):
    return cgutils.for_range_slice(builder, as_i64(builder, first), as_i64(builder, last),
                                   ir.Constant(I64, 1), inc=True)
