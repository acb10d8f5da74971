"""arrow_dlpack: hand any Arrow array to NumPy, PyTorch or JAX without copying.

>>> import numpy as np, pyarrow as pa, arrow_dlpack
>>> np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([1.0, 2.0, 3.0])))
array([1., 2., 3.])

``to_dlpack`` accepts any object implementing the Arrow PyCapsule interface
(``__arrow_c_device_array__``, ``__arrow_c_array__``, or a one-chunk
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

from . import _ffi, _sync
from ._import import ArrowArrayFromDLPack, from_dlpack

__all__ = ["to_dlpack", "from_dlpack", "DLPackExporter", "ArrowArrayFromDLPack", "__version__"]

__version__: str = _ffi.lib.arrow_dlpack_version().decode()

_export = _ffi.lib.arrow_dlpack_export
_export_versioned = _ffi.lib.arrow_dlpack_export_versioned
_export_device = _ffi.lib.arrow_dlpack_export_device
_export_device_legacy = _ffi.lib.arrow_dlpack_export_device_legacy
_get_pointer = _ffi._get_pointer
_capsule_new = _ffi.capsule_new
_tensor_capsule = _ffi.tensor_capsule
_DESTRUCTOR = _ffi.CAPSULE_DESTRUCTOR
_DLTENSOR = _ffi.DLTENSOR
_DLTENSOR_VERSIONED = _ffi.DLTENSOR_VERSIONED
_ARROW_SCHEMA = _ffi.ARROW_SCHEMA
_ARROW_DEVICE_ARRAY = _ffi.ARROW_DEVICE_ARRAY
_CPU = (_ffi.K_DL_CPU, 0)
# struct ArrowDeviceArray: where sync_event lies, read on every device export.
_SYNC_EVENT_OFFSET = _ffi.ArrowDeviceArray.sync_event.offset
_void_p_at = ctypes.c_void_p.from_address


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

    __slots__ = ("_owner", "_schema", "_array", "_array_name", "_device", "_on_device", "_consumed")

    def __init__(self, owner: Any, schema: Any, array: Any, array_name: Optional[bytes]):
        # `owner` keeps the structs alive and releases whatever is still
        # unreleased when it is collected. `schema`/`array` are capsules
        # (`array_name` names the array's) or, with `array_name` None,
        # addresses of a struct ArrowSchema and a struct ArrowArray. Nothing
        # is read before a consumer asks.
        self._owner = owner
        self._schema = schema
        self._array = array
        self._array_name = array_name
        # Whether the array is a struct ArrowDeviceArray (its device is
        # read when asked), or a struct ArrowArray (CPU data).
        self._on_device = array_name == _ARROW_DEVICE_ARRAY
        self._device: Optional[Tuple[int, int]] = None if self._on_device else _CPU
        self._consumed = False

    def _addresses(self) -> Tuple[int, int]:
        """The addresses of the schema and array structs (once per exporter)."""
        if self._array_name is not None:
            # id(): the capsules' addresses; `_owner` keeps them alive.
            self._array = _get_pointer(id(self._array), self._array_name)
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
        """A ``"dltensor_versioned"`` capsule (DLPack 1.3, read-only flag set)
        when ``max_version >= (1, 0)``, else a legacy ``"dltensor"`` capsule
        (for CPU and device data alike: JAX asks for no version). The
        capsule owns the tensor until a consumer takes it.

        ``stream`` follows the array API: for CPU data it must be None; for
        device data whose producer handed a ``sync_event``, the consumer's
        stream is made to wait on it (see ``arrow_dlpack._sync``); -1 means
        the consumer synchronizes itself.

        Raises ``BufferError`` when the request cannot be met without a copy
        (``copy=True``; a ``dl_device`` other than the data's: this library
        never copies, and copies across devices are the consumer's library's
        job), for a stream the array API disallows, when the array cannot be
        shared (nulls, non-numeric type: the message is the library's), or
        when the exporter was already consumed.
        """
        if self._consumed:
            raise BufferError("this arrow_dlpack exporter was already consumed; call to_dlpack again")
        if copy or dl_device is not None:
            self._check_request(dl_device, copy)
        versioned = max_version is not None and max_version[0] >= 1
        name = self._array_name
        if name is None:
            schema, array = self._schema, self._array
        else:  # `_addresses`, inlined on this hot path
            array = _get_pointer(id(self._array), name)
            schema = _get_pointer(id(self._schema), _ARROW_SCHEMA)
            self._schema, self._array, self._array_name = schema, array, None
        if self._on_device:
            # Device protocol (any device, the CPU included): wait on the
            # producer's event as the consumer's stream requires, then export.
            event = _void_p_at(array + _SYNC_EVENT_OFFSET).value
            if event or stream is not None:
                device_type, device_id = self.__dlpack_device__()
                if event:
                    _sync.wait(device_type, device_id, event, stream)
                else:
                    _sync.check_stream(device_type, stream)
            # No error struct on the success path (a ctypes struct costs
            # more than the export): a failed export leaves the array
            # untouched, so it is replayed to get the message.
            export = _export_device if versioned else _export_device_legacy
            tensor = export(array, schema, None, None)
            if not tensor:
                raise BufferError(_error_of(export, versioned, array, schema, None))
        else:
            if stream is not None:
                raise BufferError(f"stream must be None for CPU data, got {stream!r}")
            export = _export_versioned if versioned else _export
            tensor = export(array, schema, None)
            if not tensor:
                raise BufferError(_error_of(export, versioned, array, schema))
        self._consumed = True  # the array moved into the tensor
        return _capsule_new(tensor, _DLTENSOR_VERSIONED if versioned else _DLTENSOR, _DESTRUCTOR)

    def _check_request(self, dl_device: Optional[Tuple[int, int]], copy: Optional[bool]) -> None:
        device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError(
                f"the data is on device {device}; {tuple(dl_device)} would need a copy across devices, "
                "which arrow_dlpack never makes: copy with the consumer's library"
            )
        if copy and device != _CPU:
            raise BufferError(
                f"copy=True: arrow_dlpack shares memory and never copies device data (device {device}); "
                "copy it with the consumer's library (e.g. torch.from_dlpack(x).clone())"
            )
        if copy:
            raise BufferError("arrow_dlpack shares Arrow memory; copying is not supported yet (copy=True)")

    def __repr__(self) -> str:
        state = "consumed" if self._consumed else "not consumed"
        return f"<arrow_dlpack.DLPackExporter {state}>"


def _error_of(export: Any, versioned: bool, *args: Any) -> str:
    """The message of a failed export, by replaying it with an error struct."""
    error = _ffi.ArrowDlpackError()
    tensor = export(*args, ctypes.byref(error))
    if tensor:  # unreachable: the same input failed a moment ago
        _tensor_capsule(tensor, versioned)
    return _ffi.last_error(error)


def to_dlpack(obj: Any) -> DLPackExporter:
    """Wraps an Arrow array so that DLPack consumers share its memory.

    ``obj`` implements ``__arrow_c_device_array__`` (data on any device,
    the CPU included), ``__arrow_c_array__`` (CPU data), or
    ``__arrow_c_stream__`` with exactly one chunk. Raises ``TypeError`` for
    anything else, and ``BufferError`` for a stream of several chunks
    (sharing them as one tensor would need a copy).

    >>> import numpy as np, pyarrow as pa
    >>> np.from_dlpack(to_dlpack(pa.array([1, 2, 3], pa.int32())))
    array([1, 2, 3], dtype=int32)
    """
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
        return DLPackExporter((schema, array), schema, array, _ARROW_DEVICE_ARRAY)
    array_export = getattr(kind, "__arrow_c_array__", None)
    if array_export is not None:
        schema, array = array_export(obj)
        return DLPackExporter((schema, array), schema, array, _ffi.ARROW_ARRAY)
    if getattr(kind, "__arrow_c_stream__", None) is not None:
        from ._stream import single_chunk

        owned = single_chunk(obj.__arrow_c_stream__())
        return DLPackExporter(owned, ctypes.addressof(owned.schema), ctypes.addressof(owned.array), None)
    raise TypeError(
        "arrow_dlpack.to_dlpack needs an Arrow array: an object implementing __arrow_c_device_array__, "
        f"__arrow_c_array__ or __arrow_c_stream__; got {kind.__module__}.{kind.__qualname__}"
    )
