"""DLPack -> Arrow: ``from_dlpack``."""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

from . import _ffi

# DLPack device types whose memory the host can read.
_HOST_READABLE = (1, 3, 11)  # kDLCPU, kDLCUDAHost, kDLROCMHost
def _import_options(copy: int) -> Any:
    o = _ffi.ArrowDlpackImportOptions()
    o.copy = copy
    return o


_OPTIONS = {None: _import_options(_ffi.COPY_IF_NEEDED), False: _import_options(_ffi.COPY_NEVER), True: _import_options(_ffi.COPY_ALWAYS)}


def _set_device(array_ptr: int, device: Tuple[int, int]) -> None:
    """The device fields of a struct ArrowDeviceArray whose array the
    plain import wrote (host memory)."""
    struct = _ffi.ArrowDeviceArray.from_address(array_ptr)
    struct.device_type = device[0]
    struct.device_id = -1 if device[0] == 1 else device[1]
    struct.sync_event = None
    struct.reserved[:] = (0, 0, 0)


# The `stream` from_dlpack passes for device data (the array API's values):
# CUDA's legacy default stream (1), ROCm's default stream (0).
_DEFAULT_STREAM = {2: 1, 13: 1, 10: 0}  # kDLCUDA, kDLCUDAManaged, kDLROCm


class ArrowArrayFromDLPack:
    """A DLPack tensor shared as an Arrow array (see :func:`from_dlpack`).

    Implements ``__arrow_c_device_array__`` and, for memory the host can
    read, ``__arrow_c_array__``; either can be called once: the consumer
    takes the array, which owns the tensor, and the tensor's deleter runs
    when the consumer releases it. If no consumer ever takes it, collecting
    this object releases everything.
    """

    __slots__ = ("_schema", "_array", "_length", "device")

    def __init__(self, schema: int, array: int, device: Tuple[int, int]):
        self._length = ctypes.c_int64.from_address(array).value  # struct ArrowArray's first field
        # malloc'd structs: `array` is a struct ArrowDeviceArray, whose first
        # member is the struct ArrowArray that __arrow_c_array__ hands out.
        self._schema = schema
        self._array = array
        #: ``(device_type, device_id)`` of the data, DLPack numbering.
        self.device = device

    def _take(self, array_name: bytes) -> Tuple[Any, Any]:
        if not self._array:
            raise BufferError("this arrow_dlpack array was already consumed; call from_dlpack again")
        schema, array = self._schema, self._array
        self._schema = self._array = 0
        # From here the capsules own the structs (and, through the array,
        # the tensor); their destructor releases whatever a consumer leaves.
        return (
            _ffi.capsule_new(schema, _ffi.ARROW_SCHEMA, _ffi.CAPSULE_DESTRUCTOR),
            _ffi.capsule_new(array, array_name, _ffi.CAPSULE_DESTRUCTOR),
        )

    def __arrow_c_array__(self, requested_schema: Optional[Any] = None) -> Tuple[Any, Any]:
        """``(schema capsule, array capsule)``, for memory the host can read.
        ``requested_schema`` is ignored: the array is shared as it is."""
        if self.device[0] not in _HOST_READABLE:
            raise BufferError(f"the data is on device {self.device}: use __arrow_c_device_array__")
        return self._take(_ffi.ARROW_ARRAY)

    def __arrow_c_device_array__(self, requested_schema: Optional[Any] = None, **kwargs: Any) -> Tuple[Any, Any]:
        """``(schema capsule, device array capsule)``; ``sync_event`` is NULL."""
        return self._take(_ffi.ARROW_DEVICE_ARRAY)

    def __del__(self) -> None:
        if getattr(self, "_array", 0):
            self._take(_ffi.ARROW_DEVICE_ARRAY)  # the capsules die at once, releasing all

    def __len__(self) -> int:
        """The number of elements (rows, for N-D tensors)."""
        return self._length

    def __repr__(self) -> str:
        state = "consumed" if not self._array else "not consumed"
        return f"<arrow_dlpack.ArrowArrayFromDLPack on device {self.device}, {state}>"


def _columns_options(copy: Optional[bool], columns: Any) -> Tuple[Any, Any]:
    """Import options for ``columns`` (True, or a list of names), and what
    must stay alive while they are used."""
    o = _import_options(_OPTIONS[copy].copy)
    o.as_columns = 1
    if columns is True:
        return o, _TABLE
    if isinstance(columns, (str, bytes)) or not hasattr(columns, "__iter__"):
        raise TypeError(f"columns must be True or a list of names, got {columns!r}")
    names = [n.encode() if isinstance(n, str) else bytes(n) for n in columns]
    if any(b"\0" in n for n in names):
        raise ValueError("a column name holds a NUL character")
    array = (ctypes.c_char_p * len(names))(*names)
    o.column_names = ctypes.cast(array, ctypes.c_void_p)
    return o, (names, array)


_TABLE = (None, None)  # `keep` of columns=True: nothing to keep, but a table


def from_dlpack(x: Any, *, columns: Any = None, copy: Optional[bool] = None) -> ArrowArrayFromDLPack:
    """Shares any DLPack producer's tensor as an Arrow array, or copies it
    once where Arrow cannot share it.

    ``columns``: None, the tensor is one array; True or a list of names
    (one per column), a 2-D tensor ``[rows, columns]`` becomes a struct
    array of its columns, named "0", "1", ... or as given, so that
    ``pyarrow.record_batch(...)`` and ``pyarrow.table(...)`` take it. A
    column-major (Fortran-order) tensor is shared: each column points into
    it. A row-major one is copied out column by column (``copy=False``:
    ``BufferError``).

    ``copy`` follows the array API: None shares when it can and copies
    otherwise (bool tensors, which Arrow packs into bits; strides Arrow
    cannot describe: gaps, reversed, broadcast, Fortran order); False never
    copies (``BufferError`` instead); True always copies. A copy is
    row-major, owned by the Arrow array, and the producer's tensor is
    released at once. Device tensors are never copied.

    Asks ``x.__dlpack__(max_version=(1, 3))`` (legacy ``x.__dlpack__()`` for
    producers that reject the keyword). 0-D and 1-D contiguous tensors
    become primitive arrays; dense N-D tensors become
    ``arrow.fixed_shape_tensor`` arrays over their first dimension (with a
    permutation for transposed inner dimensions). The result implements
    ``__arrow_c_array__`` (or ``__arrow_c_device_array__``), so that
    ``pyarrow.array(from_dlpack(np_array))`` shares NumPy's memory.

    Device data: ``x.__dlpack__`` is given the ``stream`` the array API
    prescribes for a consumer without a stream of its own, the default one
    (CUDA: ``1``, the legacy default stream; ROCm: ``0``), so the producer
    orders its pending work before that stream. The Arrow array's
    ``sync_event`` is then NULL, which means: work on the legacy default
    stream, or on any blocking stream (which synchronizes with it), sees
    the data; a consumer reading on a non-blocking stream, or from the
    host, synchronizes with the device first.

    Raises ``TypeError`` for objects without ``__dlpack__`` and
    ``BufferError`` with the library's message for tensors Arrow cannot
    hold (complex dtypes...) or that need a copy ``copy`` forbids; the
    producer's tensor is then left to its capsule.

    >>> import numpy as np, pyarrow as pa
    >>> pa.array(from_dlpack(np.arange(3)))
    <pyarrow.lib.Int64Array object at ...>
    [
      0,
      1,
      2
    ]
    """
    if getattr(type(x), "__dlpack__", None) is None:
        kind = type(x)
        raise TypeError(f"arrow_dlpack.from_dlpack needs an object with __dlpack__, got {kind.__module__}.{kind.__qualname__}")
    # Checked before the producer is asked for anything.
    options, keep = _OPTIONS[copy], None
    if columns is not None and columns is not False:
        options, keep = _columns_options(copy, columns)
    device = x.__dlpack_device__() if hasattr(x, "__dlpack_device__") else (1, 0)
    device = (int(device[0]), int(device[1]))
    # The array API's consumer side: the stream the data will be used on.
    # Arrow consumers have none to name, so the default one: the producer
    # orders its work before it, and the array carries no sync_event.
    stream = _DEFAULT_STREAM.get(device[0])
    try:
        if stream is None:
            capsule = x.__dlpack__(max_version=(1, 3))
        else:
            capsule = x.__dlpack__(max_version=(1, 3), stream=stream)
    except TypeError:  # a producer written before DLPack 1.0
        capsule = x.__dlpack__() if stream is None else x.__dlpack__(stream=stream)
    versioned = _ffi.capsule_is(capsule, _ffi.DLTENSOR_VERSIONED)
    name = _ffi.DLTENSOR_VERSIONED if versioned else _ffi.DLTENSOR
    tensor = _ffi.capsule_pointer(capsule, name)
    host = device[0] in _HOST_READABLE
    if not host and not versioned:
        raise BufferError("device tensors are imported from DLPack 1.x producers only")
    if not host and copy:
        raise BufferError(
            f"copy=True: arrow_dlpack never copies device data (device {device}); copy it with the producer's library"
        )
    if keep is not None and not (versioned and host):
        raise BufferError(
            f"columns: a table is made from a DLPack 1.x tensor in host memory; this one is "
            f"{'on device ' + str(device) if not host else 'a legacy (pre-1.0) capsule'}"
        )
    if keep is not None and keep[0] is not None:
        # The library reads one name per column: the count must match.
        t = _ffi.DLManagedTensorVersioned.from_address(tensor).dl_tensor
        if t.ndim == 2 and t.shape[1] != len(keep[0]):
            raise ValueError(f"columns: {len(keep[0])} names for a tensor of {t.shape[1]} columns")
    size = ctypes.sizeof(_ffi.ArrowSchema), ctypes.sizeof(_ffi.ArrowDeviceArray)
    schema_ptr, array_ptr = _ffi.malloc(size[0]), _ffi.malloc(size[1])
    error = _ffi.ArrowDlpackError()
    status = 7  # ARROW_DLPACK_OUT_OF_MEMORY
    if schema_ptr and array_ptr:
        if versioned and host:
            # struct ArrowDeviceArray starts with its struct ArrowArray.
            status = _ffi.lib.arrow_dlpack_import_with(tensor, ctypes.addressof(options), array_ptr, schema_ptr, ctypes.byref(error))
            if status == 0:
                _set_device(array_ptr, device)
        elif versioned:
            status = _ffi.lib.arrow_dlpack_import_device(tensor, array_ptr, schema_ptr, ctypes.byref(error))
        elif host:
            # struct ArrowDeviceArray starts with its struct ArrowArray.
            status = _ffi.lib.arrow_dlpack_import(tensor, array_ptr, schema_ptr, ctypes.byref(error))
            if status == 0:
                _set_device(array_ptr, device)
    del keep  # the names were copied into the schema
    if status != 0:
        _ffi.free(schema_ptr)
        _ffi.free(array_ptr)
        if status == 7 and not error.message:
            raise MemoryError("allocating the Arrow structs failed")
        # The tensor is untouched and still the producer capsule's.
        raise BufferError(_ffi.last_error(error))
    # The Arrow array owns the tensor now: the producer's capsule must not
    # delete it.
    _ffi.capsule_rename(capsule, _ffi.USED_DLTENSOR_VERSIONED if versioned else _ffi.USED_DLTENSOR)
    return ArrowArrayFromDLPack(schema_ptr, array_ptr, device)
