"""Bad inputs to the data layouts (host side: NumPy, never traced).

Regressions of answers that used to be silently wrong: ids that overflow the
requested (or canonical) dtype wrapped around, a ``pad_value`` the dtype
cannot hold wrapped around, object arrays passed through as ``object``
dtype, an empty corpus gave an empty packing.
"""

from __future__ import annotations

import jax
import numpy as np
from bad_inputs_common import Case

from seqmask.data import (
    bucket_batches,
    chunks,
    pack,
    packed_batches,
    segment_final_carries,
    stateful_batches,
    unpack,
)

SEQUENCES = [[1, 2, 3], [4, 5], [6]]
PACKING = pack([[1, 2], [], [3]], row_len=4)


def _chunks_cases() -> list[Case]:
    xs = np.zeros((2, 5))
    return [
        Case(
            "chunks-zero-chunk-len",
            lambda: chunks(xs, 0),
            ValueError,
            ["chunks", "chunk_len must be a positive int", "got 0"],
        ),
        Case(
            "chunks-float-chunk-len",
            lambda: chunks(xs, 2.0),
            TypeError,
            ["chunks", "chunk_len must be an int", "Pass 2"],
        ),
        Case(
            "chunks-negative-time-axis",
            lambda: chunks(xs, 2, time_axis=-1),
            ValueError,
            ["chunks", "time_axis must be a non-negative int"],
        ),
        Case(
            "chunks-float-mask",
            lambda: chunks(xs, 2, mask=np.ones((2, 5))),
            TypeError,
            ["chunks", "mask must be a boolean array", "float64"],
        ),
        Case(
            "chunks-resets-shape",
            lambda: chunks(xs, 2, resets=np.ones((2, 4), bool)),
            ValueError,
            ["chunks", "resets must have shape", r"\(2, 5\)", r"\(2, 4\)"],
        ),
        Case(
            "chunks-leaves-disagree",
            lambda: chunks({"a": xs, "b": np.zeros((2, 6))}, 2),
            ValueError,
            ["chunks", "share the batch and time axes", r"\['b'\]"],
        ),
        Case(
            "chunks-no-time-axis",
            lambda: chunks(np.zeros(3), 2),
            ValueError,
            ["chunks", "needs a time axis", "time_axis=1"],
        ),
        Case(
            "chunks-ragged-nested-list",
            lambda: chunks([[1, 2], [3]], 2),
            TypeError,
            ["chunks", "xs", "rectangular"],
        ),
        Case(
            "chunks-empty-pytree",
            lambda: chunks({}, 2),
            ValueError,
            ["chunks", "xs has no arrays"],
        ),
    ]


def _stateful_cases() -> list[Case]:
    return [
        Case(
            "stateful-zero-batch-size",
            lambda: stateful_batches(SEQUENCES, 0, 2),
            ValueError,
            ["stateful_batches", "batch_size must be a positive int"],
        ),
        Case(
            "stateful-one-array",
            lambda: stateful_batches(np.zeros((2, 3)), 2, 2),
            TypeError,
            ["stateful_batches", "got one array of shape", r"list\(array\)"],
        ),
        Case(
            "stateful-empty",
            lambda: list(stateful_batches([], 2, 2)),
            ValueError,
            ["stateful_batches", "sequences is empty"],
        ),
        Case(
            "stateful-trailing-shape",
            lambda: list(stateful_batches([np.zeros((3, 2)), np.zeros((3, 3))], 1, 2)),
            ValueError,
            ["stateful_batches", r"trailing shape \(2,\)", r"sequences\[1\]"],
        ),
        Case(
            "stateful-float-after-int",
            lambda: list(stateful_batches([[1, 2], [0.5]], 2, 2)),
            TypeError,
            ["stateful_batches", r"sequences\[1\] has dtype float64", "dtype="],
        ),
        Case(
            "stateful-id-overflows-int8",
            lambda: list(stateful_batches([[1, 300]], 1, 2, dtype=np.int8)),
            ValueError,
            ["stateful_batches", "does not fit dtype int8", "300"],
        ),
        Case(
            "stateful-object-sequence",
            lambda: list(stateful_batches([[1, None]], 1, 2)),
            TypeError,
            ["stateful_batches", r"sequences\[0\]", "numbers"],
        ),
        Case(
            "stateful-pytree-item",
            lambda: list(stateful_batches([{"a": [1, 2]}], 1, 2)),
            TypeError,
            ["stateful_batches", "must be one array"],
        ),
    ]


def _pack_cases() -> list[Case]:
    return [
        Case(
            "pack-too-long",
            lambda: pack([[1, 2], [1, 2, 3, 4, 5]], row_len=4),
            ValueError,
            ["pack", r"sequences\[1\] has length 5", "row_len=4"],
        ),
        Case(
            "pack-empty",
            lambda: pack([], row_len=4),
            ValueError,
            ["pack", "sequences is empty"],
        ),
        Case(
            "pack-scalar-item",
            lambda: pack([3], row_len=4),
            ValueError,
            ["pack", r"sequences\[0\] must be \[length, ...\]"],
        ),
        Case(
            "pack-pad-value-wraps-in-uint8",
            lambda: pack([[1, 2]], row_len=4, dtype=np.uint8, pad_value=-1),
            ValueError,
            ["pack", "pad_value does not fit dtype uint8", "-1"],
        ),
        Case(
            "pack-fractional-pad-value",
            lambda: pack([[1, 2]], row_len=4, pad_value=0.5),
            ValueError,
            ["pack", "pad_value does not fit dtype int32"],
        ),
        Case(
            "pack-int64-ids-overflow-int32",
            lambda: pack([np.array([1, 2**40])], row_len=4),
            ValueError,
            ["pack", r"sequences\[0\] does not fit dtype int32", "dtype="],
        ),
        Case(
            "pack-leaves-of-different-lengths",
            lambda: pack([{"x": [1, 2], "y": [1]}], row_len=4),
            ValueError,
            ["pack", r"leaves of sequences\[0\] have lengths \[1, 2\]"],
        ),
        Case(
            "pack-too-few-rows",
            lambda: pack(SEQUENCES, row_len=3, num_rows=1),
            ValueError,
            ["pack", "need 2 rows", "num_rows=1"],
        ),
        Case(
            "pack-strings",
            lambda: pack([["a", "b"]], row_len=4),
            TypeError,
            ["pack", r"sequences\[0\]", "must hold numbers"],
        ),
        Case(
            "unpack-wrong-layout",
            lambda: unpack(np.zeros((1, 3)), PACKING),
            ValueError,
            ["unpack", r"ys must be \[rows, row_len, ...\]", r"\(1, 4\)"],
        ),
        Case(
            "unpack-a-list-of-arrays",
            lambda: unpack([np.zeros((1, 4)), np.ones((1, 4))], PACKING),
            TypeError,
            ["unpack", "ys is a list of arrays", "tuple or a dict"],
        ),
        Case(
            "segment-final-carries-a-list-of-arrays",
            lambda: segment_final_carries(
                [np.zeros((1, 4)), np.ones((1, 4))], PACKING, initial_carry=(0, 0)
            ),
            TypeError,
            ["segment_final_carries", "carries is a list of arrays"],
        ),
        Case(
            "segment-final-carries-traced-packing",
            lambda: jax.jit(
                lambda c, p: segment_final_carries(c, p, initial_carry=0.0)
            )(np.zeros((1, 4)), PACKING),
            TypeError,
            ["segment_final_carries", "packing must be concrete", "Close over it"],
        ),
        Case(
            "unpack-not-a-packing",
            lambda: unpack(np.zeros((1, 4)), tuple(PACKING)),
            TypeError,
            ["unpack", "packing must be the Packing"],
        ),
        Case(
            "segment-final-carries-empty-without-initial",
            lambda: segment_final_carries(np.zeros((1, 4)), PACKING),
            ValueError,
            ["segment_final_carries", r"sequences \[1\] are empty", "initial_carry"],
        ),
        Case(
            "segment-final-carries-initial-shape",
            lambda: segment_final_carries(
                np.zeros((1, 4)), PACKING, initial_carry=np.zeros(2)
            ),
            ValueError,
            ["segment_final_carries", "initial_carry", "does not match"],
        ),
        Case(
            "segment-final-carries-initial-structure",
            lambda: segment_final_carries(
                {"h": np.zeros((1, 4))}, PACKING, initial_carry=0.0
            ),
            ValueError,
            ["segment_final_carries", "initial_carry must have the structure"],
        ),
    ]


def _batching_cases() -> list[Case]:
    return [
        Case(
            "bucket-longer-than-largest-boundary",
            lambda: bucket_batches(SEQUENCES, batch_size=2, boundaries=[1, 2]),
            ValueError,
            ["bucket_batches", r"sequences\[0\] has length 3", "largest boundary 2"],
        ),
        Case(
            "bucket-empty",
            lambda: bucket_batches(iter([]), batch_size=2),
            ValueError,
            ["bucket_batches", "sequences is empty"],
        ),
        Case(
            "bucket-inconsistent-structure",
            lambda: bucket_batches([{"a": [1]}, {"b": [2]}], batch_size=2),
            ValueError,
            ["bucket_batches", "pytree structure of the first", r"sequences\[1\]"],
        ),
        Case(
            "bucket-token-budget-below-one-row",
            lambda: bucket_batches(SEQUENCES, max_tokens=2, boundaries=[1, 3]),
            ValueError,
            ["bucket_batches", "max_tokens=2 is smaller than one row", "length 3"],
        ),
        Case(
            "bucket-no-batch-size-nor-budget",
            lambda: bucket_batches(SEQUENCES),
            ValueError,
            ["bucket_batches", "batch_size or max_tokens"],
        ),
        Case(
            "bucket-unsorted-boundaries",
            lambda: bucket_batches(SEQUENCES, batch_size=2, boundaries=[4, 2]),
            ValueError,
            ["bucket_batches", "boundaries must be positive and strictly increasing"],
        ),
        Case(
            "bucket-float-boundaries",
            lambda: bucket_batches(SEQUENCES, batch_size=2, boundaries=[2.5, 4.0]),
            TypeError,
            ["bucket_batches", "boundaries must be a non-empty sequence of ints"],
        ),
        Case(
            "bucket-negative-seed",
            lambda: bucket_batches(SEQUENCES, batch_size=2, shuffle=True, seed=-1),
            ValueError,
            ["bucket_batches", "seed must be a non-negative int"],
        ),
        Case(
            "bucket-string-shuffle",
            lambda: bucket_batches(SEQUENCES, batch_size=2, shuffle="yes"),
            TypeError,
            ["bucket_batches", "shuffle must be True or False"],
        ),
        Case(
            "bucket-ragged-item",
            lambda: bucket_batches([[[1, 2], [3]]], batch_size=1),
            TypeError,
            ["bucket_batches", r"sequences\[0\]", "rectangular"],
        ),
        Case(
            "bucket-pad-value-per-leaf-mismatch",
            lambda: bucket_batches(
                [{"a": [1], "b": [2]}], batch_size=1, pad_value={"a": 0}
            ),
            ValueError,
            ["bucket_batches", "pad_value must be one value or a pytree"],
        ),
        Case(
            "packed-longer-than-row",
            lambda: packed_batches(SEQUENCES, batch_size=2, row_len=2),
            ValueError,
            ["packed_batches", r"sequences\[0\] has length 3", "row_len=2"],
        ),
        Case(
            "packed-empty",
            lambda: packed_batches([], batch_size=2, row_len=4),
            ValueError,
            ["packed_batches", "sequences is empty"],
        ),
        Case(
            "packed-inconsistent-structure",
            lambda: packed_batches([[1, 2], {"a": [1]}], batch_size=2, row_len=4),
            ValueError,
            ["packed_batches", "pytree structure of the first"],
        ),
        Case(
            "packed-zero-batch-size",
            lambda: packed_batches(SEQUENCES, batch_size=0, row_len=4),
            ValueError,
            ["packed_batches", "batch_size must be a positive int"],
        ),
        Case(
            "packed-one-array",
            lambda: packed_batches(np.zeros((3, 4)), batch_size=2, row_len=4),
            TypeError,
            ["packed_batches", "got one array of shape"],
        ),
    ]


CASES: list[Case] = (
    _chunks_cases() + _stateful_cases() + _pack_cases() + _batching_cases()
)

# A hint never says what the user already did ("pass dtype=" when it was
# passed); a number where a list is expected is a wrong type.
CASES += [
    Case(
        "segment_final_carries-initial-carry-wraps-int8",
        lambda: segment_final_carries(
            np.zeros((1, 4), np.int8), PACKING, initial_carry=300
        ),
        ValueError,
        ["^segment_final_carries", "initial_carry does not fit dtype int8", "300"],
    ),
    Case(
        "unpack-traced-ys",
        lambda: jax.jit(lambda ys: unpack(ys, PACKING)[0])(
            np.zeros((1, 4), np.float32)
        ),
        TypeError,
        ["^unpack", "ys must be concrete", "outside jit"],
    ),
    Case(
        "pack-integers-a-float16-rounds",
        lambda: pack([[2049, 1]], 2, dtype=np.float16),
        ValueError,
        ["^pack", "does not fit dtype float16", "integers it holds exactly", "2049"],
    ),
    Case(
        "bucket_batches-integers-a-float32-rounds",
        lambda: next(
            iter(
                bucket_batches(
                    [[2**24 + 1]], batch_size=1, boundaries=[1], dtype=np.float32
                )
            )
        ),
        ValueError,
        ["^bucket_batches", "float32", "16777217"],
    ),
    Case(
        "pack-dtype-given-fractional",
        lambda: pack([[1.5, 2.5], [3.0]], 4, dtype=np.int32),
        TypeError,
        [
            "^pack",
            "float64",
            "the dtype argument",
            r"^(?![\s\S]*pass dtype= explicitly)",
        ],
    ),
    Case(
        "stateful-dtype-given-fractional",
        lambda: list(stateful_batches([np.array([0.5, 1.5])], 1, 2, dtype=np.int32)),
        TypeError,
        ["^stateful_batches", "the dtype argument", r"^(?![\s\S]*pass dtype=)"],
    ),
    Case(
        "pack-dtype-from-first-sequence",
        lambda: pack([np.array([1, 2]), np.array([0.5])], 4),
        TypeError,
        ["^pack", "the dtype of the first sequence", "pass dtype= explicitly"],
    ),
    Case(
        "pack-dtype-unknown",
        lambda: pack(SEQUENCES, 4, dtype="int33"),
        TypeError,
        ["^pack", "dtype must be a dtype", "int33"],
    ),
    Case(
        "bucket-boundaries-int",
        lambda: list(bucket_batches(SEQUENCES, batch_size=2, boundaries=3)),
        TypeError,
        ["^bucket_batches", "boundaries must be a non-empty sequence of ints", "int 3"],
    ),
]
CASES += [
    Case(
        "bucket-boundaries-empty",
        lambda: list(bucket_batches(SEQUENCES, batch_size=2, boundaries=[])),
        ValueError,
        ["^bucket_batches", "non-empty", "length 0"],
    ),
]

# Regressions of silent wrong answers: unsigned boundaries out of order
# (np.diff wraps), integers that overflow a float dtype (they became inf), a
# pad value given per step or per feature (it was broadcast), a list of
# arrays given to chunks (stacked and cut along the batch axis), a float
# initial carry for integer carries (truncated); and errors that named
# nothing (items with no arrays, a dtype of no number kind).
CASES += [
    Case(
        "bucket-boundaries-unsigned-unsorted",
        lambda: list(
            bucket_batches(
                SEQUENCES, batch_size=2, boundaries=np.array([10, 2], np.uint8)
            )
        ),
        ValueError,
        ["^bucket_batches", "strictly increasing", r"\[10, 2\]"],
    ),
    Case(
        "bucket-float16-overflow",
        lambda: list(
            bucket_batches([np.array([100000, 3])], batch_size=1, dtype=np.float16)
        ),
        ValueError,
        [r"^bucket_batches", r"sequences\[0\] does not fit dtype float16", "100000"],
    ),
    Case(
        "bucket-pad-value-float16-overflow",
        lambda: list(
            bucket_batches(
                [np.array([1.0], np.float16)],
                batch_size=1,
                boundaries=[2],
                pad_value=100000,
            )
        ),
        ValueError,
        ["^bucket_batches", "pad_value does not fit dtype float16"],
    ),
    Case(
        "pack-float16-overflow",
        lambda: pack([np.array([100000])], row_len=1, dtype=np.float16),
        ValueError,
        ["^pack", "does not fit dtype float16"],
    ),
    Case(
        "bucket-pad-value-per-step",
        lambda: list(
            bucket_batches(
                [[1]], batch_size=1, boundaries=[3], pad_value=np.array([7, 8, 9])
            )
        ),
        ValueError,
        ["^bucket_batches", "pad_value must be one number", r"shape \(3,\)"],
    ),
    Case(
        "pack-pad-value-list",
        lambda: pack([[1, 2]], row_len=3, pad_value=[1, 2]),
        ValueError,
        ["^pack", "pad_value must be one number", r"shape \(2,\)"],
    ),
    Case(
        "pack-all-empty-pad-value-float",
        lambda: pack([[]], row_len=2, pad_value=0.5),
        ValueError,
        ["^pack", "pad_value does not fit dtype int32", "pass dtype="],
    ),
    Case(
        "chunks-list-of-arrays",
        lambda: list(chunks([np.zeros((2, 5)), np.ones((2, 5))], 3)),
        TypeError,
        ["^chunks", "xs is a list of arrays", "tuple or a dict"],
    ),
    Case(
        "segment-final-carries-float-initial-for-int",
        lambda: segment_final_carries(
            np.cumsum(PACKING.inputs, axis=1), PACKING, initial_carry=np.float32(1.7)
        ),
        TypeError,
        ["^segment_final_carries", "initial_carry has dtype float32", "int32"],
    ),
    Case(
        "pack-item-without-arrays",
        lambda: pack([{}], row_len=2),
        TypeError,
        [r"^pack", r"sequences\[0\] holds no arrays"],
    ),
    Case(
        "bucket-item-without-arrays",
        lambda: list(bucket_batches([()], batch_size=2)),
        TypeError,
        [r"^bucket_batches", r"sequences\[0\] holds no arrays"],
    ),
    Case(
        "pack-dtype-complex",
        lambda: pack([[1]], row_len=2, dtype=np.complex64),
        TypeError,
        ["^pack", "boolean, integer or floating dtype", "complex64"],
    ),
    Case(
        "pack-dtype-string",
        lambda: pack([[1]], row_len=2, dtype=np.str_),
        TypeError,
        ["^pack", "boolean, integer or floating dtype"],
    ),
]
