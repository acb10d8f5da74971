"""ctypes bindings to the arrow_dlpack C library (``libarrow_dlpack.so``),
without the Python package: struct layouts, prototypes and the DLPack
capsule protocol, for programs that load the bare library with ctypes.

Everything here mirrors ``include/arrow_dlpack.h``; nothing is compiled.
The library is loaded on first use of ``lib``: ``$ARROW_DLPACK_LIBRARY``,
else ``libarrow_dlpack`` where the dynamic loader finds it (installed by
CMake, or on ``LD_LIBRARY_PATH``). ``ctypes_example.py`` beside this file
shows it at work; the package's tests use its struct layouts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

c_void_p = ctypes.c_void_p


class ArrowDlpackError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 256)]


class ArrowArray(ctypes.Structure):
    _fields_ = [
        ("length", ctypes.c_int64),
        ("null_count", ctypes.c_int64),
        ("offset", ctypes.c_int64),
        ("n_buffers", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("buffers", ctypes.POINTER(c_void_p)),
        ("children", c_void_p),
        ("dictionary", c_void_p),
        ("release", c_void_p),
        ("private_data", c_void_p),
    ]


class ArrowSchema(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("metadata", c_void_p),
        ("flags", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("children", c_void_p),
        ("dictionary", c_void_p),
        ("release", c_void_p),
        ("private_data", c_void_p),
    ]


class ArrowDeviceArray(ctypes.Structure):
    _fields_ = [
        ("array", ArrowArray),
        ("device_id", ctypes.c_int64),
        ("device_type", ctypes.c_int32),
        ("sync_event", c_void_p),
        ("reserved", ctypes.c_int64 * 3),
    ]


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_Deleter = ctypes.CFUNCTYPE(None, c_void_p)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", _Deleter)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("manager_ctx", c_void_p),
        ("deleter", _Deleter),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


class ArrowDlpackExportOptions(ctypes.Structure):
    _fields_ = [
        ("copy", ctypes.c_int32),
        ("order", ctypes.c_int32),
        ("fill_nulls", ctypes.c_int32),
        ("temporal_as_integer", ctypes.c_int32),
        ("fill_value", ctypes.c_double),
        ("dtype", DLDataType),
        ("validity", c_void_p),
        ("reserved", ctypes.c_int64 * 4),
    ]


class ArrowDlpackImportOptions(ctypes.Structure):
    _fields_ = [
        ("copy", ctypes.c_int32),
        ("as_columns", ctypes.c_int32),
        ("column_names", c_void_p),
        ("reserved", ctypes.c_int64 * 4),
    ]


class ArrowDlpackLoaderOptions(ctypes.Structure):
    _fields_ = [
        ("batch_size", ctypes.c_int64),
        ("shuffle", ctypes.c_int32),
        ("drop_last", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("window", ctypes.c_int64),
        ("rank", ctypes.c_int64),
        ("world_size", ctypes.c_int64),
        ("prefetch", ctypes.c_int64),
        ("row_ids", ctypes.c_int32),
        ("lists", ctypes.c_int32),
        ("columns", ctypes.POINTER(ctypes.c_char_p)),
        ("n_columns", ctypes.c_int64),
        ("pad_length", ctypes.c_int64),
        ("pad_side", ctypes.c_int32),
        ("fill_nulls", ctypes.c_int32),
        ("pad_value", ctypes.c_double),
        ("fill_value", ctypes.c_double),
        ("dtype", DLDataType),
        ("threads", ctypes.c_int32),
        ("reserved", ctypes.c_int64 * 8),
    ]


class ArrowDlpackOutput(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("kind", ctypes.c_int32),
        ("reserved0", ctypes.c_int32),
        ("tensors", c_void_p * 3),
    ]


class ArrowDlpackBatch(ctypes.Structure):
    _fields_ = [
        ("outputs", ctypes.POINTER(ArrowDlpackOutput)),
        ("n_outputs", ctypes.c_int64),
        ("rows", ctypes.c_int64),
        ("epoch", ctypes.c_uint64),
        ("step", ctypes.c_uint64),
        ("private_data", c_void_p),
        ("reserved", ctypes.c_int64 * 2),
    ]


OUTPUT_TENSOR, OUTPUT_PADDED, OUTPUT_JAGGED = 0, 1, 2
K_DL_CPU = 1
DLPACK_FLAG_BITMASK_READ_ONLY = 1
COPY_NEVER, COPY_IF_NEEDED, COPY_ALWAYS = 0, 1, 2
STATUS_OUT_OF_MEMORY = 7


def library_path() -> str:
    """``$ARROW_DLPACK_LIBRARY``, else the loader's ``libarrow_dlpack``."""
    explicit = os.environ.get("ARROW_DLPACK_LIBRARY")
    if explicit:
        return explicit
    found = ctypes.util.find_library("arrow_dlpack")
    if found is None:
        raise ImportError(
            "libarrow_dlpack not found: set ARROW_DLPACK_LIBRARY to its path "
            "(cargo build --release writes target/release/libarrow_dlpack.so)"
        )
    return found


def _load() -> ctypes.PyDLL:
    # PyDLL: calls keep the GIL. Every function of the library returns in
    # nanoseconds, far less than releasing and re-taking the GIL would
    # cost; and the deleters it reaches may run Python code (a producer's
    # release).
    lib = ctypes.PyDLL(library_path())
    for name, restype in (
        ("arrow_dlpack_export", c_void_p),
        ("arrow_dlpack_export_versioned", c_void_p),
    ):
        f = getattr(lib, name)
        f.argtypes = [c_void_p, c_void_p, c_void_p]
        f.restype = restype
    for name in (
        "arrow_dlpack_export_device",
        "arrow_dlpack_export_device_legacy",
        "arrow_dlpack_export_with",
        "arrow_dlpack_export_with_legacy",
    ):
        f = getattr(lib, name)
        f.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p]
        f.restype = c_void_p
    for name in ("arrow_dlpack_export_stream", "arrow_dlpack_export_stream_legacy"):
        f = getattr(lib, name)
        f.argtypes = [c_void_p, c_void_p, c_void_p]
        f.restype = c_void_p
    lib.arrow_dlpack_import_with.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]
    lib.arrow_dlpack_import_with.restype = ctypes.c_int
    for name in ("arrow_dlpack_import", "arrow_dlpack_import_versioned", "arrow_dlpack_import_device"):
        f = getattr(lib, name)
        f.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p]
        f.restype = ctypes.c_int
    lib.arrow_dlpack_loader_new.argtypes = [c_void_p, c_void_p, c_void_p]
    lib.arrow_dlpack_loader_new.restype = c_void_p
    lib.arrow_dlpack_loader_open.argtypes = [c_void_p, ctypes.c_int64, c_void_p, c_void_p]
    lib.arrow_dlpack_loader_open.restype = c_void_p
    for name in ("arrow_dlpack_loader_next", "arrow_dlpack_loader_set_epoch"):
        f = getattr(lib, name)
        f.argtypes = [c_void_p, c_void_p if name.endswith("next") else ctypes.c_uint64, c_void_p]
        f.restype = ctypes.c_int
    lib.arrow_dlpack_loader_state.argtypes = [c_void_p, c_void_p, ctypes.c_size_t, c_void_p, c_void_p]
    lib.arrow_dlpack_loader_state.restype = ctypes.c_int
    lib.arrow_dlpack_loader_restore.argtypes = [c_void_p, ctypes.c_char_p, ctypes.c_size_t, c_void_p]
    lib.arrow_dlpack_loader_restore.restype = ctypes.c_int
    lib.arrow_dlpack_loader_len.argtypes = [c_void_p]
    lib.arrow_dlpack_loader_len.restype = ctypes.c_int64
    for name in ("arrow_dlpack_loader_free", "arrow_dlpack_batch_release"):
        f = getattr(lib, name)
        f.argtypes = [c_void_p]
        f.restype = None
    lib.arrow_dlpack_version.argtypes = []
    lib.arrow_dlpack_version.restype = ctypes.c_char_p
    lib.arrow_dlpack_status_string.argtypes = [ctypes.c_int]
    lib.arrow_dlpack_status_string.restype = ctypes.c_char_p
    return lib


_lib = None


def __getattr__(name: str):
    """``lib``, loaded on first use."""
    global _lib
    if name == "lib":
        if _lib is None:
            _lib = _load()
        return _lib
    raise AttributeError(name)


# ---- the Python C API, for capsules ---------------------------------------

_api = ctypes.PyDLL(None)  # our own handle: argtypes below are ours alone
# Capsules are passed as their address, id(capsule) in CPython: converting
# a ctypes.py_object argument costs several times the call itself. The
# caller holds a reference for the duration of the call.
_get_pointer = _api.PyCapsule_GetPointer
_get_pointer.argtypes = [c_void_p, ctypes.c_char_p]
_get_pointer.restype = c_void_p


def capsule_pointer(capsule, name: bytes) -> int:
    """The pointer a capsule holds; ValueError if it is not named ``name``."""
    return _get_pointer(id(capsule), name)


capsule_new = _api.PyCapsule_New
capsule_new.argtypes = [c_void_p, ctypes.c_char_p, c_void_p]
capsule_new.restype = ctypes.py_object

# Capsule names must outlive their capsules: module-level constants.
DLTENSOR = b"dltensor"
DLTENSOR_VERSIONED = b"dltensor_versioned"
ARROW_SCHEMA = b"arrow_schema"
ARROW_ARRAY = b"arrow_array"
ARROW_DEVICE_ARRAY = b"arrow_device_array"


def tensor_capsule(tensor: int, versioned: bool):
    """Wraps an exported tensor in the capsule the DLPack protocol expects.

    The capsule owns the tensor: if no consumer takes it (renaming it
    ``used_dltensor[_versioned]``), its destructor calls the tensor's deleter.
    """
    # The destructor: a C function of the library that deletes the tensor
    # unless a consumer renamed the capsule "used_..." (a ctypes callback
    # would cost microseconds on every capsule).
    destructor = ctypes.cast(__getattr__("lib").arrow_dlpack_capsule_destructor, c_void_p).value
    return capsule_new(tensor, DLTENSOR_VERSIONED if versioned else DLTENSOR, destructor)


class Tensor:
    """Hands a tensor made by the library to one DLPack consumer
    (``numpy.from_dlpack(Tensor(tensor))``), in the capsule above."""

    def __init__(self, tensor: int, versioned: bool = True):
        self._capsule = tensor_capsule(tensor, versioned)

    def __dlpack__(self, **kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return (K_DL_CPU, 0)


def last_error(error: ArrowDlpackError) -> str:
    return error.message.decode("utf-8", "replace")
