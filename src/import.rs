//! DLPack tensor -> Arrow C structs: the plan of the tensor
//! (`dlpack::read`) becomes an array and a schema (`arrow::write`) whose
//! buffers point into the tensor (or, under options, into one copy of it
//! where Arrow cannot share the tensor's layout). The arrays share one owner of the
//! tensor, whose deleter runs once, when the last of them is released.
//! Device memory is never dereferenced, nor turned into a Rust reference.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::{
    ARROW_FLAG_NULLABLE, ArrowArray, ArrowDeviceArray, ArrowSchema, DLDevice,
    DLManagedTensorVersioned, DLPACK_MAJOR_VERSION,
};
use crate::arrow::write::{self, Anchor};
use crate::copy::{self, Bytes, bits, gather};
use crate::dlpack::read::{self, Memory, TensorPlan, TensorRows};
use crate::error::{Error, Term, err};
use crate::extension;
use crate::managed::{self, Managed};
use crate::options::{self, ArrowDlpackCopy, ImportPolicy};

/// Owns a tensor on behalf of the Arrow arrays that point into it: dropping
/// it (when the last of them is released) calls the tensor's deleter, once.
struct TensorOwner<M: Managed>(NonNull<M>);

// SAFETY: DLPack deleters may be called from any thread (the tensor is
// handed over with its ownership), and the owner is never read otherwise.
unsafe impl<M: Managed> Send for TensorOwner<M> {}
// SAFETY: as above: no shared access to the tensor ever happens through it.
unsafe impl<M: Managed> Sync for TensorOwner<M> {}

impl<M: Managed> Drop for TensorOwner<M> {
    fn drop(&mut self) {
        // SAFETY: the owner holds the only ownership of a live tensor.
        unsafe { managed::delete(self.0) };
    }
}

/// Shares `tensor` as C Data Interface structs written to `out_array` and
/// `out_schema`; returns the tensor's device. On success the array owns
/// the tensor; on failure the tensor is untouched and still the caller's,
/// and nothing is written.
///
/// # Safety
/// `tensor` is live and owned by the caller; `out_array`/`out_schema` are
/// valid for writes.
pub unsafe fn import_to_c<M: Managed + 'static>(
    tensor: NonNull<M>,
    memory: Memory,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    // SAFETY: live (caller's contract).
    let plan = unsafe { read::plan(tensor.as_ref().dl_tensor(), memory) }?;
    // Everything fallible happens before the tensor changes hands.
    let schema = schema_of(&plan);
    let anchor: Anchor = Arc::new(TensorOwner(tensor));
    // SAFETY: the out structs are the caller's storage, written without
    // being read (they may hold anything).
    unsafe {
        std::ptr::write(out_array, array_of(&plan, plan.data, anchor));
        std::ptr::write(out_schema, schema);
    }
    Ok(plan.device)
}

/// [`import_to_c`] of a tensor on any device Arrow can name into an
/// `ArrowDeviceArray`: the device kept (`device_id` -1 for the CPU), no
/// `sync_event`; the memory never dereferenced.
///
/// # Safety
/// As [`import_to_c`].
pub unsafe fn import_device<M: Managed + 'static>(
    tensor: NonNull<M>,
    out_array: &mut ArrowDeviceArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    // SAFETY: `import_device`'s caller promises it: as `import_to_c`'s: `tensor` is live and
    // owned by the caller; `out_array`/`out_schema` are valid for writes.
    let device =
        unsafe { import_to_c(tensor, Memory::AnyDevice, &mut out_array.array, out_schema) }?;
    (out_array.device_type, out_array.device_id) = crate::device::to_arrow(device);
    out_array.sync_event = std::ptr::null_mut();
    out_array.reserved = [0; 3];
    Ok(device)
}

/// The schema of what `plan` describes.
fn schema_of(plan: &TensorPlan) -> ArrowSchema {
    match &plan.rows {
        None => write::primitive_schema(plan.dtype, c""),
        Some(rows) => write::fixed_size_list_schema(
            rows.list_size,
            write::primitive_schema(plan.dtype, c"item"),
            extension::metadata_block(&rows.physical, rows.permutation.as_deref()),
        ),
    }
}

/// The array of what `plan` describes, its values at `data`, held by
/// `anchor`.
fn array_of(plan: &TensorPlan, data: *mut u8, anchor: Anchor) -> ArrowArray {
    let data = data.cast_const().cast();
    match plan.rows {
        Some(_) => {
            let values = write::primitive_array(plan.elements, data, anchor.clone());
            write::fixed_size_list_array(plan.length, values, anchor)
        }
        None => write::primitive_array(plan.elements, data, anchor),
    }
}

/// `arrow_dlpack_import_with`: as [`import_to_c`] (host memory), under
/// `options`. What Arrow cannot share (kDLBool, which Arrow packs into
/// bits; strides with gaps, reversed, broadcast or Fortran-ordered) is
/// copied once, row-major, into bytes the Arrow array owns; `ALWAYS`
/// copies everything. After a copy the tensor is deleted at once.
///
/// # Safety
/// As [`import_to_c`].
pub unsafe fn import_with(
    tensor: NonNull<DLManagedTensorVersioned>,
    options: &ImportPolicy,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    if options.as_columns {
        // SAFETY: `import_with`'s caller promises it: as `import_to_c`'s: `tensor` is live and
        // owned by the caller; `out_array`/`out_schema` are valid for writes.
        return unsafe { import_columns(tensor, options, out_array, out_schema) };
    }
    // SAFETY: live (caller's contract).
    let t = unsafe { tensor.as_ref() }.dl_tensor();
    // SAFETY: as for the block above, live (caller's contract).
    let plan = unsafe { read::plan_for_copy(t, Memory::HostReadable) }?;
    let needed = match (&plan.unshareable, plan.dtype.is_bit_packed()) {
        (Some(why), _) => Some(why.message().to_string()),
        (None, true) => Some("packing kDLBool bytes into Arrow's boolean bits".to_string()),
        (None, false) => None,
    };
    let copy = match (needed, options.copy) {
        (Some(what), ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER) => {
            return Err(options::needs_copy(format_args!("{what}:")));
        }
        (Some(_), _) => true,
        (None, policy) => policy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
    };
    if !copy {
        // SAFETY: `import_with`'s caller promises it: as `import_to_c`'s: `tensor` is live and
        // owned by the caller; `out_array`/`out_schema` are valid for writes.
        return unsafe { import_to_c(tensor, Memory::HostReadable, out_array, out_schema) };
    }
    // Whether the tensor's memory is already in the copy's order.
    let row_major =
        plan.unshareable.is_none() && plan.rows.as_ref().is_none_or(|r| r.permutation.is_none());
    // SAFETY: the plan accepted the tensor.
    let (shape, strides) = unsafe { read::shape_strides(t) };
    // A copy is row-major in the tensor's logical order.
    let plan = TensorPlan {
        rows: plan.rows.map(|r| TensorRows {
            physical: shape[1..].to_vec(),
            permutation: None,
            list_size: r.list_size,
        }),
        ..plan
    };
    let elements = plan.elements as usize;
    let width = plan.dtype.width();
    let threads = copy::threads::resolve(options.threads);
    let bytes = match plan.dtype.is_bit_packed() {
        true => elements.div_ceil(8),
        false => elements * width, // the plan checked that the size fits
    };
    let values = Bytes::new(bytes)?;
    // SAFETY: the tensor is live and its elements lie where its shape and
    // strides say (DLPack's guarantee); `values` has room for them all.
    unsafe {
        if plan.dtype.is_bit_packed() && row_major {
            // Row-major bools: packed straight from the tensor.
            bits::pack_on(plan.data, values.as_ptr(), elements, threads);
        } else if plan.dtype.is_bit_packed() {
            // Strided bools: gathered to one byte each first, then packed.
            let staged = Bytes::new(elements)?;
            gather::gather_on(plan.data, &shape, &strides, 1, staged.as_ptr(), threads);
            bits::pack_on(staged.as_ptr(), values.as_ptr(), elements, threads);
        } else {
            gather::gather_on(plan.data, &shape, &strides, width, values.as_ptr(), threads);
        }
    }
    // Copied: the tensor is no longer needed.
    // SAFETY: live and owned (caller's contract); not used after this.
    unsafe { managed::delete(tensor) };
    let data = values.as_ptr();
    // Made once nothing can fail: an ArrowSchema has no `Drop`.
    let schema = schema_of(&plan);
    // SAFETY: as in `import_to_c`.
    unsafe {
        std::ptr::write(out_array, array_of(&plan, data, Arc::new(values)));
        std::ptr::write(out_schema, schema);
    }
    Ok(plan.device)
}

/// `arrow_dlpack_import_jagged`: a values tensor and an offsets tensor
/// (1-D int32 or int64, `length + 1` entries) as a list array (`+l` for
/// int32 offsets, `+L` for int64) of the values: shared, the array owning
/// both tensors, each deleted once; the offsets checked first
/// (non-decreasing, the first >= 0, the last <= the values' rows),
/// because Arrow consumers trust them. Values that need a copy (kDLBool,
/// strides) and offsets with strides are copied where `options.copy`
/// allows it. On failure both tensors are untouched and the caller's.
///
/// # Safety
/// Both tensors are live and owned by the caller; the out structs are
/// valid for writes.
pub unsafe fn import_jagged(
    values: NonNull<DLManagedTensorVersioned>,
    offsets: NonNull<DLManagedTensorVersioned>,
    options: &ImportPolicy,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    if options.as_columns {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{} makes a 2-D tensor's columns; a jagged import makes one list array",
            Term::AsColumns
        ));
    }
    let at = |what: &str, e: Error| e.context(format_args!("{what}"));
    // SAFETY: live (caller's contract); only read.
    let o = unsafe { offsets.as_ref() }.dl_tensor();
    // SAFETY: as for the block above, live (caller's contract); only read.
    let (plan, large) = unsafe { read::offsets_plan(o) }.map_err(|e| at("offsets", e))?;
    // SAFETY: live (caller's contract); only read.
    let v = unsafe { values.as_ref() }.dl_tensor();
    // SAFETY: as for the block above, live (caller's contract); only read.
    let values_plan =
        unsafe { read::plan_for_copy(v, Memory::HostReadable) }.map_err(|e| at("values", e))?;
    // The offsets, where the list will read them: shared, or gathered
    // (`copied` empty: shared). Not an `Option<Bytes>`: optimized code
    // tests a `None`'s unwritten length on the error paths below, which
    // is harmless but what valgrind rightly reports as a read of
    // uninitialized memory; an empty `Bytes` has every field written.
    let count = plan.elements as usize;
    let width = plan.dtype.width();
    let copied = match &plan.unshareable {
        None if options.copy != ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS => Bytes::new(0)?,
        None => Bytes::new(count * width)?,
        Some(why) if options.copy == ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER => {
            return Err(options::needs_copy(format_args!(
                "offsets {}:",
                why.message()
            )));
        }
        Some(_) => Bytes::new(count * width)?,
    };
    let shared = copied.is_empty();
    if !shared {
        // SAFETY: the plan accepted the tensor.
        let (shape, strides) = unsafe { read::shape_strides(o) };
        // SAFETY: the tensor's elements lie where its strides say; room
        // for all of them.
        unsafe { gather::gather(plan.data, &shape, &strides, width, copied.as_ptr()) };
    }
    let entries = match shared {
        true => plan.data,
        false => copied.as_ptr(),
    }
    .cast_const();
    let entry = |i: usize| -> i64 {
        // SAFETY: `count` contiguous entries (shared: a stride-1 tensor;
        // copied: gathered above), host memory (the plan's device check).
        unsafe {
            match large {
                true => entries.cast::<i64>().add(i).read_unaligned(),
                false => i64::from(entries.cast::<i32>().add(i).read_unaligned()),
            }
        }
    };
    read::check_offsets(count, entry, values_plan.length)?;
    // The values, as the list's child: the only step that consumes a
    // tensor, and the last that can fail.
    let mut child = ArrowArray::released();
    let mut child_schema = ArrowSchema::released();
    let values_options = ImportPolicy {
        copy: options.copy,
        as_columns: false,
        column_names: std::ptr::null(),
        threads: options.threads,
    };
    // SAFETY: forwarded from the caller; fresh out structs.
    let device = unsafe { import_with(values, &values_options, &mut child, &mut child_schema) }
        .map_err(|e| at("values", e))?;
    // Named and flagged as Arrow's lists name and flag their child (a
    // nullable "item": `list<item: float>`, the type users compare with).
    child_schema.name = c"item".as_ptr();
    child_schema.flags |= ARROW_FLAG_NULLABLE;
    let anchor: Anchor = match shared {
        true => Arc::new(TensorOwner(offsets)),
        false => {
            // The offsets were copied: the tensor is no longer needed.
            // SAFETY: live and owned (caller's contract); not used again.
            unsafe { managed::delete(offsets) };
            Arc::new(copied)
        }
    };
    // SAFETY: the out structs are the caller's storage, written without
    // being read.
    unsafe {
        std::ptr::write(
            out_array,
            write::list_array(count as i64 - 1, entries.cast(), child, anchor),
        );
        std::ptr::write(out_schema, write::list_schema(large, child_schema));
    }
    Ok(device)
}

/// The names of `columns` columns: the caller's (`column_names`, each a C
/// string), else "0", "1", ...
///
/// # Safety
/// `names` is NULL or holds `columns` pointers, each NULL or a C string.
unsafe fn column_names(names: *const *const c_char, columns: usize) -> Result<Vec<CString>, Error> {
    let mut out = Vec::new();
    out.try_reserve_exact(columns).map_err(|_| {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "{columns} column names do not fit in memory"
        )
    })?;
    for j in 0..columns {
        let name = match names.is_null() {
            true => CString::new(j.to_string()).expect("digits"),
            false => {
                // SAFETY: `columns` entries (caller's contract).
                let p = unsafe { *names.add(j) };
                if p.is_null() {
                    return Err(err!(
                        ARROW_DLPACK_INVALID_ARGUMENT,
                        "options.column_names[{j}] is NULL: one name per column expected"
                    ));
                }
                // SAFETY: a C string (caller's contract).
                unsafe { CStr::from_ptr(p) }.to_owned()
            }
        };
        out.push(name);
    }
    Ok(out)
}

/// `arrow_dlpack_import_with` under `as_columns`: a 2-D tensor `[rows,
/// columns]` as a struct array of its columns. Each column dense (stride
/// 1 down the rows, as in a column-major tensor): every child points into
/// the tensor, which the children and the struct share, deleted when the
/// last of them is released. Otherwise (a row-major tensor, gaps, kDLBool)
/// the columns are copied out, one after another, into bytes the arrays
/// share, and the tensor is deleted at once.
///
/// # Safety
/// As [`import_to_c`].
unsafe fn import_columns(
    tensor: NonNull<DLManagedTensorVersioned>,
    options: &ImportPolicy,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    // SAFETY: live (caller's contract).
    let t = unsafe { tensor.as_ref() }.dl_tensor();
    if t.ndim != 2 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.as_columns needs a 2-D tensor [rows, columns]; this one has ndim {}",
            t.ndim
        ));
    }
    // SAFETY: as above. The plan checks the dtype, the device and the sizes.
    let plan = unsafe { read::plan_for_copy(t, Memory::HostReadable) }?;
    // SAFETY: the plan accepted the tensor.
    let (shape, strides) = unsafe { read::shape_strides(t) };
    let (rows, columns) = (shape[0], shape[1] as usize);
    // SAFETY: the caller's names, one per column.
    let names = unsafe { column_names(options.column_names, columns) }?;
    let width = plan.dtype.width() as i64;
    let dense = rows <= 1 || strides[0] == 1;
    let needed = match (plan.dtype.is_bit_packed(), dense) {
        (true, _) => Some(format_args!(
            "packing kDLBool bytes into Arrow's boolean bits"
        )),
        (false, false) => Some(format_args!(
            "columns that are not dense (a row-major or strided tensor)"
        )),
        (false, true) => None,
    };
    let copy = match (needed, options.copy) {
        (Some(what), ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER) => {
            return Err(options::needs_copy(what).context(format_args!(
                "options.as_columns of a tensor with strides {strides:?}"
            )));
        }
        (Some(_), _) => true,
        (None, policy) => policy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
    };
    // Made last, once nothing can fail: an ArrowSchema has no `Drop`.
    let dtype = plan.dtype;
    let schema = move || {
        write::struct_schema(
            names
                .into_iter()
                .map(|name| write::named_schema(dtype, name))
                .collect(),
        )
    };
    if !copy {
        // Column `j` starts `j * strides[1]` elements in: checked, as the
        // strides are the producer's.
        let starts: Option<Vec<*const c_void>> = (0..columns as i64)
            .map(|j| {
                let bytes = j.checked_mul(strides[1])?.checked_mul(width)?;
                Some(
                    plan.data
                        .wrapping_offset(isize::try_from(bytes).ok()?)
                        .cast_const()
                        .cast(),
                )
            })
            .collect();
        let Some(starts) = starts else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "tensor strides {strides:?}: column offsets overflow"
            ));
        };
        let anchor: Anchor = Arc::new(TensorOwner(tensor));
        let children = starts
            .into_iter()
            .map(|data| write::primitive_array(rows, data, anchor.clone()))
            .collect();
        // SAFETY: the out structs are the caller's storage, written
        // without being read.
        unsafe {
            std::ptr::write(out_array, write::struct_array(rows, children, anchor));
            std::ptr::write(out_schema, schema());
        }
        return Ok(plan.device);
    }
    let elements = plan.elements as usize; // the plan checked the size
    let bytes = match plan.dtype.is_bit_packed() {
        true => elements.div_ceil(8),
        false => elements * width as usize,
    };
    let values = Bytes::new(bytes)?;
    let staged = match plan.dtype.is_bit_packed() {
        true => Some(Bytes::new(elements)?),
        false => None,
    };
    let column_major = staged.as_ref().map_or(values.as_ptr(), Bytes::as_ptr);
    // SAFETY: the tensor is live and its elements lie where its shape and
    // strides say (DLPack's guarantee); the destination holds them all.
    let threads = copy::threads::resolve(options.threads);
    let (src, dst) = (
        copy::threads::Src(plan.data),
        copy::threads::Dst(column_major),
    );
    let strides = (strides[0] as isize, strides[1] as isize);
    let element = width as usize;
    copy::threads::split(rows as usize, columns * element, threads, |r| {
        // SAFETY: rows `r` of the tensor, read where its strides say; their
        // part of each column, `rows` elements apart.
        unsafe {
            copy::transpose::columns(
                src.get().wrapping_offset(
                    (r.start as isize)
                        .wrapping_mul(strides.0)
                        .wrapping_mul(width as isize),
                ),
                (r.len(), columns),
                strides,
                element,
                (dst.get().add(r.start * element), rows as usize),
            )
        };
    });
    if staged.is_some() {
        // SAFETY: the staged bools, one a byte, all written above.
        unsafe { bits::pack_on(column_major, values.as_ptr(), elements, threads) };
    }
    drop(staged);
    // Copied: the tensor is no longer needed.
    // SAFETY: live and owned (caller's contract); not used after this.
    unsafe { managed::delete(tensor) };
    let data = values.as_ptr().cast_const().cast::<c_void>();
    let anchor: Anchor = Arc::new(values);
    let children = (0..columns as i64)
        .map(|j| match plan.dtype.is_bit_packed() {
            // Column `j` is bits `j * rows..` of the one bitmap.
            true => write::boolean_array(rows, j * rows, data, anchor.clone()),
            false => {
                let at = data.wrapping_byte_add((j * rows * width) as usize);
                write::primitive_array(rows, at, anchor.clone())
            }
        })
        .collect();
    // SAFETY: as for the block above, live and owned (caller's contract); not used after this.
    unsafe {
        std::ptr::write(out_array, write::struct_array(rows, children, anchor));
        std::ptr::write(out_schema, schema());
    }
    Ok(plan.device)
}

/// A versioned tensor, once its major version is known to be 1 (nothing
/// else is read before that).
///
/// # Safety
/// `tensor` is NULL or points at a live `DLManagedTensorVersioned`.
pub unsafe fn versioned(
    tensor: *mut DLManagedTensorVersioned,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    let tensor = NonNull::new(tensor)
        .ok_or_else(|| err!(ARROW_DLPACK_INVALID_ARGUMENT, "tensor is NULL"))?;
    // SAFETY: live (caller's contract); only the version is read.
    let version = unsafe { (*tensor.as_ptr()).version };
    if version.major != DLPACK_MAJOR_VERSION {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "DLPack version {}.{} is not supported: its layout is unknown (1.x expected)",
            version.major,
            version.minor
        ));
    }
    Ok(tensor)
}
