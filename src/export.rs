//! Arrow array -> DLPack tensor: the validated view of the array becomes
//! the tensor's dtype, data, shape and strides, in an owner that holds the
//! moved array (see `owner`). The plain exports never copy; under options
//! (`export_with`, `export_stream`), what cannot be shared is copied once
//! by the kernels of `copy` into the owner's own bytes.

use std::ffi::c_void;
use std::ptr::NonNull;

use crate::abi::{
    ArrowArray, ArrowArrayStream, ArrowDeviceArray, ArrowSchema, DLManagedTensorVersioned,
};
use crate::arrow::read::{self, Location, NullMap, Nulls, ReadMode, TensorView};
use crate::dims::Dims;
use crate::dtype::{self, Accept, BOOLEAN, DType};
use crate::error::{Error, err};
use crate::managed::{self, Managed};
use crate::options::{self, ArrowDlpackCopy, ExportOptions};
use crate::{copy, owner, stream, table};

/// Exports a host array (`arrow_dlpack_export`, `_versioned`).
///
/// # Safety
/// `array` and `schema` are valid (the C Data Interface's guarantees).
pub unsafe fn export<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
) -> Result<NonNull<M>, Error> {
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { read::read(array, schema, Location::CPU, &mut dims) }?;
    // SAFETY: as above; the view's data is the array's memory.
    unsafe { owner::share(array, view.data, view.dtype.dl, view.device, &dims) }
}

/// Exports an array from any device, as either flavour; returns the tensor
/// and the array's `sync_event`. Device memory is never dereferenced.
///
/// # Safety
/// `array` and `schema` are valid (the C Device Data Interface's guarantees).
pub unsafe fn export_device<M: Managed>(
    array: &mut ArrowDeviceArray,
    schema: &ArrowSchema,
) -> Result<(NonNull<M>, *mut c_void), Error> {
    let device = crate::device::from_arrow(array.device_type, array.device_id)?;
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { read::read(&array.array, schema, Location { device }, &mut dims) }?;
    // SAFETY: as above.
    let tensor =
        unsafe { owner::share(&mut array.array, view.data, view.dtype.dl, device, &dims) }?;
    Ok((tensor, array.sync_event))
}

// ---- with options: copies -------------------------------------------------

/// What one array (or stream chunk) contributes: its view and the validity
/// bitmaps of its covered ranges.
pub struct Piece {
    pub view: TensorView,
    pub maps: Vec<NullMap>,
    pub nulls: usize,
    /// The outermost level with nulls.
    pub null_depth: usize,
}

/// Reads an array for a copy-capable export.
///
/// # Safety
/// As [`export`].
pub unsafe fn read_piece(
    array: &ArrowArray,
    schema: &ArrowSchema,
    options: &ExportOptions,
    dims: &mut Dims,
) -> Result<Piece, Error> {
    let mode = ReadMode {
        accept: Accept {
            boolean: true,
            temporal: options.temporal_as_integer,
        },
        keep_nulls: true,
    };
    let mut nulls = Nulls::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { read::read_with(array, schema, Location::CPU, mode, dims, &mut nulls) }?;
    Ok(Piece {
        view,
        maps: nulls.maps().to_vec(),
        nulls: nulls.count,
        null_depth: nulls.depth,
    })
}

/// How the tensor is made, decided from what was read and the options.
struct Decision {
    target: &'static DType,
    copy: bool,
    /// The fill value's bytes, as an element of `target`.
    fill: Option<[u8; 8]>,
}

/// The fill value's bytes as an element of `target`, if nulls are filled;
/// `INVALID_ARGUMENT` where `target` cannot hold it exactly.
pub fn fill_bytes(options: &ExportOptions, target: &DType) -> Result<Option<[u8; 8]>, Error> {
    let Some(value) = options.fill else {
        return Ok(None);
    };
    copy::convert::exact(value, target)
        .map(Some)
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "options.fill_value {value} cannot be held exactly by the tensor's dtype {}",
                target.name
            )
        })
}

/// `HAS_NULLS` for nulls (`what` they are) that no fill value was given
/// for.
#[cold]
pub fn has_nulls(what: std::fmt::Arguments<'_>) -> Error {
    err!(
        ARROW_DLPACK_HAS_NULLS,
        "{what}; DLPack cannot represent missing values: set options.fill_nulls to write them as options.fill_value (a copy)"
    )
}

/// Whether to copy, given why a copy is `needed` (if it is) and the
/// policy: `NEEDS_COPY` where it is needed and forbidden.
pub fn must_copy(
    needed: Option<impl FnOnce() -> Error>,
    policy: ArrowDlpackCopy,
) -> Result<bool, Error> {
    match (needed, policy) {
        (Some(refusal), ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER) => Err(refusal()),
        (Some(_), _) => Ok(true),
        (None, policy) => Ok(policy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS),
    }
}

/// Decides share or copy; `NEEDS_COPY` where a copy is needed and
/// forbidden, `HAS_NULLS` where nulls have no fill value.
fn decide(
    source: &'static DType,
    (nulls, null_depth): (usize, usize),
    chunks: usize,
    options: &ExportOptions,
) -> Result<Decision, Error> {
    let target = options.dtype.unwrap_or(source);
    let fill = fill_bytes(options, target)?;
    if nulls > 0 && fill.is_none() {
        return Err(read::locate(
            null_depth,
            has_nulls(format_args!("array has {nulls} nulls")),
        ));
    }
    let needed = if source.is_bit_packed() {
        Some(format_args!("unpacking boolean bits to kDLBool bytes"))
    } else if target != source {
        Some(format_args!("converting to another dtype"))
    } else if nulls > 0 {
        Some(format_args!("filling nulls"))
    } else if chunks > 1 {
        Some(format_args!("concatenating the chunks of a stream"))
    } else {
        None
    };
    let converts = source.is_bit_packed() || target != source;
    let copy = must_copy(
        needed.map(|what| {
            move || {
                let e = options::needs_copy(what);
                match converts {
                    true => e.context(format_args!("{} to {}", source.name, target.name)),
                    false => e,
                }
            }
        }),
        options.copy,
    )?;
    Ok(Decision { target, copy, fill })
}

/// A new tensor of `dims` with the pieces' elements converted to `target`
/// (nulls filled), one after another along the first dimension.
///
/// # Safety
/// The pieces' views address live memory (their arrays are alive).
unsafe fn copy_pieces<M: Managed>(
    pieces: &[Piece],
    dims: &Dims,
    target: &'static DType,
    fill: Option<&[u8; 8]>,
) -> Result<NonNull<M>, Error> {
    let width = target.width();
    let elements = elements(pieces);
    let bytes = elements.checked_mul(width).ok_or_else(|| {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "{elements} elements of {width} bytes overflow"
        )
    })?;
    let (tensor, dst) = owner::own::<M>(target.dl, dims, bytes)?;
    for (at, piece) in placed(pieces) {
        let v = &piece.view;
        if v.elements == 0 {
            continue;
        }
        // SAFETY: the owner's bytes hold `elements` elements of `target`;
        // this piece's go at `at`; its source is live (caller's contract).
        unsafe {
            let out = dst.add(at * width);
            copy::convert::convert(
                v.dtype,
                v.data.cast(),
                v.bit_offset,
                target,
                out,
                v.elements,
            );
            if let Some(value) = fill {
                copy::nulls::fill(out, width, value, &piece.maps);
            }
        }
    }
    Ok(tensor)
}

/// The kDLBool validity mask of the pieces, of the tensor's shape.
///
/// # Safety
/// As [`copy_pieces`].
unsafe fn mask(pieces: &[Piece], dims: &Dims) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    let (tensor, dst) = owner::own::<DLManagedTensorVersioned>(BOOLEAN.dl, dims, elements(pieces))?;
    for (at, piece) in placed(pieces) {
        // SAFETY: a byte per element; this piece's go at `at`.
        unsafe { copy::nulls::mask(dst.add(at), piece.view.elements, &piece.maps) };
    }
    Ok(tensor)
}

/// Elements of all the pieces.
fn elements(pieces: &[Piece]) -> usize {
    pieces.iter().map(|p| p.view.elements).sum()
}

/// Each piece with the element it starts at, one after another.
fn placed(pieces: &[Piece]) -> impl Iterator<Item = (usize, &Piece)> {
    pieces.iter().scan(0, |at, piece| {
        let start = *at;
        *at += piece.view.elements;
        Some((start, piece))
    })
}

/// The tensor of `pieces` (and the validity mask when asked for): the one
/// piece shared, or a copy of them all. On success the arrays are the
/// tensor's (moved in) or released (copied); on failure untouched.
///
/// # Safety
/// `arrays[i]` is the live array `pieces[i]` was read from.
unsafe fn finish<M: Managed>(
    arrays: &mut [&mut ArrowArray],
    pieces: &[Piece],
    dims: &Dims,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    let source = pieces.first().map_or(&dtype::TABLE[0], |p| p.view.dtype);
    let nulls = pieces.iter().map(|p| p.nulls).sum();
    let null_depth = pieces
        .iter()
        .find(|p| p.nulls > 0)
        .map_or(0, |p| p.null_depth);
    let non_empty = pieces.iter().filter(|p| p.view.elements > 0).count();
    let decision = decide(source, (nulls, null_depth), non_empty, options)?;
    let validity = match options.validity.is_null() {
        true => None,
        // SAFETY: live arrays (caller's contract).
        false => Some(unsafe { mask(pieces, dims) }?),
    };
    let made = match (decision.copy, arrays.len()) {
        // SAFETY: as above.
        (true, _) | (_, 0) => unsafe {
            copy_pieces(pieces, dims, decision.target, decision.fill.as_ref())
        },
        (false, _) => {
            // One piece with elements (or none at all): share it.
            let i = pieces.iter().position(|p| p.view.elements > 0).unwrap_or(0);
            let v = &pieces[i].view;
            // SAFETY: `arrays[i]` is the array `v` was read from.
            unsafe { owner::share(arrays[i], v.data, v.dtype.dl, v.device, dims) }
        }
    };
    // SAFETY: forwarded from the caller.
    unsafe { complete(made, arrays, validity, options) }
}

/// Completes an export with what was `made`: on success the arrays not
/// moved into the tensor (copied) are released and the validity mask is
/// handed out; on failure the mask is deleted and the arrays untouched.
///
/// # Safety
/// `arrays` are live; `validity` is a fresh mask, not handed out.
pub unsafe fn complete<M: Managed>(
    made: Result<NonNull<M>, Error>,
    arrays: &mut [&mut ArrowArray],
    validity: Option<NonNull<DLManagedTensorVersioned>>,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    let tensor = match made {
        Ok(t) => t,
        Err(e) => {
            if let Some(v) = validity {
                // SAFETY: made above, not handed out.
                unsafe { managed::delete(v) };
            }
            return Err(e);
        }
    };
    // The arrays not moved into the tensor: copied, released now.
    for array in arrays.iter_mut() {
        if let Some(release) = array.release {
            // SAFETY: the producer's callback, once, on its live array.
            unsafe { release(&mut **array) };
            array.release = None;
        }
    }
    if let Some(v) = validity {
        // SAFETY: non-NULL out-parameter (checked by the C layer's contract).
        unsafe { options.validity.write(v.as_ptr()) };
    }
    Ok(tensor)
}

/// `arrow_dlpack_export_with[_legacy]`: one array, under `options`.
///
/// # Safety
/// As [`export`].
pub unsafe fn export_with<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    // SAFETY: forwarded from the caller.
    if unsafe { table::is_struct(schema) } {
        // SAFETY: as above.
        return unsafe { table::export_with(array, schema, options) };
    }
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let piece = unsafe { read_piece(array, schema, options, &mut dims) }?;
    // SAFETY: `piece` was read from `array`.
    unsafe { finish(&mut [array], &[piece], &dims, options) }
}

/// `arrow_dlpack_export_stream[_legacy]`: every chunk of a stream, concatenated
/// along the first dimension (one chunk is shared as [`export_with`]
/// would). The stream is read to its end (or to the failure) and never
/// released; the chunks read are the library's, released once copied.
///
/// # Safety
/// `stream` is a live C stream.
pub unsafe fn export_stream<M: Managed>(
    stream: &mut ArrowArrayStream,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    // SAFETY: forwarded from the caller.
    let mut chunks = unsafe { stream::Chunks::read(stream) }?;
    // SAFETY: the stream's schema, ours now.
    if unsafe { table::is_struct(&chunks.schema) } {
        // SAFETY: the stream's chunks, of its schema.
        return unsafe { table::export_stream(&mut chunks, options) };
    }
    let mut dims = Dims::new();
    let mut pieces = Vec::with_capacity(chunks.arrays.len());
    let mut length = 0i64;
    for (i, array) in chunks.arrays.iter().enumerate() {
        let mut chunk_dims = Dims::new();
        // SAFETY: a chunk of the stream, of its schema (checked structurally).
        let piece = unsafe { read_piece(array, &chunks.schema, options, &mut chunk_dims) }
            .map_err(|e| e.context(format_args!("chunk {i}")))?;
        length = length.checked_add(chunk_dims.shape()[0]).ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "chunk {i}: the stream's length overflows"
            )
        })?;
        if i == 0 {
            dims = chunk_dims;
        }
        pieces.push(piece);
    }
    if pieces.is_empty() {
        // No chunk: the schema's shape with no row, read from an empty
        // array of the schema's structure.
        // SAFETY: the schema is the stream's, live.
        let empty = unsafe { stream::EmptyArray::of(&chunks.schema) };
        // SAFETY: a valid zero-length array of that schema's structure.
        pieces.push(unsafe { read_piece(empty.root(), &chunks.schema, options, &mut dims) }?);
    }
    dims.set_length(length);
    let mut arrays: Vec<&mut ArrowArray> = chunks.arrays.iter_mut().collect();
    // SAFETY: each array is the chunk its piece was read from.
    unsafe { finish(&mut arrays, &pieces, &dims, options) }
}
