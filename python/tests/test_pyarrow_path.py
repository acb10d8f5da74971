"""pyarrow's own arrays take pyarrow's pointer export
(``Array._export_to_c_device``, into the exporter's memory) instead of the
capsule protocol, for speed; everything else takes the protocol. The two
must be indistinguishable but for speed: every case is exported both ways
(the protocol through a wrapper that speaks only
``__arrow_c_device_array__``, around the same array) and compared, on
hypothesis's arrays of every kind of type: values, dtype, shape, the
read-only flag, the address shared, the error and its message."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from conftest import NUMERIC_TYPES, data_address, values_address


class ProtocolOnly:
    """The same array, reachable only through the capsule protocol."""

    def __init__(self, arr):
        self.arr = arr

    def __arrow_c_device_array__(self, requested_schema=None, **kwargs):
        return self.arr.__arrow_c_device_array__(requested_schema, **kwargs)


class CpuProtocolOnly:
    def __init__(self, arr):
        self.arr = arr

    def __arrow_c_array__(self, requested_schema=None):
        return self.arr.__arrow_c_array__(requested_schema)


def route(obj) -> str:
    return repr(arrow_dlpack.to_dlpack(obj))


def test_pyarrow_arrays_take_the_pointer_export_and_nothing_else_does():
    floats = pa.array([1.0, 2.0])
    for arr in (floats, floats.slice(1), pa.array([1, None], pa.int8()), pa.array(["a"]),
                pa.array([[1.0]], pa.list_(pa.float64(), 1)), floats.dictionary_encode(),
                pa.StructArray.from_arrays([floats], ["a"])):
        assert "pyarrow's Array._export_to_c_device" in route(arr), type(arr)
    assert "__arrow_c_device_array__" in route(ProtocolOnly(floats))
    assert "__arrow_c_device_array__" in route(pa.record_batch([floats], ["a"]))  # not an Array
    assert "__arrow_c_array__" in route(CpuProtocolOnly(floats))
    assert "__arrow_c_stream__" in route(pa.chunked_array([floats]))


def test_the_pointer_export_holds_the_data_exactly_as_long_as_needed(pool_unchanged):
    base = pa.total_allocated_bytes()
    with_nulls = pa.array([1.0, None] * 500)  # in pyarrow's pool
    size = pa.total_allocated_bytes() - base
    refused = arrow_dlpack.to_dlpack(with_nulls)
    unconsumed = arrow_dlpack.to_dlpack(with_nulls.fill_null(0.0))
    del with_nulls
    with pytest.raises(BufferError, match="nulls"):
        np.from_dlpack(refused)  # nothing moved: the exporter still holds it
    assert pa.total_allocated_bytes() - base >= size
    del refused, unconsumed
    gc.collect()
    assert pa.total_allocated_bytes() == base and size >= 8000


# ---- differential: the pointer export against the protocol ------------------

def _fixed_size_list(values, size):
    return pa.FixedSizeListArray.from_arrays(values.slice(0, len(values) - len(values) % size), size)


def _tensor(values):
    storage = _fixed_size_list(values.cast(pa.float64()), 2)
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float64(), [2]), storage)


# Each kind of array, made from a nullable int64 array: the primitive types
# whose schema the exporter writes itself, and types whose schema pyarrow
# exports (parameters, children, dictionaries, extensions, unsupported).
KINDS = {str(t): (lambda b, t=t: b.cast(t, safe=False)) for t, _ in NUMERIC_TYPES if t != pa.float16()}
KINDS.update({
    "float16": lambda b: pa.array(b.fill_null(0).to_numpy().astype(np.float16), mask=b.is_null().to_numpy(zero_copy_only=False)),
    "bool": lambda b: pc.not_equal(b, 0),
    "date32": lambda b: b.cast(pa.int32()).cast(pa.date32()),
    "date64": lambda b: b.cast(pa.date64()),
    "timestamp[ns, UTC]": lambda b: b.cast(pa.timestamp("ns", tz="UTC")),
    "duration[s]": lambda b: b.cast(pa.duration("s")),
    "time32[s]": lambda b: b.cast(pa.int32()).cast(pa.time32("s")),
    "decimal128": lambda b: b.cast(pa.decimal128(24, 2)),
    "string": lambda b: b.cast(pa.string()),
    "dictionary": lambda b: b.dictionary_encode(),
    "null": lambda b: pa.nulls(len(b)),
    "fixed_size_list[2]": lambda b: _fixed_size_list(b.cast(pa.float32()), 2),
    "list": lambda b: pa.ListArray.from_arrays(pa.array(range(len(b) + 1), pa.int32()), b.cast(pa.float64())),
    "fixed_shape_tensor": _tensor,
    "struct": lambda b: pa.StructArray.from_arrays([b.cast(pa.float64()), b.cast(pa.float64())], ["a", "b"]),
})


@st.composite
def pyarrow_arrays(draw):
    n = draw(st.integers(0, 12))
    values = draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n))
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [False] * n
    base = pa.array(values, pa.int64(), mask=np.array(mask, dtype=bool))
    arr = KINDS[draw(st.sampled_from(sorted(KINDS)))](base)
    start = draw(st.integers(0, len(arr)))
    return arr.slice(start, draw(st.integers(0, len(arr) - start)))


def _attempt(consume):
    """What a consumer gets: the array, or the error's type and message."""
    try:
        return consume()
    except (BufferError, TypeError, ValueError) as e:
        return type(e), str(e)


def _outcome(obj, copy, options):
    return _attempt(lambda: np.from_dlpack(arrow_dlpack.to_dlpack(obj, **options), copy=copy))


def _validity(obj):
    return _attempt(lambda: np.from_dlpack(arrow_dlpack.validity(obj)))


def _assert_same(fast, protocol):
    if isinstance(fast, tuple) or isinstance(protocol, tuple):
        assert fast == protocol
        return
    np.testing.assert_array_equal(fast, protocol, strict=True)  # values, dtype, shape
    assert fast.flags.writeable == protocol.flags.writeable
    if fast.size and not fast.flags.writeable:
        # Both share the one pyarrow buffer (copies have their own).
        assert data_address(fast) == data_address(protocol)


@settings(max_examples=400, deadline=None)
@given(
    pyarrow_arrays(),
    st.sampled_from([None, False, True]),
    st.fixed_dictionaries({}, optional={
        "null_value": st.sampled_from([0, 1]),
        "temporal_as_int": st.booleans(),
        "dtype": st.sampled_from(["float64", "int32"]),
    }),
)
def test_the_pointer_export_equals_the_protocol(arr, copy, options):
    _assert_same(_outcome(arr, copy, options), _outcome(ProtocolOnly(arr), copy, options))
    _assert_same(_validity(arr), _validity(ProtocolOnly(arr)))


def _field(exporter) -> pa.Field:
    """The Arrow field an exporter holds (its schema, copied)."""
    return pa.Field._import_from_c_capsule(exporter.__arrow_c_schema__())


WRITTEN = NUMERIC_TYPES + [(pa.date32(), "datetime64[D]"), (pa.date64(), "datetime64[ms]")]


@pytest.mark.parametrize("arrow_type, np_type", WRITTEN, ids=lambda t: str(t))
def test_the_written_schemas_are_pyarrows(arrow_type, np_type):
    # The parameter-free types' schema is written by the exporter, not
    # pyarrow: it must be the one pyarrow writes (format, name, flags,
    # metadata), and the tensor the same, sharing the buffer.
    arr = pa.array(np.arange(5).astype(np_type), type=arrow_type).slice(1)
    fast, protocol = arrow_dlpack.to_dlpack(arr), arrow_dlpack.to_dlpack(ProtocolOnly(arr))
    assert "pyarrow's Array._export_to_c_device" in repr(fast)
    ours, theirs = _field(fast), _field(protocol)
    assert ours.equals(theirs, check_metadata=True), (ours, theirs)
    assert (ours.name, ours.type, ours.nullable, ours.metadata) == ("", arrow_type, True, None)
    options = {"temporal_as_int": True} if pa.types.is_temporal(arrow_type) else {}
    fast = np.from_dlpack(arrow_dlpack.to_dlpack(arr, **options))
    protocol = np.from_dlpack(arrow_dlpack.to_dlpack(ProtocolOnly(arr), **options))
    np.testing.assert_array_equal(fast, protocol, strict=True)
    assert data_address(fast) == data_address(protocol) == values_address(arr)


def test_an_exporter_names_the_arrow_type_of_its_data_until_consumed():
    table = pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert _field(arrow_dlpack.to_dlpack(table)).type == pa.struct(table.schema)
    exporter = arrow_dlpack.to_dlpack(pa.array([1, 2], pa.int16()))
    assert _field(exporter).type == pa.int16()
    np.from_dlpack(exporter)
    with pytest.raises(BufferError, match="handed to a DLPack consumer already"):
        exporter.__arrow_c_schema__()
    with pytest.raises(BufferError, match="no Arrow type"):
        arrow_dlpack.validity(pa.array([1.0])).__arrow_c_schema__()
