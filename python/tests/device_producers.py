"""Stand-ins for GPU producers, for machines without a GPU.

Real host memory (pyarrow's or NumPy's) relabelled as memory of another
device: the library must never read it, and consumers are only handed
pointers. Used by test_device.py, in the test process and in the
subprocesses that load the fake driver library (fake_gpu_driver.c).
"""

from __future__ import annotations

import ctypes
import pathlib
import sys
from typing import Any, Optional

# The struct layouts of the ctypes bindings (examples/python); this module
# is also imported by the tests' subprocesses, without conftest.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))
import arrow_dlpack_ctypes as _ffi  # noqa: E402

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_get_pointer.restype = ctypes.c_void_p


_EVENT_HANDLES: list = []


def capsule_pointer(capsule: Any, name: bytes) -> int:
    return _get_pointer(capsule, name)


class ArrowDeviceProducer:
    """A pyarrow array exported through ``__arrow_c_device_array__`` only,
    relabelled as living on ``(device_type, device_id)``, with a
    ``sync_event`` pointing at an event handle ``event`` (a CUevent /
    hipEvent_t stand-in) when given."""

    def __init__(self, array: Any, device_type: int, device_id: int = 0, event: Optional[int] = None):
        self.array = array
        self.device_type = device_type
        self.device_id = device_id
        # The C Device Data Interface's sync_event points at the handle,
        # which must outlive every array exported with it: kept for good.
        self.event_handle = ctypes.c_void_p(event) if event is not None else None
        _EVENT_HANDLES.append(self.event_handle)

    def __arrow_c_device_array__(self, requested_schema: Any = None, **kwargs: Any):
        schema, array = self.array.__arrow_c_device_array__()
        struct = _ffi.ArrowDeviceArray.from_address(capsule_pointer(array, b"arrow_device_array"))
        struct.device_type = self.device_type
        struct.device_id = self.device_id
        struct.sync_event = ctypes.addressof(self.event_handle) if self.event_handle is not None else None
        return schema, array


class DLPackDeviceProducer:
    """A NumPy array's DLPack tensor relabelled as living on
    ``(device_type, device_id)``; records the ``__dlpack__`` keywords."""

    def __init__(self, array: Any, device_type: int, device_id: int = 0):
        self.array = array
        self.device = (device_type, device_id)
        self.calls: list = []

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, **kwargs: Any):
        self.calls.append(kwargs)
        capsule = self.array.__dlpack__(max_version=kwargs.get("max_version"))
        versioned = kwargs.get("max_version") is not None
        name = b"dltensor_versioned" if versioned else b"dltensor"
        kind = _ffi.DLManagedTensorVersioned if versioned else _ffi.DLManagedTensor
        tensor = kind.from_address(capsule_pointer(capsule, name))
        tensor.dl_tensor.device.device_type, tensor.dl_tensor.device.device_id = self.device
        return capsule


def tensor_of(capsule: Any, versioned: bool) -> Any:
    """The DLTensor inside an (unconsumed) tensor capsule."""
    name = b"dltensor_versioned" if versioned else b"dltensor"
    kind = _ffi.DLManagedTensorVersioned if versioned else _ffi.DLManagedTensor
    return kind.from_address(capsule_pointer(capsule, name)).dl_tensor
