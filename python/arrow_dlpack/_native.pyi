"""Type stubs of the compiled core, ``arrow_dlpack._native`` (PyO3)."""

from typing import Any, Iterable, Literal, Optional, Tuple, Union

__version__: str

Device = Tuple[int, int]

class DLPackExporter:
    """An Arrow array on its way to a DLPack consumer (see ``to_dlpack``)."""

    __dlpack_c_exchange_api__: Any  # a PyCapsule named "dlpack_exchange_api"
    def __dlpack__(
        self,
        *,
        stream: Optional[int] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Device] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> Device: ...
    def __arrow_c_schema__(self) -> Any: ...

class ArrowArrayFromDLPack:
    """A DLPack tensor shared as an Arrow array (see ``from_dlpack``)."""

    @property
    def device(self) -> Device: ...
    def __arrow_c_array__(self, requested_schema: Optional[Any] = None) -> Tuple[Any, Any]: ...
    def __arrow_c_device_array__(self, requested_schema: Optional[Any] = None, **kwargs: Any) -> Tuple[Any, Any]: ...
    def __arrow_c_schema__(self) -> Any: ...
    def __len__(self) -> int: ...

def to_dlpack(
    obj: Any,
    *,
    order: Literal["any", "C", "F"] = "any",
    null_value: Optional[float] = None,
    dtype: Any = None,
    temporal_as_int: bool = False,
    dictionary_as_indices: bool = False,
) -> DLPackExporter: ...
def validity(obj: Any) -> DLPackExporter: ...
def from_dlpack(
    x: Any,
    *,
    columns: Union[None, bool, Iterable[Union[str, bytes]]] = None,
    copy: Optional[bool] = None,
) -> ArrowArrayFromDLPack: ...
def to_jagged(
    obj: Any, null_value: Optional[float] = None, dtype: Any = None, copy: Optional[bool] = None
) -> Any: ...  # arrow_dlpack.Jagged, made by the native code
def to_padded(
    obj: Any,
    length: Optional[int] = None,
    value: float = 0.0,
    side: Optional[str] = None,
    null_value: Optional[float] = None,
    dtype: Any = None,
) -> Any: ...  # arrow_dlpack.Padded, made by the native code
def from_jagged(values: Any, offsets: Any) -> ArrowArrayFromDLPack: ...
def set_threads(n: int) -> None: ...
def batches(
    source: Any,
    batch_size: int,
    **options: Any,
) -> "Batches": ...

class Batches:
    names: list
    def __iter__(self) -> "Batches": ...
    def __next__(self) -> dict: ...
    def close(self) -> None: ...
def threads() -> int: ...
