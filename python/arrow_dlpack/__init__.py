"""arrow_dlpack: hand any Arrow array to NumPy, PyTorch or JAX without copying.

>>> import numpy as np, pyarrow as pa, arrow_dlpack
>>> np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([1.0, 2.0, 3.0])))
array([1., 2., 3.])

``to_dlpack`` accepts any object implementing the Arrow PyCapsule interface
(``__arrow_c_device_array__``, ``__arrow_c_array__``, or a one-chunk
``__arrow_c_stream__``): pyarrow, nanoarrow, arro3, polars, DuckDB results...
The returned exporter follows the Python DLPack protocol and the array API
rules; see :class:`DLPackExporter`.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

from . import _ffi

__all__ = ["to_dlpack", "DLPackExporter", "__version__"]

__version__: str = _ffi.lib.arrow_dlpack_version().decode()

_export = _ffi.lib.arrow_dlpack_export
_export_versioned = _ffi.lib.arrow_dlpack_export_versioned
_export_device = _ffi.lib.arrow_dlpack_export_device
_capsule_pointer = _ffi.capsule_pointer
_tensor_capsule = _ffi.tensor_capsule
_CPU = (_ffi.K_DL_CPU, 0)
# Offsets of device_id and device_type in struct ArrowDeviceArray.
_DEVICE_ID_OFFSET = ctypes.sizeof(_ffi.ArrowArray)
_DEVICE_TYPE_OFFSET = _DEVICE_ID_OFFSET + 8


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

    __slots__ = ("_owner", "_schema", "_array", "_device")

    def __init__(self, owner: Any, schema_ptr: int, array_ptr: int, device: Tuple[int, int]):
        # `owner` keeps the structs at `schema_ptr`/`array_ptr` alive and
        # releases whatever is still unreleased when it is collected.
        self._owner = owner
        self._schema = schema_ptr
        self._array = array_ptr
        self._device = device

    def __dlpack_device__(self) -> Tuple[int, int]:
        """``(device_type, device_id)`` of the data, in DLPack's numbering."""
        return self._device

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
        array = self._array
        if array is None:
            raise BufferError("this arrow_dlpack exporter was already consumed; call to_dlpack again")
        if copy:
            raise BufferError("arrow_dlpack shares Arrow memory; copying is not supported yet (copy=True)")
        device = self._device
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError(f"the data is on device {device}; {tuple(dl_device)} would need a copy")
        versioned = max_version is not None and tuple(max_version) >= (1, 0)
        if device == _CPU:
            if stream is not None:
                raise BufferError(f"stream must be None for CPU data, got {stream!r}")
            export = _export_versioned if versioned else _export
            # No error struct on the fast path: a failed export leaves the
            # array untouched, so it is replayed to get the message.
            tensor = export(array, self._schema, None)
            if not tensor:
                raise BufferError(_error_of(export, array, self._schema))
        else:
            tensor = self._export_device(array, versioned)
        self._array = None  # moved into the tensor
        return _tensor_capsule(tensor, versioned)

    def _export_device(self, array: int, versioned: bool) -> int:
        if not versioned:
            raise BufferError("device data is exported as a DLPack 1.x tensor: pass max_version=(1, 0) or later")
        if _ffi.ArrowDeviceArray.from_address(array).sync_event:
            raise BufferError(
                "the producer requires waiting on its sync_event before the data is read, which the "
                "Python package cannot do; use the C API (arrow_dlpack_export_device)"
            )
        error = _ffi.ArrowDlpackError()
        tensor = _export_device(array, self._schema, None, ctypes.byref(error))
        if not tensor:
            raise BufferError(_ffi.last_error(error))
        return tensor

    def __repr__(self) -> str:
        state = "consumed" if self._array is None else "not consumed"
        return f"<arrow_dlpack.DLPackExporter on device {self._device}, {state}>"


def _error_of(export: Any, array: int, schema: int) -> str:
    error = _ffi.ArrowDlpackError()
    tensor = export(array, schema, ctypes.byref(error))
    if tensor:  # unreachable: the same input failed a moment ago
        _tensor_capsule(tensor, export is _export_versioned)
    return _ffi.last_error(error)


def to_dlpack(obj: Any) -> DLPackExporter:
    """Wraps an Arrow array so that DLPack consumers share its memory.

    ``obj`` implements ``__arrow_c_device_array__`` or ``__arrow_c_array__``
    (preferred in that order, so that device data stays on its device), or
    ``__arrow_c_stream__`` with exactly one chunk. Raises ``TypeError`` for
    anything else, and ``BufferError`` for a stream of several chunks
    (sharing them as one tensor would need a copy).

    >>> import numpy as np, pyarrow as pa
    >>> np.from_dlpack(to_dlpack(pa.array([1, 2, 3], pa.int32())))
    array([1, 2, 3], dtype=int32)
    """
    kind = type(obj)
    device_export = getattr(kind, "__arrow_c_device_array__", None)
    if device_export is not None:
        capsules = device_export(obj)
        array = _capsule_pointer(capsules[1], _ffi.ARROW_DEVICE_ARRAY)
        device_type = ctypes.c_int32.from_address(array + _DEVICE_TYPE_OFFSET).value
        if device_type == _ffi.K_DL_CPU:
            # struct ArrowDeviceArray starts with its struct ArrowArray: the
            # plain (legacy-capable) export reads it at the same address.
            device = _CPU
        else:
            device = (device_type, ctypes.c_int64.from_address(array + _DEVICE_ID_OFFSET).value)
        return DLPackExporter(capsules, _capsule_pointer(capsules[0], _ffi.ARROW_SCHEMA), array, device)
    array_export = getattr(kind, "__arrow_c_array__", None)
    if array_export is not None:
        capsules = array_export(obj)
        schema = _capsule_pointer(capsules[0], _ffi.ARROW_SCHEMA)
        return DLPackExporter(capsules, schema, _capsule_pointer(capsules[1], _ffi.ARROW_ARRAY), _CPU)
    if getattr(kind, "__arrow_c_stream__", None) is not None:
        from ._stream import single_chunk

        owned = single_chunk(obj.__arrow_c_stream__())
        return DLPackExporter(owned, ctypes.addressof(owned.schema), ctypes.addressof(owned.array), _CPU)
    raise TypeError(
        "arrow_dlpack.to_dlpack needs an Arrow array: an object implementing __arrow_c_array__, "
        f"__arrow_c_device_array__ or __arrow_c_stream__; got {kind.__module__}.{kind.__qualname__}"
    )
