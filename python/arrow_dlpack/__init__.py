"""arrow_dlpack: hand any Arrow array to NumPy, PyTorch or JAX without copying.

>>> import numpy as np, pyarrow as pa, arrow_dlpack
>>> np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([1.0, 2.0, 3.0])))
array([1., 2., 3.])

``to_dlpack`` accepts any object implementing the Arrow PyCapsule interface
(``__arrow_c_device_array__``, ``__arrow_c_array__``, or
``__arrow_c_stream__``): pyarrow, nanoarrow, arro3, polars, DuckDB results...
Memory is shared where it can be, and copied once where it cannot (booleans,
chunked arrays, nulls given a ``null_value``, tables as one matrix), as the
array API's ``copy`` keyword allows. Tables, record batches, readers, polars
DataFrames and DuckDB results become 2-D tensors ``[rows, columns]``.
The returned exporter follows the Python DLPack protocol and the array API
rules; see :class:`DLPackExporter`.

``from_dlpack`` goes the other way: any object with ``__dlpack__`` (NumPy,
PyTorch, JAX...) becomes an object implementing ``__arrow_c_array__``, so
``pyarrow.array(arrow_dlpack.from_dlpack(x))`` shares the tensor's memory,
and ``pyarrow.record_batch(arrow_dlpack.from_dlpack(matrix, columns=[...]))``
names a matrix's columns.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

from . import _ffi, _sync
from ._import import ArrowArrayFromDLPack, from_dlpack

__all__ = ["to_dlpack", "from_dlpack", "validity", "DLPackExporter", "ArrowArrayFromDLPack", "__version__"]

__version__: str = _ffi.lib.arrow_dlpack_version().decode()

_lib = _ffi.lib
_export_with = _lib.arrow_dlpack_export_with
_export_with_legacy = _lib.arrow_dlpack_export_with_legacy
_export_stream = _lib.arrow_dlpack_export_stream
_export_stream_legacy = _lib.arrow_dlpack_export_stream_legacy
_export_device = _lib.arrow_dlpack_export_device
_export_device_legacy = _lib.arrow_dlpack_export_device_legacy
_get_pointer = _ffi._get_pointer
_capsule_new = _ffi.capsule_new
_DESTRUCTOR = _ffi.CAPSULE_DESTRUCTOR
_DLTENSOR = _ffi.DLTENSOR
_DLTENSOR_VERSIONED = _ffi.DLTENSOR_VERSIONED
_ARROW_SCHEMA = _ffi.ARROW_SCHEMA
_ARROW_DEVICE_ARRAY = _ffi.ARROW_DEVICE_ARRAY
_ARROW_STREAM = b"arrow_array_stream"
_CPU = (_ffi.K_DL_CPU, 0)
# struct ArrowDeviceArray: where sync_event and device_type lie, read on
# every device-protocol export.
_SYNC_EVENT_OFFSET = _ffi.ArrowDeviceArray.sync_event.offset
_DEVICE_TYPE_OFFSET = _ffi.ArrowDeviceArray.device_type.offset
_void_p_at = ctypes.c_void_p.from_address
_int32_at = ctypes.c_int32.from_address

# NumPy-style dtype names -> DLPack (code, bits).
_DTYPES = {
    "int8": (0, 8), "int16": (0, 16), "int32": (0, 32), "int64": (0, 64),
    "uint8": (1, 8), "uint16": (1, 16), "uint32": (1, 32), "uint64": (1, 64),
    "float16": (2, 16), "float32": (2, 32), "float64": (2, 64), "bool": (6, 8),
    "half": (2, 16), "single": (2, 32), "double": (2, 64), "float": (2, 64), "int": (0, 64), "bool_": (6, 8),
}
_ORDERS = {"any": 0, "C": 1, "F": 2}
_COPY = {None: _ffi.COPY_IF_NEEDED, False: _ffi.COPY_NEVER, True: _ffi.COPY_ALWAYS}


class _Options:
    """The export options of one `to_dlpack` call, as C structs for each
    copy policy (built once: a call passes an address)."""

    __slots__ = ("structs", "addresses")

    def __init__(self, order: int = 0, fill: Optional[float] = None, dtype: Optional[Tuple[int, int]] = None, temporal: bool = False):
        self.structs = {}
        self.addresses = {}
        for copy, policy in _COPY.items():
            o = _ffi.ArrowDlpackExportOptions()
            o.copy, o.order, o.temporal_as_integer = policy, order, int(temporal)
            if fill is not None:
                o.fill_nulls, o.fill_value = 1, float(fill)
            if dtype is not None:
                o.dtype.code, o.dtype.bits, o.dtype.lanes = dtype[0], dtype[1], 1
            self.structs[copy] = o
            self.addresses[copy] = ctypes.addressof(o)


_DEFAULT_OPTIONS = _Options()


def _dtype_of(dtype: Any) -> Tuple[int, int]:
    """(code, bits) of a NumPy-style dtype: a name, a NumPy dtype or type."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or getattr(dtype, "__name__", None)
    found = _DTYPES.get(str(name))
    if found is None:
        raise TypeError(f"unsupported dtype {dtype!r}: one of {', '.join(sorted(_DTYPES))}")
    return found


class DLPackExporter:
    """An Arrow array on its way to a DLPack consumer.

    Ownership: the exporter holds the producer's Arrow structs (through its
    capsules), and so the Arrow data, until a consumer calls
    :meth:`__dlpack__`. That call moves the array into a DLPack tensor owned
    by the returned capsule, and from there by the consumer
    (``numpy.from_dlpack`` and friends), which frees it when done; a copy
    releases the Arrow data at once. An exporter that is never consumed
    frees the Arrow data when it is garbage collected. An exporter can be
    consumed once.
    """

    __slots__ = ("_owner", "_schema", "_array", "_array_name", "_device", "_on_device", "_consumed", "_options")

    def __init__(self, owner: Any, schema: Any, array: Any, array_name: Optional[bytes], options: _Options = _DEFAULT_OPTIONS):
        # `owner` keeps the structs alive and releases whatever is still
        # unreleased when it is collected. `schema`/`array` are capsules
        # (`array_name` names the array's: an array, a device array or a
        # stream, whose `schema` is None) or, with `array_name` None,
        # addresses of a struct ArrowSchema and a struct ArrowArray. Nothing
        # is read before a consumer asks.
        self._owner = owner
        self._schema = schema
        self._array = array
        self._array_name = array_name
        # Whether the array is a struct ArrowDeviceArray (its device is
        # read when asked), or CPU data (an array or a stream).
        self._on_device = array_name == _ARROW_DEVICE_ARRAY
        self._device: Optional[Tuple[int, int]] = None if self._on_device else _CPU
        self._consumed = False
        self._options = options

    def _addresses(self) -> Tuple[int, int]:
        """The addresses of the schema and array structs (once per exporter)."""
        if self._array_name is not None:
            # id(): the capsules' addresses; `_owner` keeps them alive.
            self._array = _get_pointer(id(self._array), self._array_name)
            if self._schema is not None:
                self._schema = _get_pointer(id(self._schema), _ARROW_SCHEMA)
            self._array_name = None
        return self._schema, self._array

    def __dlpack_device__(self) -> Tuple[int, int]:
        """``(device_type, device_id)`` of the data, in DLPack's numbering
        (``(1, 0)`` for the CPU); also after the exporter was consumed."""
        device = self._device
        if device is None:
            # A struct ArrowDeviceArray: its device outlives the move of its
            # array (the producer's capsule keeps the struct).
            struct = _ffi.ArrowDeviceArray.from_address(self._addresses()[1])
            device_type = struct.device_type
            device = _CPU if device_type == _ffi.K_DL_CPU else (device_type, struct.device_id)
            self._device = device
        return device

    def __dlpack__(
        self,
        *,
        stream: Optional[Any] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any:
        """A ``"dltensor_versioned"`` capsule (DLPack 1.3) when
        ``max_version >= (1, 0)``, else a legacy ``"dltensor"`` capsule
        (JAX asks for no version). The capsule owns the tensor until a
        consumer takes it.

        ``copy`` follows the array API: None shares when it can and copies
        otherwise (booleans, nulls with ``null_value``, a ``dtype``, several
        chunks); False never copies (``BufferError`` where a copy would be
        needed); True always returns a private, writable copy. A shared
        tensor is read-only (NumPy returns a non-writeable array).

        ``stream`` follows the array API: for CPU data it must be None; for
        device data whose producer handed a ``sync_event``, the consumer's
        stream is made to wait on it (see ``arrow_dlpack._sync``); -1 means
        the consumer synchronizes itself.

        Raises ``BufferError`` when the request cannot be met (a copy that
        ``copy=False`` forbids; ``dl_device`` other than the data's, or
        ``copy=True`` for device data: copies across devices are the
        consumer's library's job), for a stream the array API disallows,
        when the array cannot be exported (nulls without ``null_value``,
        non-numeric types: the message is the library's), or when the
        exporter was already consumed.
        """
        if self._consumed:
            raise BufferError("this arrow_dlpack exporter was already consumed; call to_dlpack again")
        if dl_device is not None:
            self._check_device(dl_device)
        versioned = max_version is not None and max_version[0] >= 1
        name = self._array_name
        if name is None:
            schema, array = self._schema, self._array
        else:  # `_addresses`, inlined on this hot path
            array = _get_pointer(id(self._array), name)
            schema = None if self._schema is None else _get_pointer(id(self._schema), _ARROW_SCHEMA)
            self._schema, self._array, self._array_name = schema, array, None
        options = self._options.addresses[copy]
        if schema is None:  # a stream: read to its end, so a failure has its message now
            error = _ffi.ArrowDlpackError()
            if stream is not None:
                raise BufferError(f"stream must be None for CPU data, got {stream!r}")
            export = _export_stream if versioned else _export_stream_legacy
            tensor = export(array, options, ctypes.byref(error))
            self._consumed = True  # read, whatever happened
            if not tensor:
                raise BufferError(_ffi.last_error(error))
        elif (
            self._on_device
            and not copy
            and stream is None
            and self._options is _DEFAULT_OPTIONS
            and not _void_p_at(array + _SYNC_EVENT_OFFSET).value
        ):
            # The common case, any device: shared as is. Only when that
            # fails is the device read: CPU data may still be copied.
            export = _export_device if versioned else _export_device_legacy
            tensor = export(array, schema, None, None)
            if not tensor:
                if _int32_at(array + _DEVICE_TYPE_OFFSET).value != _ffi.K_DL_CPU:
                    raise BufferError(_error_of(export, versioned, array, schema, None))
                export = _export_with if versioned else _export_with_legacy
                tensor = export(array, schema, options, None)
                if not tensor:
                    raise BufferError(_error_of(export, versioned, array, schema, options))
        elif self._on_device and _int32_at(array + _DEVICE_TYPE_OFFSET).value != _ffi.K_DL_CPU:
            tensor = self._export_on_device(array, schema, versioned, stream, copy)
        else:
            # CPU data (a struct ArrowDeviceArray starts with its struct
            # ArrowArray). No error struct on this path: a failed export
            # leaves the array untouched, so it is replayed for the message.
            if stream is not None:
                raise BufferError(f"stream must be None for CPU data, got {stream!r}")
            export = _export_with if versioned else _export_with_legacy
            tensor = export(array, schema, options, None)
            if not tensor:
                raise BufferError(_error_of(export, versioned, array, schema, options))
        self._consumed = True  # the array moved into the tensor
        return _capsule_new(tensor, _DLTENSOR_VERSIONED if versioned else _DLTENSOR, _DESTRUCTOR)

    def _export_on_device(self, array: int, schema: int, versioned: bool, stream: Any, copy: Optional[bool]) -> int:
        """Device data: shared on its device, after the consumer's stream
        was made to wait on the producer's event."""
        device_type, device_id = self.__dlpack_device__()
        if copy:
            raise BufferError(
                f"copy=True: arrow_dlpack shares memory and never copies device data (device {(device_type, device_id)}); "
                "copy it with the consumer's library (e.g. torch.from_dlpack(x).clone())"
            )
        if self._options is not _DEFAULT_OPTIONS:
            raise BufferError(
                f"null_value, dtype and temporal_as_int need a copy or a host read, and the data is on device "
                f"{(device_type, device_id)}: arrow_dlpack never copies device data"
            )
        event = _void_p_at(array + _SYNC_EVENT_OFFSET).value
        if event:
            _sync.wait(device_type, device_id, event, stream)
        else:
            _sync.check_stream(device_type, stream)
        export = _export_device if versioned else _export_device_legacy
        tensor = export(array, schema, None, None)
        if not tensor:
            raise BufferError(_error_of(export, versioned, array, schema, None))
        return tensor

    def _check_device(self, dl_device: Tuple[int, int]) -> None:
        device = self.__dlpack_device__()
        if tuple(dl_device) != device:
            raise BufferError(
                f"the data is on device {device}; {tuple(dl_device)} would need a copy across devices, "
                "which arrow_dlpack never makes: copy with the consumer's library"
            )

    def __repr__(self) -> str:
        state = "consumed" if self._consumed else "not consumed"
        return f"<arrow_dlpack.DLPackExporter {state}>"


def _error_of(export: Any, versioned: bool, *args: Any) -> str:
    """The message of a failed export, by replaying it with an error struct."""
    error = _ffi.ArrowDlpackError()
    tensor = export(*args, ctypes.byref(error))
    if tensor:  # unreachable: the same input failed a moment ago
        _ffi.tensor_capsule(tensor, versioned)
    return _ffi.last_error(error)


def _arrow_object(obj: Any) -> Tuple[Any, Any, Any, bytes]:
    """(owner, schema, array, name) of any Arrow PyCapsule producer: the
    device protocol first, then the array protocol, then the stream."""
    kind = type(obj)
    # The device protocol first: it is the only one that says where the
    # data is, so data on a GPU reaches its consumer on the GPU whatever
    # else the object implements (an object may define __arrow_c_array__
    # and raise from it for device data, as ours does). One export either
    # way: nothing is tried and thrown away, and its errors are the
    # producer's own. (For pyarrow it costs ~50 ns more than
    # __arrow_c_array__.)
    device_export = getattr(kind, "__arrow_c_device_array__", None)
    if device_export is not None:
        schema, array = device_export(obj)
        return (schema, array), schema, array, _ARROW_DEVICE_ARRAY
    array_export = getattr(kind, "__arrow_c_array__", None)
    if array_export is not None:
        schema, array = array_export(obj)
        return (schema, array), schema, array, _ffi.ARROW_ARRAY
    if getattr(kind, "__arrow_c_stream__", None) is not None:
        # Read when a consumer asks: by the library, to its end.
        stream = obj.__arrow_c_stream__()
        return stream, None, stream, _ARROW_STREAM
    raise TypeError(
        "arrow_dlpack.to_dlpack needs an Arrow array: an object implementing __arrow_c_device_array__, "
        f"__arrow_c_array__ or __arrow_c_stream__; got {kind.__module__}.{kind.__qualname__}"
    )


def to_dlpack(
    obj: Any,
    *,
    order: str = "any",
    null_value: Optional[float] = None,
    dtype: Any = None,
    temporal_as_int: bool = False,
) -> DLPackExporter:
    """Wraps an Arrow array so that DLPack consumers share its memory, or
    get one copy of it where sharing is impossible.

    ``obj`` implements ``__arrow_c_device_array__`` (data on any device,
    the CPU included), ``__arrow_c_array__`` (CPU data), or
    ``__arrow_c_stream__`` (pyarrow ChunkedArray and Table, polars Series,
    RecordBatchReader...: one chunk is shared, several are concatenated by
    one copy). Raises ``TypeError`` for anything else.

    ``null_value``: None, nulls raise ``BufferError``; a number, each null
    becomes it (a copy; it must be exact in the tensor's dtype).
    ``dtype``: a NumPy-style name (``"float32"``, ``"int64"``, ``"bool"``...)
    or NumPy dtype, converted as ``astype`` would (a copy); None keeps the
    array's own. ``temporal_as_int``: dates, times, timestamps and
    durations are shared as their int32/int64 storage. ``order`` ("any",
    "C", "F") is for tables (2-D tensors).

    >>> import numpy as np, pyarrow as pa
    >>> np.from_dlpack(to_dlpack(pa.array([1, 2, 3], pa.int32())))
    array([1, 2, 3], dtype=int32)
    >>> np.from_dlpack(to_dlpack(pa.array([True, None, False]), null_value=0))
    array([ True, False, False])
    """
    if order == "any" and null_value is None and dtype is None and not temporal_as_int:
        options = _DEFAULT_OPTIONS
        # The common case, inlined: the device protocol (see `_arrow_object`).
        device_export = getattr(type(obj), "__arrow_c_device_array__", None)
        if device_export is not None:
            schema, array = device_export(obj)
            return DLPackExporter((schema, array), schema, array, _ARROW_DEVICE_ARRAY)
    elif order not in _ORDERS:
        raise ValueError(f"order must be 'any', 'C' or 'F', got {order!r}")
    else:
        options = _Options(_ORDERS[order], null_value, None if dtype is None else _dtype_of(dtype), temporal_as_int)
    owner, schema, array, name = _arrow_object(obj)
    return DLPackExporter(owner, schema, array, name, options)


class _Ready:
    """A ready DLPack 1.x tensor, handed to the first consumer (its
    capsule deletes it if nobody takes it)."""

    __slots__ = ("_capsule",)

    def __init__(self, tensor: int):
        self._capsule = _capsule_new(tensor, _DLTENSOR_VERSIONED, _DESTRUCTOR)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return _CPU

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None, copy: Any = None) -> Any:
        if self._capsule is None:
            raise BufferError("this validity mask was already consumed; call arrow_dlpack.validity again")
        if max_version is None or max_version[0] < 1:
            raise BufferError("the validity mask is a DLPack 1.x tensor: its consumer must pass max_version=(1, 0) or later")
        if stream is not None:
            raise BufferError(f"stream must be None for CPU data, got {stream!r}")
        if dl_device is not None and tuple(dl_device) != _CPU:
            raise BufferError(f"the mask is on the CPU; {tuple(dl_device)} would need a copy across devices")
        capsule, self._capsule = self._capsule, None
        return capsule


def validity(obj: Any) -> Any:
    """The validity of an Arrow array as a DLPack exporter of a kDLBool
    tensor of the shape ``to_dlpack(obj)`` has: True where the value is
    valid (nulls at a list level cover their whole row). Always a fresh,
    writable copy; a DLPack 1.x tensor (its consumer passes
    ``max_version``, as NumPy and PyTorch do).

    >>> import numpy as np, pyarrow as pa
    >>> np.from_dlpack(validity(pa.array([1, None, 3])))
    array([ True, False,  True])
    """
    owner, schema, array, name = _arrow_object(obj)
    holder = ctypes.c_void_p()
    o = _ffi.ArrowDlpackExportOptions()
    # Nulls filled (with 0, exact in any dtype) so that an array with nulls
    # exports at all; the data tensor is then dropped.
    o.copy, o.fill_nulls, o.fill_value = _ffi.COPY_IF_NEEDED, 1, 0.0
    o.validity = ctypes.addressof(holder)
    error = _ffi.ArrowDlpackError()
    if schema is None:
        pointer = _get_pointer(id(array), name)
        tensor = _export_stream(pointer, ctypes.byref(o), ctypes.byref(error))
    else:
        exporter = DLPackExporter(owner, schema, array, name)
        schema_ptr, array_ptr = exporter._addresses()
        if exporter._on_device and _int32_at(array_ptr + _DEVICE_TYPE_OFFSET).value != _ffi.K_DL_CPU:
            raise BufferError("the validity of device data would need a host read: arrow_dlpack never reads device memory")
        tensor = _export_with(array_ptr, schema_ptr, ctypes.byref(o), ctypes.byref(error))
    if not tensor:
        raise BufferError(_ffi.last_error(error))
    _ffi.tensor_capsule(tensor, True)  # the data tensor: deleted with its capsule, now
    return _Ready(holder.value)
