"""Vectors of numbers in Numba kernels: an LLVM vector type and the few intrinsics the packed
products are written with (loads, stores, a fused multiply-add with a broadcast number, its scalar
twin; and a power of two for the softmax's exp). Numba has no vector type of its own; these build
LLVM's, whose width is the CPU's the kernels are compiled for: 512 bits where it has AVX-512, else
256 (`VECTOR_BITS`).

Each intrinsic does one thing the hardware does in one instruction, and rounds as it does: a fused
multiply-add rounds once, in every lane and in the scalar form alike, so a number summed in a vector
lane or on its own is the same number (packed.py relies on it: a row's numbers never depend on the
rows or columns beside it).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _named_cpu() -> str | None:
    """The CPU Numba was told to compile for (NUMBA_CPU_NAME), or None: this machine's."""
    from numba.core import config

    return config.CPU_NAME if config.CPU_NAME and config.CPU_NAME != "host" else None


def _vector_bits() -> int:
    """512 where the CPU Numba compiles for has AVX-512, else 256 (AVX2: sixteen vector registers,
    which a tile's eight accumulators of 512 bits would overflow once split in two)."""
    from numba.core import config

    if config.CPU_FEATURES:  # Numba told to compile for other features (a portable cache)
        return 512 if "+avx512f" in config.CPU_FEATURES else 256
    if _named_cpu():  # another CPU, its features unsaid: the safe width
        return 256
    import llvmlite.binding as llvm

    return 512 if llvm.get_host_cpu_features().get("avx512f", False) else 256


VECTOR_BITS = _vector_bits()


def _wide_tiles() -> bool:
    """Whether the packed products take 8 rows at a time (sixteen accumulators) rather than 4
    (eight): where a core runs 512-bit vectors at full width. Eight accumulators are exactly the
    fused multiply-adds two 512-bit units keep in flight at a latency of 4, so any stall shows.
    Measured, one core, (16 x 512) @ (512 x 2048) and the same bytes: AMD EPYC Zen 5 (`znver5`)
    192-201 -> 224-235 GFLOP/s, 48 rows 201 -> 238-254. A Zen 4 (`znver4`) splits 512-bit work in
    two and ran the wide tiles slower (112 -> 110 GFLOP/s, its training step 3.8 % slower). AVX2
    has sixteen registers, so sixteen accumulators spill; tiles of 8 were measured for it only as
    AVX2 code run on the Zen 5 (104-107 -> 122-125), which says nothing of a real AVX2 core. Both
    keep 4. On an AVX-512 CPU that is neither (Intel's), the tiles of 8 are not measured yet."""
    if VECTOR_BITS != 512:
        return False
    import llvmlite.binding as llvm

    return (_named_cpu() or llvm.get_host_cpu_name()) != "znver4"


WIDE_TILES = _wide_tiles()


class Vector(types.Type):
    """An LLVM vector of `lanes` numbers of type `dtype` (a Numba float type)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BITS // dtype.bitwidth
        super().__init__(name=f"vector{self.lanes}x{dtype}")


def _llvm_vector(dtype) -> ir.VectorType:
    return ir.VectorType(ir.FloatType() if dtype.bitwidth == 32 else ir.DoubleType(), VECTOR_BITS // dtype.bitwidth)


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _llvm_vector(fe_type.dtype))


def _contiguous(array) -> None:
    """Typing-time check: the vector loads and stores address an array's memory as flat, so a strided
    view would be read or written in the wrong places."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        from numba.core.errors import TypingError

        raise TypingError(f"vector loads and stores need a C-contiguous array, not {array}")


def _address(context, builder, array_type, array, index, vector):
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


@intrinsic
def vector_zero(typingctx, array):
    """A vector of zeros of `array`'s element type."""

    def codegen(context, builder, sig, args):
        vector = _llvm_vector(sig.args[0].dtype)
        return ir.Constant(vector, [0.0] * vector.count)

    return Vector(array.dtype)(array), codegen


@intrinsic
def vector_load(typingctx, array, index):
    """The vector at flat position `index` of a C-contiguous array (unaligned)."""
    _contiguous(array)

    def codegen(context, builder, sig, args):
        vector = _llvm_vector(sig.args[0].dtype)
        return builder.load(_address(context, builder, sig.args[0], args[0], args[1], vector), align=4)

    return Vector(array.dtype)(array, index), codegen


@intrinsic
def vector_store(typingctx, array, index, value):
    """Store a vector at flat position `index` of a C-contiguous array (unaligned)."""
    _contiguous(array)

    def codegen(context, builder, sig, args):
        vector = _llvm_vector(sig.args[0].dtype)
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1], vector), align=4)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def vector_fma(typingctx, acc, w, s):
    """acc + w * s, fused, s a number broadcast to every lane; all three of one number type (rows of
    one type against weights of another are refused when compiled, not rounded silently)."""
    if acc != w or s != acc.dtype:
        from numba.core.errors import TypingError

        raise TypingError(f"vector_fma needs one number type, not {acc}, {w} and {s}")

    def codegen(context, builder, sig, args):
        acc, w, s = args
        vector = _llvm_vector(sig.args[0].dtype)
        lane0 = ir.Constant(ir.IntType(32), 0)
        broadcast = builder.insert_element(ir.Constant(vector, ir.Undefined), s, lane0)
        broadcast = builder.shuffle_vector(broadcast, ir.Constant(vector, ir.Undefined),
                                           ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count))
        kind = "f32" if sig.args[0].dtype.bitwidth == 32 else "f64"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{vector.count}{kind}")
        return builder.call(fma, [w, broadcast, acc])

    return acc(acc, w, s), codegen


@intrinsic
def scalar_fma(typingctx, x, w, acc):
    """x * w + acc, fused (one rounding: what a vector lane of `vector_fma` computes), all of one
    float type."""
    if not (isinstance(x, types.Float) and x == w == acc):
        from numba.core.errors import TypingError

        raise TypingError(f"scalar_fma needs one number type, not {x}, {w} and {acc}")

    def codegen(context, builder, sig, args):
        number = args[0].type
        kind = "f32" if sig.args[0].bitwidth == 32 else "f64"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(number, [number] * 3), f"llvm.fma.{kind}")
        return builder.call(fma, list(args))

    return x(x, w, acc), codegen


@intrinsic
def power_of_two(typingctx, n):
    """2^n of a float32 n holding a whole number in [-126, 127], exactly: n + 127 written into a
    float32's exponent bits (in 32-bit integers, which vectorise at full width)."""
    if n != types.float32:
        from numba.core.errors import TypingError

        raise TypingError(f"power_of_two takes a float32, not {n}")

    def codegen(context, builder, sig, args):
        word = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], word), ir.Constant(word, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(word, 23)), ir.FloatType())

    return types.float32(n), codegen


@intrinsic
def vector_load_int8(typingctx, array, index, like):
    """The vector of `like`'s number type holding the int8 numbers at flat position `index` of a
    C-contiguous int8 array, each converted exactly (a sign extension and an integer-to-float
    conversion: one vector's lanes of bytes, 16 or 8)."""
    _contiguous(array)
    if array.dtype != types.int8:
        from numba.core.errors import TypingError

        raise TypingError(f"vector_load_int8 reads int8 numbers, not {array.dtype}")

    def codegen(context, builder, sig, args):
        vector = _llvm_vector(sig.args[2].dtype)
        bytes_ = ir.VectorType(ir.IntType(8), vector.count)
        raw = builder.load(_address(context, builder, sig.args[0], args[0], args[1], bytes_), align=1)
        return builder.sitofp(raw, vector)

    return Vector(like.dtype)(array, index, like), codegen


# ---- sixteen int32 lanes: integer dot products of bytes (AVX-512 VNNI; kernels/int8.py) -----------


def has_byte_dot_products() -> bool:
    """Whether the CPU Numba compiles for has AVX-512 VNNI (`vpdpbusd`: sixteen lanes, each adding
    four products of an unsigned and a signed byte to an int32, exactly)."""
    from numba.core import config

    if config.CPU_FEATURES:
        return "+avx512vnni" in config.CPU_FEATURES
    if config.CPU_NAME and config.CPU_NAME != "host":
        return False
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("avx512vnni", False))


class IntVector(types.Type):
    """An LLVM vector of sixteen int32."""

    def __init__(self):
        super().__init__(name="int32x16")


INT_VECTOR = IntVector()
_I32X16 = ir.VectorType(ir.IntType(32), 16)


@register_model(IntVector)
class _IntVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _I32X16)


@intrinsic
def int_vector_zero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_I32X16, [0] * 16)

    return INT_VECTOR(), codegen


@intrinsic
def byte_dots(typingctx, acc, q, index, word):
    """acc + the dot products of four unsigned bytes (`word`, an int32, broadcast to every lane) with
    each lane's four signed bytes of q[index : index + 64] (C-contiguous int8): `vpdpbusd`, exact."""
    _contiguous(q)

    def codegen(context, builder, sig, args):
        acc, q, index, word = args
        w = builder.load(_address(context, builder, sig.args[1], q, index, _I32X16), align=1)
        word = builder.trunc(word, ir.IntType(32)) if word.type.width > 32 else word
        lane0 = ir.Constant(ir.IntType(32), 0)
        b = builder.insert_element(ir.Constant(_I32X16, ir.Undefined), word, lane0)
        b = builder.shuffle_vector(b, ir.Constant(_I32X16, ir.Undefined), ir.Constant(_I32X16, [0] * 16))
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32X16, [_I32X16] * 3),
                                            "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc, b, w])

    return INT_VECTOR(acc, q, index, word), codegen


@intrinsic
def int_vector_store(typingctx, array, index, value):
    """Store sixteen int32 at flat position `index` of a C-contiguous int32 array."""
    _contiguous(array)

    def codegen(context, builder, sig, args):
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1], _I32X16), align=4)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen
