"""The array API's stream rules for device data handed over with a sync event.

An Arrow producer of device data may set ``sync_event`` in its
``ArrowDeviceArray`` (the C Device Data Interface): work that writes the
data may still be running, and whoever reads the data must wait on the
event first. For CUDA devices the field points at a ``CUevent``, for ROCm
devices at a ``hipEvent_t``.

A DLPack consumer says, with ``__dlpack__(stream=...)``, where it will use
the data; the Python array API makes the producer responsible for ordering
its work before that stream. :func:`wait` does so, following the standard's
table:

============ ===================================== ======================================
device       ``stream``                            what happens
============ ===================================== ======================================
CUDA         ``None`` or ``1``                     the legacy default stream waits
CUDA         ``2``                                 the per-thread default stream waits
CUDA         ``> 2`` (a ``cudaStream_t``)          that stream waits
CUDA         ``0``                                 ``BufferError``: ambiguous, disallowed
ROCm         ``None`` or ``0``                     the default stream waits
ROCm         ``> 2`` (a ``hipStream_t``)           that stream waits
ROCm         ``1``, ``2``                          ``BufferError``: disallowed
any          ``-1``                                nothing: the consumer synchronizes itself
CUDA/ROCm    ``None``, pinned host memory          the host waits (``cuEventSynchronize``)
============ ===================================== ======================================

The wait is enqueued (``cuStreamWaitEvent``/``hipStreamWaitEvent``): the host
does not block, except for host memory read by the host. The driver library
(``libcuda.so.1``, ``libamdhip64.so``) is loaded with ``dlopen`` the first time
an event must be waited on: the package has no link dependency on it, and no
cost when there is no GPU or no event. Events of other devices cannot be
waited on here: such a producer's data is exported with ``stream=-1`` only.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Optional

K_DL_CPU = 1
K_DL_CUDA = 2
K_DL_CUDA_HOST = 3
K_DL_ROCM = 10
K_DL_ROCM_HOST = 11
K_DL_CUDA_MANAGED = 13

_CUDA_TYPES = (K_DL_CUDA, K_DL_CUDA_HOST, K_DL_CUDA_MANAGED)
_ROCM_TYPES = (K_DL_ROCM, K_DL_ROCM_HOST)
# cudaError/CUresult and hipError_t for "no current context".
_CUDA_ERROR_INVALID_CONTEXT = 201

_c_void_p = ctypes.c_void_p
_c_uint = ctypes.c_uint
_c_int = ctypes.c_int


def check_stream(device_type: int, stream: Optional[Any]) -> Optional[int]:
    """The stream to make wait for data on ``device_type``, as an integer
    handle; ``None`` for "do not wait" (``stream=-1``, or CPU data) and for
    "the host waits" (``stream=None`` with pinned host memory, see
    :func:`wait`). Raises ``BufferError`` for a stream the array API
    disallows for that device."""
    if device_type == K_DL_CPU:
        if stream is not None:
            raise BufferError(f"stream must be None for CPU data, got {stream!r}")
        return None
    if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int)):
        raise BufferError(f"stream must be None or an integer (a stream handle), got {stream!r}")
    if stream == -1:
        return None
    if stream is not None and stream < -1:
        raise BufferError(f"stream {stream} is not a stream handle")
    if device_type in _CUDA_TYPES:
        if stream == 0:
            raise BufferError("stream=0 is ambiguous for CUDA and disallowed by the array API: pass 1 (legacy default stream), 2 (per-thread default stream) or a stream handle")
        if stream is None:
            return None if device_type == K_DL_CUDA_HOST else 1
        return stream
    if device_type in _ROCM_TYPES:
        if stream in (1, 2):
            raise BufferError(f"stream={stream} is disallowed for ROCm by the array API: pass 0 or None (default stream) or a stream handle")
        if stream is None:
            return None if device_type == K_DL_ROCM_HOST else 0
        return stream
    return stream


class _Driver:
    """The few driver functions the waits need, loaded on first use."""

    def __init__(self, kind: str, names: tuple, prefix: str) -> None:
        self.kind = kind
        last_error: Optional[OSError] = None
        for name in names:
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError as e:
                last_error = e
        else:
            raise BufferError(
                f"the producer's {kind} sync_event must be waited on, but the {kind} library "
                f"({', '.join(names)}) cannot be loaded: {last_error}"
            )
        lib, self.prefix = self.lib, prefix
        self.stream_wait = self._fn("StreamWaitEvent", [_c_void_p, _c_void_p, _c_uint])
        self.event_synchronize = self._fn("EventSynchronize", [_c_void_p])
        if kind == "CUDA":
            init = self._fn("Init", [_c_uint])
            init(0)  # idempotent; the consumer's runtime already called it
            self.device_get = self._fn("DeviceGet", [ctypes.POINTER(_c_int), _c_int])
            self.retain = self._fn("DevicePrimaryCtxRetain", [ctypes.POINTER(_c_void_p), _c_int])
            self.release = self._fn("DevicePrimaryCtxRelease", [_c_int], "_v2")
            self.push = self._fn("CtxPushCurrent", [_c_void_p], "_v2")
            self.pop = self._fn("CtxPopCurrent", [ctypes.POINTER(_c_void_p)], "_v2")
        del lib

    def _fn(self, name: str, argtypes: list, versioned: str = "") -> Any:
        full = self.prefix + name
        f = getattr(self.lib, full + versioned, None) or getattr(self.lib, full)
        f.argtypes = argtypes
        f.restype = _c_int
        return f

    def check(self, code: int, what: str) -> None:
        if code != 0:
            raise BufferError(f"waiting on the producer's sync_event failed: {self.prefix}{what} returned {code}")

    def wait(self, stream: Optional[int], event: int, device_id: int) -> None:
        if stream is None:  # the host reads: it waits
            self.check(self.event_synchronize(event), "EventSynchronize")
            return
        code = self.stream_wait(stream, event, 0)
        if code == _CUDA_ERROR_INVALID_CONTEXT and self.kind == "CUDA":
            # No context is current on this thread (the consumer has not
            # used the runtime here yet): the device's primary context is
            # the one the runtime, and so every runtime-based library, uses.
            device, context = _c_int(), _c_void_p()
            self.check(self.device_get(ctypes.byref(device), device_id), "DeviceGet")
            self.check(self.retain(ctypes.byref(context), device), "DevicePrimaryCtxRetain")
            try:
                self.check(self.push(context), "CtxPushCurrent")
                try:
                    code = self.stream_wait(stream, event, 0)
                finally:
                    self.pop(ctypes.byref(_c_void_p()))
            finally:
                self.release(device)
        self.check(code, "StreamWaitEvent")


_drivers: dict = {}


def _driver(device_type: int) -> _Driver:
    kind = "CUDA" if device_type in _CUDA_TYPES else "ROCm"
    driver = _drivers.get(kind)
    if driver is None:
        if kind == "CUDA":
            names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
            driver = _Driver(kind, names, "cu")
        else:
            driver = _Driver(kind, ("libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"), "hip")
        _drivers[kind] = driver
    return driver


def wait(device_type: int, device_id: int, sync_event: int, stream: Optional[Any]) -> None:
    """Orders the producer's work (``sync_event``, the address of its event
    handle) before the consumer's ``stream``, as the module documentation
    says; ``BufferError`` when the rules or the driver refuse."""
    handle = check_stream(device_type, stream)
    if stream == -1:
        return
    if device_type not in _CUDA_TYPES and device_type not in _ROCM_TYPES:
        raise BufferError(
            f"the producer set a sync_event for device type {device_type}, which arrow_dlpack cannot "
            "wait on: pass stream=-1 and synchronize before reading"
        )
    event = _c_void_p.from_address(sync_event).value  # CUevent* / hipEvent_t*
    _driver(device_type).wait(handle, event, device_id)
