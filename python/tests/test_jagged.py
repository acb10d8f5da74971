"""Variable-length columns: to_jagged, to_padded and from_jagged against
pyarrow as the oracle (to_pylist, offsets, buffers), on hypothesis's random
lists, large lists, strings and nested lists, sliced, with null rows and
null elements, in random chunkings; zero-copy exactly where the contract
promises it (addresses compared); PyTorch as the real consumer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from arrow_dlpack import from_jagged, to_jagged, to_padded

VALUE_TYPES = [(pa.int32(), np.int32), (pa.int64(), np.int64), (pa.float32(), np.float32), (pa.uint8(), np.uint8)]


@st.composite
def list_arrays(draw):
    """A list or large list array (sliced, with null rows and elements), or
    a string array; its rows as Python values."""
    kind = draw(st.sampled_from(["list", "large_list", "string", "large_string"]))
    n = draw(st.integers(0, 30))
    nulls = draw(st.booleans())
    if kind.endswith("string"):
        rows = draw(st.lists(st.one_of(st.none(), st.text(max_size=6)) if nulls else st.text(max_size=6), min_size=n, max_size=n))
        arr = pa.array(rows, pa.large_string() if kind == "large_string" else pa.string())
    else:
        arrow_type, _ = draw(st.sampled_from(VALUE_TYPES))
        element = st.integers(0, 100)
        if nulls:
            element = st.one_of(st.none(), element)
        row = st.lists(element, max_size=7)
        if nulls:
            row = st.one_of(st.none(), row)
        rows = draw(st.lists(row, min_size=n, max_size=n))
        list_type = pa.large_list(arrow_type) if kind == "large_list" else pa.list_(arrow_type)
        arr = pa.array(rows, list_type)
    start = draw(st.integers(0, len(arr)))
    stop = draw(st.integers(start, len(arr)))
    return arr.slice(start, stop - start)


def rows_of(arr, fill):
    """The reference: each row's elements (numbers, or a string's bytes),
    null rows empty and null elements `fill`."""
    out = []
    for row in arr.to_pylist():
        if row is None:
            out.append([])
        elif isinstance(row, str):
            out.append(list(row.encode()))
        else:
            out.append([fill if v is None else v for v in row])
    return out


def element_nulls(arr) -> bool:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return False
    return any(v is None for row in arr.to_pylist() if row for v in row)


def first_offset(arr) -> int:
    """The array's first offset, read from its offsets buffer."""
    if not len(arr):
        return 0
    width = 8 if arr.type in (pa.large_string(), pa.large_binary()) or pa.types.is_large_list(arr.type) else 4
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int64 if width == 8 else np.int32)
    return int(raw[arr.offset])


@settings(max_examples=300, deadline=None)
@given(list_arrays(), st.integers(1, 3))
def test_jagged_is_every_row_end_to_end_from_offset_zero(arr, pieces):
    cuts = [i * len(arr) // pieces for i in range(pieces + 1)]
    chunks = [arr.slice(cuts[i], cuts[i + 1] - cuts[i]) for i in range(pieces)]
    source = arr if pieces == 1 else pa.chunked_array(chunks, arr.type)
    null_rows = arr.null_count > 0
    if null_rows or element_nulls(arr):
        with pytest.raises(BufferError, match="null"):
            to_jagged(source)
    got = to_jagged(source, null_value=0)
    values, offsets = np.from_dlpack(got.values), np.from_dlpack(got.offsets)
    rows = rows_of(arr, 0)
    expected_offsets = np.cumsum([0] + [len(r) for r in rows])
    np.testing.assert_array_equal(offsets, expected_offsets)
    assert offsets.dtype == (np.int64 if "large" in str(arr.type) else np.int32)
    np.testing.assert_array_equal(values, np.array([v for r in rows for v in r]).astype(values.dtype))
    if null_rows:
        np.testing.assert_array_equal(np.from_dlpack(got.validity), np.array([r is not None for r in arr.to_pylist()]))
    else:
        assert got.validity is None
    # Zero-copy exactly where the contract says: the offsets when there is
    # one chunk whose first offset is 0 (pyarrow's null rows are empty:
    # nothing to drop); the values when, besides, nothing is filled.
    if not len(arr):
        return
    # A share counts the chunks that hold rows (empty ones are released).
    with_rows = [c for c in chunks if len(c)] if pieces > 1 else [arr]
    first = first_offset(with_rows[0]) if len(with_rows) == 1 else None
    offsets_shared = first == 0
    values_shared = len(with_rows) == 1 and not element_nulls(arr)
    offsets_address = with_rows[0].buffers()[1].address + with_rows[0].offset * offsets.itemsize
    assert (offsets.ctypes.data == offsets_address) == offsets_shared
    assert offsets.flags.writeable != offsets_shared
    if values.size:
        shared = with_rows[0]
        at = first_offset(shared)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            values_address = shared.buffers()[2].address + at
        else:
            child = shared.values
            values_address = child.buffers()[1].address + (child.offset + at) * values.itemsize
        assert (values.ctypes.data == values_address) == values_shared


def test_a_null_row_over_elements_is_dropped_by_one_copy():
    # Arrow lets a null row cover a non-empty segment of the child.
    arr = pa.ListArray.from_arrays(pa.array([0, 2, 4, 5], pa.int32()), pa.array([1, 2, 3, 4, 5]), mask=pa.array([False, True, False]))
    with pytest.raises(BufferError, match="dropping the elements of null rows"):
        to_jagged(arr, null_value=0, copy=False)
    values, offsets, validity = to_jagged(arr, null_value=0)
    np.testing.assert_array_equal(np.from_dlpack(values), [1, 2, 5])
    np.testing.assert_array_equal(np.from_dlpack(offsets), [0, 2, 2, 3])
    np.testing.assert_array_equal(np.from_dlpack(validity), [True, False, True])
    padded = to_padded(arr, null_value=0, value=-1)
    np.testing.assert_array_equal(np.from_dlpack(padded.values), [[1, 2], [-1, -1], [5, -1]])


@settings(max_examples=200, deadline=None)
@given(list_arrays(), st.sampled_from(["right", "left"]), st.one_of(st.none(), st.integers(1, 9)))
def test_padded_is_numpys_reference_for_every_side_and_length(arr, side, length):
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        pad = 255
    else:
        pad = 99
    got = to_padded(arr, side=side, length=length, value=pad, null_value=0)
    values, mask = np.from_dlpack(got.values), np.from_dlpack(got.mask)
    rows = rows_of(arr, 0)
    valid = [[v is not None for v in r] if isinstance(r, list) else [True] * len(r.encode()) for r in arr.to_pylist() if r is not None]
    longest = max((len(r) for r, raw in zip(rows, arr.to_pylist()) if raw is not None), default=0)
    n = length or longest
    reference = np.full((len(rows), n), pad)
    reference_mask = np.zeros((len(rows), n), bool)
    it = iter(valid)
    for i, (row, raw) in enumerate(zip(rows, arr.to_pylist())):
        if raw is None:
            continue
        row_valid = next(it)
        kept = row[:n] if side == "right" else row[max(0, len(row) - n):]
        kept_valid = row_valid[:n] if side == "right" else row_valid[max(0, len(row) - n):]
        at = 0 if side == "right" else n - len(kept)
        reference[i, at:at + len(kept)] = kept
        reference_mask[i, at:at + len(kept)] = kept_valid
    np.testing.assert_array_equal(values, reference.astype(values.dtype))
    np.testing.assert_array_equal(mask, reference_mask)
    assert values.flags.writeable, "a copy"


def test_an_unsliced_list_shares_both_and_a_slice_its_values():
    arr = pa.array([[1, 2], [], [3, 4, 5]], pa.list_(pa.int32()))
    values, offsets, validity = to_jagged(arr)
    v, o = np.from_dlpack(values), np.from_dlpack(offsets)
    assert o.ctypes.data == arr.buffers()[1].address
    assert v.ctypes.data == arr.values.buffers()[1].address
    assert validity is None
    part = arr.slice(1)
    with pytest.raises(BufferError, match="rebasing the offsets of a slice"):
        to_jagged(part, copy=False)
    v, o = (np.from_dlpack(t) for t in to_jagged(part)[:2])
    np.testing.assert_array_equal(o, [0, 0, 3])
    assert v.ctypes.data == arr.values.buffers()[1].address + 2 * 4, "the values still shared"


def test_results_are_the_packages_named_tuples_and_free_their_exporters():
    # Made by the native code (allocated as tuple.__new__ allocates them):
    # the classes, fields, tuple behaviour and garbage collection of
    # Python's own named tuples, and nothing kept once they are dropped.
    import gc

    arr = pa.array([[1, 2], [], [3]], pa.list_(pa.int32()))
    jagged = to_jagged(arr)
    assert type(jagged) is arrow_dlpack.Jagged and jagged._fields == ("values", "offsets", "validity")
    assert jagged == (jagged.values, jagged.offsets, None) and len(jagged) == 3
    assert gc.is_tracked(jagged)
    assert jagged._replace(validity=1).validity == 1
    padded = to_padded(arr)
    assert type(padded) is arrow_dlpack.Padded and padded._fields == ("values", "mask")
    assert repr(padded).startswith("Padded(values=<arrow_dlpack.DLPackExporter")
    start = pa.total_allocated_bytes()
    for _ in range(20_000):
        to_jagged(pa.array([[1, 2], [3]], pa.list_(pa.int64())))
        to_padded(pa.array([[1, 2], [3]], pa.list_(pa.int64())))
    gc.collect()
    assert pa.total_allocated_bytes() == start, "every exporter and array freed"


def test_strings_export_their_bytes_and_polars_and_views_are_gathered():
    pl = pytest.importorskip("polars")
    words = ["to", "be", "", "or"]
    values, offsets, _ = to_jagged(pa.array(words))
    assert bytes(np.from_dlpack(values)) == b"tobeor"
    np.testing.assert_array_equal(np.from_dlpack(offsets), [0, 2, 4, 4, 6])
    # polars: large lists and string views.
    tokens = pl.Series("t", [[1, 2], [3]], dtype=pl.List(pl.Int32))
    values, offsets, _ = to_jagged(tokens)
    np.testing.assert_array_equal(np.from_dlpack(values), [1, 2, 3])
    assert np.from_dlpack(offsets).dtype == np.int64
    # Long and short views (inline up to 12 bytes, else in a buffer).
    strings = pl.Series("s", ["a", "a much longer string than twelve", ""])
    values, offsets, _ = to_jagged(strings)
    assert bytes(np.from_dlpack(values)) == b"aa much longer string than twelve"
    views = pa.array(["short", "x" * 40, None], pa.string_view())
    with pytest.raises(BufferError, match="gathering the rows of views"):
        to_jagged(views, null_value=0, copy=False)
    values, offsets, validity = to_jagged(views, null_value=0)
    assert bytes(np.from_dlpack(values)) == b"short" + b"x" * 40
    np.testing.assert_array_equal(np.from_dlpack(validity), [True, True, False])
    lv = pa.ListViewArray.from_arrays(pa.array([2, 0]), pa.array([2, 1]), pa.array([1, 2, 3, 4], pa.int16()))
    values, offsets, _ = to_jagged(lv)
    np.testing.assert_array_equal(np.from_dlpack(values), [3, 4, 1])


def test_nested_lists_have_n_d_values_and_dtypes_take_numpy_and_torch_objects():
    arr = pa.array([[[1, 2], [3, 4]], [[5, 6]]], pa.list_(pa.list_(pa.float64(), 2)))
    values, offsets, _ = to_jagged(arr)
    assert np.from_dlpack(values).shape == (3, 2)
    for dtype in (np.float32, np.dtype("float32"), "float32", "single"):
        values, _, _ = to_jagged(arr, dtype=dtype)
        assert np.from_dlpack(values).dtype == np.float32
    with pytest.raises(TypeError, match="unsupported dtype"):
        to_jagged(arr, dtype="complex64")


def test_a_column_of_codes_exports_its_indices_and_its_dictionary_alone():
    codes = pa.array(["b", "a", "b", None]).dictionary_encode()
    with pytest.raises(BufferError, match="dictionary_as_indices=True"):
        np.from_dlpack(arrow_dlpack.to_dlpack(codes))
    indices = np.from_dlpack(arrow_dlpack.to_dlpack(codes, dictionary_as_indices=True, null_value=-1))
    np.testing.assert_array_equal(indices, [0, 1, 0, -1])
    plain = codes.slice(0, 3)
    indices = np.from_dlpack(arrow_dlpack.to_dlpack(plain, dictionary_as_indices=True))
    assert indices.ctypes.data == plain.indices.buffers()[1].address + plain.offset * 4, "shared"
    assert bytes(np.from_dlpack(to_jagged(codes.dictionary).values)) == b"ba"
    pl = pytest.importorskip("polars")
    categories = pl.Series("c", ["x", "y", "x"], dtype=pl.Categorical)
    np.testing.assert_array_equal(np.from_dlpack(arrow_dlpack.to_dlpack(categories, dictionary_as_indices=True)), [0, 1, 0])


def test_from_jagged_is_a_list_sharing_both_and_checks_the_offsets():
    values = np.arange(5, dtype=np.float32)
    offsets = np.array([0, 2, 2, 5], dtype=np.int32)
    arr = pa.array(from_jagged(values, offsets))
    assert arr.type == pa.list_(pa.float32())
    assert arr.to_pylist() == [[0.0, 1.0], [], [2.0, 3.0, 4.0]]
    assert arr.values.buffers()[1].address == values.ctypes.data
    assert arr.buffers()[1].address == offsets.ctypes.data
    big = pa.array(from_jagged(values, offsets.astype(np.int64)))
    assert big.type == pa.large_list(pa.float32())
    for bad, needle in [([0, 3, 2], "never decrease"), ([-1, 2], "start at 0"), ([0, 6], "beyond the values")]:
        with pytest.raises(BufferError, match=needle):
            from_jagged(values, np.array(bad, dtype=np.int32))
    with pytest.raises(BufferError, match="int32 or int64"):
        from_jagged(values, np.array([0, 1], dtype=np.int16))
    # Round trip, through the jagged tensors.
    tokens = pa.array([[1, 2], [3]], pa.list_(pa.int64()))
    back = pa.array(from_jagged(*to_jagged(tokens)[:2]))
    assert back.to_pylist() == tokens.to_pylist()


def test_pytorch_consumes_jagged_tensors_and_bfloat16():
    torch = pytest.importorskip("torch")
    from arrow_dlpack.torch import jagged_to_torch, to_torch

    tokens = pa.array([[5, 6, 7], [8], [9, 10]], pa.list_(pa.int64()))
    nested = jagged_to_torch(tokens.slice(1))
    assert nested.is_nested and nested.layout == torch.jagged
    assert [t.tolist() for t in nested.unbind()] == [[8], [9, 10]]
    values, offsets, _ = to_jagged(tokens)
    bag = torch.nn.EmbeddingBag(11, 3, mode="sum", include_last_offset=True)
    out = bag(torch.from_dlpack(values), torch.from_dlpack(offsets))
    assert out.shape == (3, 3)
    expected = torch.stack([bag.weight[[5, 6, 7]].sum(0), bag.weight[[8]].sum(0), bag.weight[[9, 10]].sum(0)])
    torch.testing.assert_close(out, expected)
    # bfloat16 as torch rounds it, NaN and infinities included.
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5e-39, 3.4e38, np.nan, np.inf, -0.0], np.float32)
    ours = to_torch(pa.array(x), dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours, torch.from_numpy(x).to(torch.bfloat16), equal_nan=True, rtol=0, atol=0)
    padded = to_padded(tokens, dtype="bfloat16")
    assert torch.from_dlpack(padded.values).dtype == torch.bfloat16
    with pytest.raises(BufferError, match="Arrow has no bfloat16 type"):
        from_jagged(torch.ones(2, dtype=torch.bfloat16), torch.tensor([0, 2], dtype=torch.int32))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=50))
def test_bfloat16_is_torchs_conversion_bit_for_bit(xs):
    torch = pytest.importorskip("torch")
    x = np.array(xs, np.float32)
    ours = torch.from_dlpack(arrow_dlpack.to_dlpack(pa.array(x), dtype="bfloat16")).view(torch.int16)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16)
    nan = torch.from_numpy(np.isnan(x))
    assert torch.equal(ours[~nan], theirs[~nan])
    assert bool((ours[nan] == 0x7FC0).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"side": "up"}, "the padding side must be 'right' or 'left', not \"up\""),
        ({"length": 0}, "the padding length must be a positive number of elements"),
        ({"length": -4}, "the padding length must be a positive .*; got -4"),
    ],
)
def test_bad_padding_is_a_value_error_naming_it_and_leaves_the_array(kwargs, match):
    arr = pa.array([[1, 2], [3]], pa.list_(pa.int32()))
    with pytest.raises(ValueError, match=match):
        arrow_dlpack.to_padded(arr, **kwargs)
    assert arr.to_pylist() == [[1, 2], [3]]
