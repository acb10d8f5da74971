"""Shared helpers for the Python tests.

The tests import the *installed* package (a wheel in a fresh virtual
environment, set up by the README's test command, `bash scripts/test.sh`),
never the source tree.
"""

import ctypes
import os
import pathlib
import sys

import numpy as np
import pyarrow as pa
import pytest

# The ctypes bindings of the bare C library (examples/python), for the
# struct layouts and the tests that drive the library without the package.
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))

_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_is_valid.restype = ctypes.c_int

# Every type the library shares, with the NumPy dtype it becomes.
NUMERIC_TYPES = [
    (pa.int8(), np.int8),
    (pa.uint8(), np.uint8),
    (pa.int16(), np.int16),
    (pa.uint16(), np.uint16),
    (pa.int32(), np.int32),
    (pa.uint32(), np.uint32),
    (pa.int64(), np.int64),
    (pa.uint64(), np.uint64),
    (pa.float16(), np.float16),
    (pa.float32(), np.float32),
    (pa.float64(), np.float64),
]


def capsule_is(capsule, name: bytes) -> bool:
    return _is_valid(capsule, name) == 1


def values_address(arr: pa.Array) -> int:
    """Address of the first element of a primitive array's values buffer."""
    return arr.buffers()[1].address + arr.offset * arr.type.bit_width // 8


def data_address(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


@pytest.fixture
def pool_unchanged():
    """Asserts that pyarrow's default pool is back to its size after the test."""
    import gc

    gc.collect()
    before = pa.total_allocated_bytes()
    yield
    gc.collect()
    assert pa.total_allocated_bytes() == before


# In the main test environment (CI, or ARROW_DLPACK_STRICT_SKIPS=1), a test
# that skips because a library is missing fails: CI installs every library
# the tests consume. Cases that need a GPU (marked `gpu`) may skip; the
# other CPython versions' environments, which lack some libraries by
# design, set ARROW_DLPACK_ALLOW_SKIPS=1.
STRICT = os.environ.get("ARROW_DLPACK_STRICT_SKIPS") == "1" or (
    os.environ.get("CI") == "true" and os.environ.get("ARROW_DLPACK_ALLOW_SKIPS") != "1"
)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a GPU (or its driver); may skip anywhere")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and item.get_closest_marker("gpu") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped in the strict test environment (every library is installed there): {report.longrepr}"
