"""Reading the single chunk of an Arrow C stream (``__arrow_c_stream__``)."""

from __future__ import annotations

import ctypes
from typing import Any

from . import _ffi

_c_int = ctypes.c_int
_vp = ctypes.c_void_p


class ArrowArrayStream(ctypes.Structure):
    _fields_ = [
        ("get_schema", ctypes.CFUNCTYPE(_c_int, _vp, _vp)),
        ("get_next", ctypes.CFUNCTYPE(_c_int, _vp, _vp)),
        ("get_last_error", ctypes.CFUNCTYPE(ctypes.c_char_p, _vp)),
        ("release", ctypes.CFUNCTYPE(None, _vp)),
        ("private_data", _vp),
    ]


_release_schema = ctypes.CFUNCTYPE(None, _vp)
_release_array = ctypes.CFUNCTYPE(None, _vp)


class Owned:
    """An ArrowSchema and an ArrowArray allocated here, released (if still
    owned) when garbage collected: the stand-in for a producer's capsules."""

    __slots__ = ("schema", "array")

    def __init__(self) -> None:
        self.schema = _ffi.ArrowSchema()
        self.array = _ffi.ArrowArray()

    def __del__(self) -> None:
        for struct in (self.array, self.schema):
            if struct.release:
                _release_array(struct.release)(ctypes.addressof(struct))


def _check(stream: ArrowArrayStream, address: int, code: int, what: str) -> None:
    if code != 0:
        message = stream.get_last_error(address) if stream.get_last_error else None
        detail = message.decode("utf-8", "replace") if message else f"error code {code}"
        raise BufferError(f"the Arrow stream failed in {what}: {detail}")


def single_chunk(stream_capsule: Any) -> Owned:
    """The schema and only array of a stream; ``BufferError`` if it has
    several chunks (they are not contiguous: one tensor would need a copy)
    or none."""
    address = _ffi.capsule_pointer(stream_capsule, b"arrow_array_stream")
    stream = ArrowArrayStream.from_address(address)
    owned, extra = Owned(), Owned()
    _check(stream, address, stream.get_schema(address, ctypes.addressof(owned.schema)), "get_schema")
    _check(stream, address, stream.get_next(address, ctypes.addressof(owned.array)), "get_next")
    if not owned.array.release:
        raise BufferError("the Arrow stream has no chunk: there is no array to share")
    _check(stream, address, stream.get_next(address, ctypes.addressof(extra.array)), "get_next")
    if extra.array.release:
        raise BufferError(
            "the Arrow stream has several chunks; they are not one contiguous buffer, so a tensor "
            "would need a copy (combine the chunks first, e.g. pyarrow's combine_chunks())"
        )
    # The stream itself is released with its capsule; the array outlives it.
    return owned
