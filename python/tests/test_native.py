"""The compiled package: the DLPack C exchange API (called from C through
ctypes, and by apache-tvm-ffi, a real consumer and producer), the Arrow
schema protocol, reference counts and leaks."""

import ctypes
import gc
import inspect
import resource
import sys
import weakref

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
import arrow_dlpack_ctypes as _ffi
from arrow_dlpack import _native
from conftest import capsule_is, data_address, values_address


def test_the_package_is_one_stable_abi_extension():
    assert _native.__file__.endswith(".abi3.so")
    assert arrow_dlpack.__version__ == "0.1.0"
    for kind in (arrow_dlpack.DLPackExporter, arrow_dlpack.ArrowArrayFromDLPack):
        assert kind.__module__ == "arrow_dlpack"
    # Signatures and documentation survive the vectorcall replacements
    # (Python >= 3.10) as they are on 3.9's PyO3 functions.
    assert list(inspect.signature(arrow_dlpack.to_dlpack).parameters) == ["obj", "order", "null_value", "dtype", "temporal_as_int", "dictionary_as_indices"]
    assert list(inspect.signature(arrow_dlpack.DLPackExporter.__dlpack__).parameters)[1:] == ["stream", "max_version", "dl_device", "copy"]
    assert "``copy`` follows the array API" in arrow_dlpack.DLPackExporter.__dlpack__.__doc__
    assert "null_value" in arrow_dlpack.to_dlpack.__doc__
    # Not constructible from Python: made by to_dlpack / from_dlpack only.
    with pytest.raises(TypeError):
        arrow_dlpack.DLPackExporter()


# ---- the exchange API, from C (ctypes) ------------------------------------


# The DLPack structs of the ctypes bindings (examples/python).
DLDevice, DLDataType, DLTensor = _ffi.DLDevice, _ffi.DLDataType, _ffi.DLTensor
DLManagedTensorVersioned = _ffi.DLManagedTensorVersioned
_TensorOut = ctypes.POINTER(ctypes.POINTER(DLManagedTensorVersioned))
SetError = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)


class DLPackExchangeAPI(ctypes.Structure):
    # PYFUNCTYPE: called with the GIL held, and a Python exception set by
    # the function is raised by ctypes, as a compiled consumer would see it.
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("prev_api", ctypes.c_void_p),
        ("managed_tensor_allocator", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.POINTER(DLTensor), _TensorOut, ctypes.c_void_p, SetError)),
        ("managed_tensor_from_py_object_no_sync", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, _TensorOut)),
        ("managed_tensor_to_py_object_no_sync", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.POINTER(DLManagedTensorVersioned), ctypes.POINTER(ctypes.py_object))),
        ("dltensor_from_py_object_no_sync", ctypes.c_void_p),
        ("current_work_stream", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p))),
    ]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_get_pointer.restype = ctypes.c_void_p


def exchange_api() -> DLPackExchangeAPI:
    capsule = type(arrow_dlpack.to_dlpack(pa.array([1.0]))).__dlpack_c_exchange_api__
    assert capsule is arrow_dlpack.DLPackExporter.__dlpack_c_exchange_api__
    return DLPackExchangeAPI.from_address(_get_pointer(capsule, b"dlpack_exchange_api"))


def test_exchange_api_table():
    api = exchange_api()
    assert (api.major, api.minor) == (1, 3)
    assert not api.prev_api
    assert not api.dltensor_from_py_object_no_sync  # optional, and not offered
    stream = ctypes.c_void_p(0xBAD)
    for device_type in (1, 2):
        assert api.current_work_stream(device_type, 0, ctypes.byref(stream)) == 0
        assert stream.value is None  # the default stream


def test_exchange_api_takes_the_tensor_and_it_outlives_the_producer(pool_unchanged):
    api = exchange_api()
    arr = pa.array(np.arange(100, 110, dtype=np.int64)).slice(3)
    expected_address = values_address(arr)
    exporter = arrow_dlpack.to_dlpack(arr)
    out = ctypes.POINTER(DLManagedTensorVersioned)()
    assert api.managed_tensor_from_py_object_no_sync(id(exporter), ctypes.byref(out)) == 0
    tensor = out.contents
    assert (tensor.major, tensor.minor, tensor.flags) == (1, 3, 1)  # READ_ONLY: shared
    t = tensor.dl_tensor
    assert (t.data, t.ndim, t.shape[0], t.strides[0]) == (expected_address, 1, 7, 1)
    assert "shared with 1 consumer view(s)" in repr(exporter)
    # Any number of consumers, each a view of the same memory.
    again = np.from_dlpack(exporter)
    assert again.ctypes.data == expected_address and again.tolist() == list(range(103, 110))
    assert "shared with 2 consumer view(s)" in repr(exporter)
    del again
    # The producer's objects collected: the tensor still owns the data.
    del exporter, arr
    gc.collect()
    assert pa.total_allocated_bytes() > 0
    assert list((ctypes.c_int64 * 7).from_address(t.data)) == list(range(103, 110))
    tensor.deleter(ctypes.addressof(tensor))  # releases the Arrow array (pool_unchanged checks)


def test_exchange_api_errors_are_python_exceptions():
    api = exchange_api()
    out = ctypes.POINTER(DLManagedTensorVersioned)()
    not_ours = np.arange(3)
    with pytest.raises(TypeError, match="not an arrow_dlpack.DLPackExporter"):
        api.managed_tensor_from_py_object_no_sync(id(not_ours), ctypes.byref(out))
    with_nulls = arrow_dlpack.to_dlpack(pa.array([1.0, None]))
    with pytest.raises(BufferError, match="1 nulls"):
        api.managed_tensor_from_py_object_no_sync(id(with_nulls), ctypes.byref(out))
    assert not out
    # Nothing moved: the exporter still works once nulls are allowed for.
    assert "not consumed" in repr(with_nulls)


def test_exchange_api_allocates_and_wraps_tensors():
    api = exchange_api()
    shape = (ctypes.c_int64 * 2)(2, 3)
    prototype = DLTensor(device=DLDevice(1, 0), ndim=2, dtype=DLDataType(2, 32, 1), shape=shape)
    out = ctypes.POINTER(DLManagedTensorVersioned)()
    errors = []
    set_error = SetError(lambda ctx, kind, message: errors.append((kind, message)))
    assert api.managed_tensor_allocator(ctypes.byref(prototype), ctypes.byref(out), None, set_error) == 0
    t = out.contents.dl_tensor
    assert (t.ndim, t.shape[0], t.shape[1], t.strides[0], t.strides[1]) == (2, 2, 3, 3, 1)
    assert t.data % 64 == 0 and out.contents.flags == 0  # writable, not a copy of anything
    # The tensor becomes an exporter of it (ownership stolen), which hands
    # it to NumPy: writable memory, the same address.
    obj = ctypes.py_object()
    address = t.data
    assert api.managed_tensor_to_py_object_no_sync(out, ctypes.byref(obj)) == 0
    exporter = obj.value
    assert isinstance(exporter, arrow_dlpack.DLPackExporter)
    assert exporter.__dlpack_device__() == (1, 0)
    x = np.from_dlpack(exporter)
    assert (x.shape, x.dtype, data_address(x), x.flags.writeable) == ((2, 3), np.float32, address, True)
    x[:] = 7
    assert x.sum() == 42

    # Device memory, and impossible shapes: refused through SetError.
    prototype.device = DLDevice(2, 0)
    assert api.managed_tensor_allocator(ctypes.byref(prototype), ctypes.byref(out), None, set_error) == -1
    assert errors[-1][0] == b"BufferError" and b"host memory only" in errors[-1][1]
    prototype.device = DLDevice(1, 0)
    shape[0] = -1
    assert api.managed_tensor_allocator(ctypes.byref(prototype), ctypes.byref(out), None, set_error) == -1
    assert errors[-1][0] == b"ValueError" and b"shape[0] = -1" in errors[-1][1]
    shape[0], shape[1] = 2**40, 2**40
    assert api.managed_tensor_allocator(ctypes.byref(prototype), ctypes.byref(out), None, set_error) == -1
    assert b"too large" in errors[-1][1]


# ---- apache-tvm-ffi: a real consumer and producer of the exchange API ------


def test_tvm_ffi_takes_our_tensors_through_the_exchange_api():
    tvm_ffi = pytest.importorskip("tvm_ffi")
    arr = pa.array([1.5, 2.5, 3.5, 4.5]).slice(1)
    exporter = arrow_dlpack.to_dlpack(arr)
    t = tvm_ffi.from_dlpack(exporter)  # tries __dlpack_c_exchange_api__ first
    assert "not consumed" not in repr(exporter)
    x = np.from_dlpack(t)
    np.testing.assert_array_equal(x, [2.5, 3.5, 4.5])
    assert data_address(x) == values_address(arr)

    # A tvm-ffi function called with tensor_cls=DLPackExporter hands its
    # callback our exporters, made by managed_tensor_to_py_object_no_sync.
    seen = []

    def callback(a):
        seen.append(type(a))
        return np.from_dlpack(a).sum()

    f = tvm_ffi.convert_func(callback, tensor_cls=arrow_dlpack.DLPackExporter)
    assert f(tvm_ffi.from_dlpack(np.arange(5.0))) == 10.0
    assert seen == [arrow_dlpack.DLPackExporter]


def test_from_dlpack_uses_a_producers_exchange_api():
    tvm_ffi = pytest.importorskip("tvm_ffi")
    Wrapper = tvm_ffi.core.DLTensorTestWrapper  # offers the exchange API

    class OnlyExchange(Wrapper):
        def __dlpack__(self, **kwargs):
            raise AssertionError("__dlpack__ called: the exchange API was not used")

    source = np.arange(6, dtype=np.int32)
    wrapped = OnlyExchange(tvm_ffi.from_dlpack(source))
    back = pa.array(arrow_dlpack.from_dlpack(wrapped))
    assert back.to_pylist() == list(range(6))
    assert values_address(back) == data_address(source)
    # Our own exporter, through our own table: shared end to end.
    arr = pa.array(np.arange(4.0))
    again = pa.array(arrow_dlpack.from_dlpack(arrow_dlpack.to_dlpack(arr)))
    assert values_address(again) == values_address(arr)


# ---- the Arrow schema protocol ---------------------------------------------


def test_arrow_c_schema_describes_without_consuming():
    imported = arrow_dlpack.from_dlpack(np.zeros((4, 2, 3), dtype=np.float32))
    schema_type = pa.DataType._import_from_c_capsule(imported.__arrow_c_schema__())
    assert schema_type == pa.fixed_shape_tensor(pa.float32(), [2, 3])
    assert "not consumed" in repr(imported) and len(imported) == 4
    table = arrow_dlpack.from_dlpack(np.zeros((3, 2)), columns=["a", "b"])
    assert pa.DataType._import_from_c_capsule(table.__arrow_c_schema__()) == pa.struct([pa.field(n, pa.float64(), nullable=False) for n in "ab"])
    arr = pa.array(imported)
    assert arr.type == schema_type
    with pytest.raises(BufferError, match="already consumed"):
        imported.__arrow_c_schema__()


# ---- reference counts and lifetimes -----------------------------------------


def test_from_dlpack_holds_the_producer_exactly_as_long_as_arrow_does():
    x = np.arange(10.0)
    ref = weakref.ref(x)
    before = sys.getrefcount(x)
    imported = arrow_dlpack.from_dlpack(x)
    arr = pa.array(imported)
    del imported
    assert sys.getrefcount(x) == before + 1  # the tensor's owner, nothing else
    del x
    gc.collect()
    assert ref() is not None  # the Arrow array keeps it
    assert arr.to_pylist()[3] == 3.0
    del arr
    assert ref() is None  # freed with the last Arrow reference, without gc

    # Never consumed: collecting the imported object frees the tensor.
    y = np.arange(3.0)
    ref = weakref.ref(y)
    unused = arrow_dlpack.from_dlpack(y)
    del y
    assert ref() is not None
    del unused
    assert ref() is None


def test_to_dlpack_holds_the_arrow_data_exactly_as_long_as_needed(pool_unchanged):
    base = pa.total_allocated_bytes()
    arr = pa.array(range(1000), pa.float64())  # in pyarrow's pool (np.arange's would not be)
    size = pa.total_allocated_bytes() - base
    exporter = arrow_dlpack.to_dlpack(arr)
    before = sys.getrefcount(arr)
    del arr  # the exporter holds the Arrow structs, not the pyarrow object
    assert pa.total_allocated_bytes() - base >= size
    x = np.from_dlpack(exporter)
    del exporter  # the tensor (NumPy's) owns the data now
    assert pa.total_allocated_bytes() - base >= size
    assert x[999] == 999.0
    del x
    assert pa.total_allocated_bytes() == base
    assert size >= 8000 and before >= 2


class _KeepsCapsules:
    """A producer that keeps a reference to the capsules it hands out, so
    that the test can count the consumer's."""

    def __init__(self, arr):
        self.arr = arr
        self.capsules = ()

    def __arrow_c_device_array__(self, requested_schema=None, **kwargs):
        self.capsules = self.arr.__arrow_c_device_array__()
        return self.capsules


@pytest.mark.parametrize("consume", ["numpy", "unconsumed", "refused"])
def test_producer_capsules_are_released_at_once(consume):
    # The vectorcall functions run unknown to PyO3's attach count, where a
    # `Py<T>` dropped would be queued for PyO3's pool instead of released:
    # the exporter's references must go the moment it is done with them.
    producer = _KeepsCapsules(pa.array([1.0, None] if consume == "refused" else [1.0, 2.0]))
    exporter = arrow_dlpack.to_dlpack(producer)
    held = [sys.getrefcount(c) for c in producer.capsules]
    if consume == "numpy":
        x = np.from_dlpack(exporter)  # the array moved: the capsules are done
        assert [sys.getrefcount(c) for c in producer.capsules] == [n - 1 for n in held]
        assert x.tolist() == [1.0, 2.0]
    elif consume == "refused":
        with pytest.raises(BufferError, match="null"):
            np.from_dlpack(exporter)  # nothing moved: still held
        assert [sys.getrefcount(c) for c in producer.capsules] == held
    del exporter
    assert [sys.getrefcount(c) for c in producer.capsules] == [n - 1 for n in held]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cycles(n: int, step) -> tuple:
    """RSS growth (KiB) and pyarrow pool growth (bytes) over n cycles of
    `step`, after a warm-up."""
    for _ in range(2000):
        step()
    gc.collect()
    start, pool = _rss_kib(), pa.total_allocated_bytes()
    for _ in range(n):
        step()
    gc.collect()
    return _rss_kib() - start, pa.total_allocated_bytes() - pool


@pytest.mark.parametrize("path", ["to_dlpack", "to_dlpack_copy", "from_dlpack", "from_dlpack_columns", "exchange", "unconsumed"])
def test_no_leak_over_100k_cycles(path, pool_unchanged):
    arr = pa.array(range(64), pa.float64())
    booleans = pa.array([True, False] * 32)
    matrix = np.asfortranarray(np.ones((8, 2)))
    api = exchange_api()
    out = ctypes.POINTER(DLManagedTensorVersioned)()

    def exchange():
        assert api.managed_tensor_from_py_object_no_sync(id(arrow_dlpack.to_dlpack(arr)), ctypes.byref(out)) == 0
        out.contents.deleter(ctypes.cast(out, ctypes.c_void_p).value)

    steps = {
        "to_dlpack": lambda: np.from_dlpack(arrow_dlpack.to_dlpack(arr)),
        "to_dlpack_copy": lambda: np.from_dlpack(arrow_dlpack.to_dlpack(booleans)),
        "from_dlpack": lambda: pa.array(arrow_dlpack.from_dlpack(matrix[:, 0])),
        "from_dlpack_columns": lambda: pa.record_batch(arrow_dlpack.from_dlpack(matrix, columns=["a", "b"])),
        "exchange": exchange,
        "unconsumed": lambda: (arrow_dlpack.to_dlpack(arr), arrow_dlpack.from_dlpack(matrix)),
    }
    growth, pool_growth = _cycles(100_000, steps[path])
    assert pool_growth == 0
    # A leak of one 64-byte struct per cycle would be 6,250 KiB.
    assert growth < 1024, f"RSS grew by {growth} KiB over 100,000 cycles"


def test_dlpack_keywords_are_checked_whatever_the_calling_convention():
    """On Python >= 3.10 `__dlpack__` is a vectorcall method (keyword names
    matched by pointer, else by value); on 3.9 PyO3's. Both accept exactly
    the array API's keywords."""
    arr = pa.array([1.0, 2.0])
    exporter = arrow_dlpack.to_dlpack(arr)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        exporter.__dlpack__(max_version=(1, 3), order="C")
    with pytest.raises(TypeError):
        exporter.__dlpack__((1, 3))
    with pytest.raises(TypeError):
        exporter.__dlpack__(max_version="1.3")
    assert "not consumed" in repr(exporter)
    # A keyword name that is not the interned string: matched by value.
    name = "".join(["max_", "version"])
    capsule = exporter.__dlpack__(**{name: (1, 3)}, stream=None, dl_device=(1, 0), copy=False)
    assert capsule_is(capsule, b"dltensor_versioned")
    np.testing.assert_array_equal(np.from_dlpack(arrow_dlpack.to_dlpack(arr)), [1.0, 2.0])
