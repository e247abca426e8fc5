"""Arrow columns built from buffers (``curate.running.outputs``): the same arrays and errors as pyarrow's converter."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from curate.records import make_document
from curate.running.outputs import (
    RECORD_SCHEMA,
    arrow_numbers,
    arrow_strings,
    documents_to_columns,
    numpy_of,
    record_batch,
)


def test_string_columns_equal_pyarrow_s():
    values = ["東京タワー", None, "", "a" * 5000, "絵文字😀", None]
    assert arrow_strings(values).equals(pa.array(values, pa.string()))
    assert arrow_strings([]).equals(pa.array([], pa.string()))
    # a lone surrogate cannot be UTF-8: pyarrow's converter decides, as before
    with pytest.raises(Exception) as raised:
        pa.array(["\ud800"], pa.string())
    with pytest.raises(type(raised.value)):
        arrow_strings(["\ud800"])
    with pytest.raises(pa.ArrowTypeError):
        arrow_strings(["a", 3])


def test_number_columns_equal_pyarrow_s():
    for values, type_ in (([1, None, 3], pa.int64()), ([0, 7], pa.int32()), ([0.5, None, 2], pa.float64()), ([], pa.int64())):
        assert arrow_numbers(values, type_).equals(pa.array(values, type_))
    with pytest.raises(pa.ArrowInvalid):
        arrow_numbers([2**40], pa.int32())  # out of range: the converter's error
    with pytest.raises(pa.ArrowInvalid):
        arrow_numbers(["1"], pa.int64())
    sliced = pa.array([5, 6, 7, 8], pa.int64()).slice(1, 2)
    assert numpy_of(sliced).tolist() == [6, 7] and numpy_of(pa.array([1, None])).tolist()[0] == 1


def test_record_batches_equal_pyarrow_s():
    docs = [make_document(record_id=f"s:{i}", source_id="s", instruction="質問", input_="文脈" if i else "",
                          output="答え。", extra={"row": i, "source_order": 2, "label": 0.5 if i else None,
                                                 "compression_ratio": 0.4})
            for i in range(4)]
    columns = documents_to_columns(docs, "quality")
    assert record_batch(columns).equals(pa.RecordBatch.from_pydict(columns, schema=RECORD_SCHEMA))


def test_kept_out_pandas_still_comes_for_pandas_only_functions():
    """After ``keep_pandas_out_of_pyarrow`` a process writes and reads Arrow without pandas; ``to_pandas``
    imports it then and works."""
    script = """if True:
        import sys
        import pyarrow as pa
        from curate.running.worker_server import keep_pandas_out_of_pyarrow
        from curate.running.outputs import arrow_strings, numpy_of
        assert keep_pandas_out_of_pyarrow()
        table = pa.table({"s": arrow_strings(["a", None]), "n": pa.array([1, 2], pa.int64())})
        assert numpy_of(table.column("n")).tolist() == [1, 2] and "pandas" not in sys.modules
        frame = table.to_pandas()
        assert "pandas" in sys.modules and frame["n"].tolist() == [1, 2]
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
