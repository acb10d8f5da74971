"""arrow_dlpack: hand any Arrow array to NumPy, PyTorch or JAX without copying.

>>> import numpy as np, pyarrow as pa, arrow_dlpack
>>> np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([1.0, 2.0, 3.0])))
array([1., 2., 3.])

``to_dlpack`` accepts any object implementing the Arrow PyCapsule interface
(``__arrow_c_array__``, ``__arrow_c_device_array__``, or a one-chunk
``__arrow_c_stream__``): pyarrow, nanoarrow, arro3, polars, DuckDB results...
The returned exporter follows the Python DLPack protocol and the array API
rules; see :class:`DLPackExporter`.

``from_dlpack`` goes the other way: any object with ``__dlpack__`` (NumPy,
PyTorch, JAX...) becomes an object implementing ``__arrow_c_array__``, so
``pyarrow.array(arrow_dlpack.from_dlpack(x))`` shares the tensor's memory.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

from . import _ffi
from ._import import ArrowArrayFromDLPack, from_dlpack

__all__ = ["to_dlpack", "from_dlpack", "DLPackExporter", "ArrowArrayFromDLPack", "__version__"]

__version__: str = _ffi.lib.arrow_dlpack_version().decode()

_export = _ffi.lib.arrow_dlpack_export
_export_versioned = _ffi.lib.arrow_dlpack_export_versioned
_export_device = _ffi.lib.arrow_dlpack_export_device
_get_pointer = _ffi._get_pointer
_capsule_new = _ffi.capsule_new
_tensor_capsule = _ffi.tensor_capsule
_DESTRUCTOR = _ffi.CAPSULE_DESTRUCTOR
_DLTENSOR = _ffi.DLTENSOR
_DLTENSOR_VERSIONED = _ffi.DLTENSOR_VERSIONED
_ARROW_SCHEMA = _ffi.ARROW_SCHEMA
_CPU = (_ffi.K_DL_CPU, 0)


class DLPackExporter:
    """An Arrow array on its way to a DLPack consumer.

    Ownership: the exporter holds the producer's Arrow structs (through its
    capsules), and so the Arrow data, until a consumer calls
    :meth:`__dlpack__`. That call moves the array into a DLPack tensor owned
    by the returned capsule, and from there by the consumer
    (``numpy.from_dlpack`` and friends), which frees it when done. An
    exporter that is never consumed frees the Arrow data when it is garbage
    collected. An exporter can be consumed once.
    """

    __slots__ = ("_owner", "_schema", "_array", "_array_name", "_device")

    def __init__(self, owner: Any, schema: Any, array: Any, array_name: Optional[bytes]):
        # `owner` keeps the structs alive and releases whatever is still
        # unreleased when it is collected. `schema`/`array` are capsules
        # (`array_name` names the array's) or, with `array_name` None,
        # addresses. Nothing is read before a consumer asks.
        self._owner = owner
        self._schema = schema
        self._array = array
        self._array_name = array_name
        self._device: Optional[Tuple[int, int]] = None if array_name == _ffi.ARROW_DEVICE_ARRAY else _CPU

    def _addresses(self) -> Tuple[int, int]:
        """The addresses of the schema and array structs (once per exporter)."""
        if self._array_name is not None:
            # id(): the capsules' addresses; `_owner` keeps them alive.
            self._array = _get_pointer(id(self._array), self._array_name)
            self._schema = _get_pointer(id(self._schema), _ffi.ARROW_SCHEMA)
            self._array_name = None
        return self._schema, self._array

    def __dlpack_device__(self) -> Tuple[int, int]:
        """``(device_type, device_id)`` of the data, in DLPack's numbering."""
        device = self._device
        if device is None:
            if self._array is None:
                raise BufferError("this arrow_dlpack exporter was already consumed; call to_dlpack again")
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
        """A ``"dltensor_versioned"`` capsule (DLPack 1.3, read-only flag set)
        when ``max_version >= (1, 0)``, else a legacy ``"dltensor"`` capsule.
        The capsule owns the tensor until a consumer takes it.

        Raises ``BufferError`` when the request cannot be met without a copy
        (``copy=True``, another ``dl_device``), for a ``stream`` with CPU
        data, when the array cannot be shared (nulls, non-numeric type: the
        message is the library's), or when the exporter was already consumed.
        """
        if self._array is None:
            raise BufferError("this arrow_dlpack exporter was already consumed; call to_dlpack again")
        if copy:
            raise BufferError("arrow_dlpack shares Arrow memory; copying is not supported yet (copy=True)")
        device = self._device or self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError(f"the data is on device {device}; {tuple(dl_device)} would need a copy")
        versioned = max_version is not None and max_version[0] >= 1
        name = self._array_name
        if name is None:
            schema, array = self._schema, self._array
        else:  # `_addresses`, inlined on this hot path
            array = _get_pointer(id(self._array), name)
            schema = _get_pointer(id(self._schema), _ARROW_SCHEMA)
        if device != _CPU:
            tensor = _export_on_device(array, schema, versioned)
        else:
            if stream is not None:
                raise BufferError(f"stream must be None for CPU data, got {stream!r}")
            # A struct ArrowDeviceArray starts with its struct ArrowArray:
            # the plain export reads it at the same address. No error struct
            # on this path: a failed export leaves the array untouched, so
            # it is replayed to get the message.
            export = _export_versioned if versioned else _export
            tensor = export(array, schema, None)
            if not tensor:
                raise BufferError(_error_of(export, array, schema))
        self._array = None  # moved into the tensor
        return _capsule_new(tensor, _DLTENSOR_VERSIONED if versioned else _DLTENSOR, _DESTRUCTOR)

    def __repr__(self) -> str:
        state = "consumed" if self._array is None else "not consumed"
        return f"<arrow_dlpack.DLPackExporter {state}>"


def _export_on_device(array: int, schema: int, versioned: bool) -> int:
    if not versioned:
        raise BufferError("device data is exported as a DLPack 1.x tensor: pass max_version=(1, 0) or later")
    if _ffi.ArrowDeviceArray.from_address(array).sync_event:
        raise BufferError(
            "the producer requires waiting on its sync_event before the data is read, which the "
            "Python package cannot do; use the C API (arrow_dlpack_export_device)"
        )
    error = _ffi.ArrowDlpackError()
    tensor = _export_device(array, schema, None, ctypes.byref(error))
    if not tensor:
        raise BufferError(_ffi.last_error(error))
    return tensor


def _error_of(export: Any, array: int, schema: int) -> str:
    error = _ffi.ArrowDlpackError()
    tensor = export(array, schema, ctypes.byref(error))
    if tensor:  # unreachable: the same input failed a moment ago
        _tensor_capsule(tensor, export is _export_versioned)
    return _ffi.last_error(error)


def to_dlpack(obj: Any) -> DLPackExporter:
    """Wraps an Arrow array so that DLPack consumers share its memory.

    ``obj`` implements ``__arrow_c_array__`` (CPU data) or
    ``__arrow_c_device_array__`` (data on any device, used when the object
    has no ``__arrow_c_array__``), or ``__arrow_c_stream__`` with exactly
    one chunk. Raises ``TypeError`` for
    anything else, and ``BufferError`` for a stream of several chunks
    (sharing them as one tensor would need a copy).

    >>> import numpy as np, pyarrow as pa
    >>> np.from_dlpack(to_dlpack(pa.array([1, 2, 3], pa.int32())))
    array([1, 2, 3], dtype=int32)
    """
    kind = type(obj)
    # __arrow_c_array__ first: every CPU producer has it, and it is the
    # cheaper export (pyarrow's device export costs nearly twice as much).
    # Objects that only speak the device protocol (GPU producers) take the
    # device path, and keep their data on the device.
    array_export = getattr(kind, "__arrow_c_array__", None)
    if array_export is not None:
        schema, array = array_export(obj)
        return DLPackExporter((schema, array), schema, array, _ffi.ARROW_ARRAY)
    device_export = getattr(kind, "__arrow_c_device_array__", None)
    if device_export is not None:
        schema, array = device_export(obj)
        return DLPackExporter((schema, array), schema, array, _ffi.ARROW_DEVICE_ARRAY)
    if getattr(kind, "__arrow_c_stream__", None) is not None:
        from ._stream import single_chunk

        owned = single_chunk(obj.__arrow_c_stream__())
        return DLPackExporter(owned, ctypes.addressof(owned.schema), ctypes.addressof(owned.array), None)
    raise TypeError(
        "arrow_dlpack.to_dlpack needs an Arrow array: an object implementing __arrow_c_array__, "
        f"__arrow_c_device_array__ or __arrow_c_stream__; got {kind.__module__}.{kind.__qualname__}"
    )
