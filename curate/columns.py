"""Arrow columns built from and read through their buffers, without pandas.

pyarrow's converter of Python lists and its ``to_numpy`` import pandas into the process on first use
(0.3-0.5 s): the workers are kept free of it (``curate.running.worker_server``). The output writers
(``curate.running.outputs``) and the dedup plan (``curate.dedup.plan``) both use these.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def arrow_strings(values: list) -> pa.Array:
    """``pa.array(values, pa.string())`` built from its buffers. pyarrow's converter of Python lists
    imports pandas into the process on its first call (0.3-0.5 s; the workers are kept free of it:
    ``curate.running.worker_server``). What the buffers cannot hold (a value that is not a str or cannot be
    UTF-8, 2 GB of text at once) goes to the converter, which then raises or converts as before.

    >>> arrow_strings(["東京", None, ""]).equals(pa.array(["東京", None, ""], pa.string()))
    True
    """
    n = len(values)
    null_count = values.count(None)
    if null_count == n:  # a column the batch does not use (stage and reason of kept records, …)
        return pa.nulls(n, pa.string())
    try:
        if null_count:
            encoded = [b"" if v is None else v.encode("utf-8") for v in values]
        else:
            encoded = [v.encode("utf-8") for v in values]
    except (AttributeError, UnicodeEncodeError):
        return pa.array(values, pa.string())
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n))
    if ends[-1] >= 2**31:
        return pa.array(values, pa.string())
    offsets = np.zeros(n + 1, dtype=np.int32)
    offsets[1:] = ends
    validity = None
    if null_count:
        validity = pa.py_buffer(np.packbits(np.fromiter((v is not None for v in values), dtype=bool, count=n),
                                            bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), validity,
                                       null_count)


_NUMBERS = {pa.int64(): (np.int64, (int,)), pa.int32(): (np.int32, (int,)), pa.float64(): (np.float64, (float, int))}


def arrow_numbers(values: list, type_: pa.DataType) -> pa.Array:
    """``pa.array(values, type_)`` for int64, int32 and float64 values (or None) from a numpy buffer, as
    ``arrow_strings``; anything else (a bool, a str, a number out of range) goes to the converter.

    >>> arrow_numbers([1, None, 3], pa.int64()).equals(pa.array([1, None, 3], pa.int64()))
    True
    """
    dtype, kinds = _NUMBERS[type_]
    null_count = values.count(None)
    if null_count == len(values):
        return pa.nulls(len(values), type_)
    if not all(v is None or type(v) in kinds for v in values):
        return pa.array(values, type_)
    try:
        data = np.array([0 if v is None else v for v in values] if null_count else values, dtype=dtype)
    except OverflowError:
        return pa.array(values, type_)
    validity = None
    if null_count:
        validity = pa.py_buffer(np.packbits(np.fromiter((v is not None for v in values), dtype=bool,
                                                        count=len(values)), bitorder="little"))
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(data)], null_count)


_NUMPY_OF = {pa.int64(): np.int64, pa.uint64(): np.uint64, pa.int32(): np.int32, pa.float64(): np.float64}


def numpy_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``column.to_numpy()`` of a numeric column without nulls, read (not copied) from its data buffer:
    pyarrow's ``to_numpy`` goes through its pandas conversion, which imports pandas (``arrow_strings``).

    >>> numpy_of(pa.chunked_array([[1, 2], [3]], pa.int64())).tolist()
    [1, 2, 3]
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count or array.type not in _NUMPY_OF:
        return array.to_numpy(zero_copy_only=False)
    return np.frombuffer(array.buffers()[1], dtype=_NUMPY_OF[array.type], count=len(array),
                         offset=array.offset * array.type.byte_width)
