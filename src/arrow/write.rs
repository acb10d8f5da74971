//! The Arrow C structs that imports hand out: arrays whose buffers belong
//! to a shared anchor (the imported tensor), and schemas, with their
//! release callbacks.
//!
//! Every array made here holds a share of its [`Anchor`]: the anchor is
//! dropped (the tensor deleted) when the last array sharing it is released,
//! in whatever order a consumer releases or moves them. A schema of a
//! primitive type allocates nothing.

use std::ffi::{CStr, CString, c_void};
use std::ptr;
use std::sync::Arc;

use super::release::Release;
use crate::abi::{ArrowArray, ArrowSchema};
use crate::dtype::DType;

/// What an array's buffers belong to, shared by every array that points
/// into them; dropping the last share frees them.
pub type Anchor = Arc<dyn Send + Sync>;

/// What an `ArrowArray` made here owns: a share of the anchor, its buffer
/// pointers and its children (`Box`es turned raw, freed by
/// `release_array`).
struct ArrayPrivate {
    _anchor: Anchor,
    buffers: [*const c_void; 2],
    children: Vec<*mut ArrowArray>,
}

/// A primitive array of `length` elements at `values` (no validity bitmap),
/// holding `anchor` (moved in: the caller clones it for every other array
/// that shares it, and no share is taken and dropped for nothing).
pub fn primitive_array(length: i64, values: *const c_void, anchor: Anchor) -> ArrowArray {
    array(length, 2, [ptr::null(), values], Vec::new(), anchor)
}

/// A boolean array of `length` values from bit `offset` of `bits`.
pub fn boolean_array(length: i64, offset: i64, bits: *const c_void, anchor: Anchor) -> ArrowArray {
    ArrowArray {
        offset,
        ..primitive_array(length, bits, anchor)
    }
}

/// A `fixed_size_list` array of `length` rows over `child`, holding
/// `anchor`.
pub fn fixed_size_list_array(length: i64, child: ArrowArray, anchor: Anchor) -> ArrowArray {
    array(length, 1, [ptr::null(); 2], vec![child], anchor)
}

/// A list array of `length` rows (`+l` or `+L`: the offsets' width) over
/// `child`, its `length + 1` offsets at `offsets`.
pub fn list_array(
    length: i64,
    offsets: *const c_void,
    child: ArrowArray,
    anchor: Anchor,
) -> ArrowArray {
    array(length, 2, [ptr::null(), offsets], vec![child], anchor)
}

/// A struct array of `length` rows over `children` (no validity bitmap).
/// The children hold their own shares: a consumer may move one out and
/// release it after the struct.
pub fn struct_array(length: i64, children: Vec<ArrowArray>, anchor: Anchor) -> ArrowArray {
    array(length, 1, [ptr::null(); 2], children, anchor)
}

/// An array with `n_buffers` of `buffers` and `children`.
fn array(
    length: i64,
    n_buffers: i64,
    buffers: [*const c_void; 2],
    children: Vec<ArrowArray>,
    anchor: Anchor,
) -> ArrowArray {
    let children: Vec<*mut ArrowArray> = children
        .into_iter()
        .map(|c| Box::into_raw(Box::new(c)))
        .collect();
    let n_children = children.len() as i64;
    // Raw from the start: the struct hands out pointers into it.
    let private = Box::into_raw(Box::new(ArrayPrivate {
        _anchor: anchor,
        buffers,
        children,
    }));
    ArrowArray {
        length,
        null_count: 0,
        offset: 0,
        n_buffers,
        n_children,
        // SAFETY: fields of the live allocation just made; the children's
        // heap buffer stays put while the box lives.
        buffers: unsafe { (&raw mut (*private).buffers).cast() },
        children: match n_children {
            0 => ptr::null_mut(),
            // SAFETY: as for the block above, fields of the live allocation just made; the
            // children's heap buffer stays put while the box lives.
            _ => unsafe { (*private).children.as_mut_ptr() },
        },
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: private.cast(),
    }
}

/// The release callback of arrays made here: releases each child unless a
/// consumer moved it out, frees them, then drops this struct's share of
/// the anchor (the last share frees the buffers, on this thread).
unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called by the consumer on a live array made by `array` (the
    // C Data Interface: release once, then `release` is NULL); its private
    // data and children were made by `Box::into_raw` there.
    unsafe {
        let Some(_) = (*array).release else { return };
        let private = Box::from_raw((*array).private_data.cast::<ArrayPrivate>());
        for &child in &private.children {
            (*child).release_once();
            drop(Box::from_raw(child));
        }
        (*array).release = None;
        drop(private);
    }
}

/// What a schema with allocations owns.
struct SchemaPrivate {
    format: CString,
    name: CString,
    metadata: Vec<u8>,
    children: Vec<*mut ArrowSchema>,
}

/// The schema of a primitive type: static strings, nothing allocated
/// (`private_data` NULL).
pub fn primitive_schema(dtype: &'static DType, name: &'static CStr) -> ArrowSchema {
    static_schema(dtype.c_format, name)
}

/// A childless schema of static strings, nothing allocated (`private_data`
/// NULL): `release` only marks it released. Also for formats the type
/// table has no entry for (dates: the Python package's pyarrow path).
pub fn static_schema(format: &'static CStr, name: &'static CStr) -> ArrowSchema {
    ArrowSchema {
        format: format.as_ptr(),
        name: name.as_ptr(),
        metadata: ptr::null(),
        flags: 0,
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    }
}

/// The schema of a non-nullable `fixed_size_list<item>[list_size]` with
/// `metadata` (a C Data Interface metadata block).
pub fn fixed_size_list_schema(list_size: i32, item: ArrowSchema, metadata: Vec<u8>) -> ArrowSchema {
    let format = CString::new(format!("+w:{list_size}")).expect("no NUL in a number");
    owned_schema(format, CString::default(), metadata, vec![item])
}

/// The schema of a primitive type named `name` (a struct's field).
pub fn named_schema(dtype: &'static DType, name: CString) -> ArrowSchema {
    owned_schema(dtype.c_format.into(), name, Vec::new(), Vec::new())
}

/// The schema of a non-nullable list (`large`: int64 offsets) of `item`.
pub fn list_schema(large: bool, item: ArrowSchema) -> ArrowSchema {
    let format = match large {
        true => c"+L",
        false => c"+l",
    };
    owned_schema(format.into(), CString::default(), Vec::new(), vec![item])
}

/// The schema of a non-nullable struct of `fields`.
pub fn struct_schema(fields: Vec<ArrowSchema>) -> ArrowSchema {
    owned_schema(c"+s".into(), CString::default(), Vec::new(), fields)
}

/// A schema owning its strings, metadata and children.
fn owned_schema(
    format: CString,
    name: CString,
    metadata: Vec<u8>,
    children: Vec<ArrowSchema>,
) -> ArrowSchema {
    let children: Vec<*mut ArrowSchema> = children
        .into_iter()
        .map(|c| Box::into_raw(Box::new(c)))
        .collect();
    let n_children = children.len() as i64;
    let private = Box::into_raw(Box::new(SchemaPrivate {
        format,
        name,
        metadata,
        children,
    }));
    // SAFETY: fields of the live allocation just made; the CStrings' and
    // Vecs' heap buffers stay put while the box lives.
    unsafe {
        ArrowSchema {
            format: (*private).format.as_ptr(),
            name: (*private).name.as_ptr(),
            metadata: match (*private).metadata.is_empty() {
                true => ptr::null(),
                false => (*private).metadata.as_ptr().cast(),
            },
            flags: 0,
            n_children,
            children: match n_children {
                0 => ptr::null_mut(),
                _ => (*private).children.as_mut_ptr(),
            },
            dictionary: ptr::null_mut(),
            release: Some(release_schema),
            private_data: private.cast(),
        }
    }
}

/// The release callback of schemas made here.
unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: called by the consumer on a live schema made here; private
    // data, when set, and its child come from `Box::into_raw`.
    unsafe {
        let Some(_) = (*schema).release else { return };
        let private = (*schema).private_data.cast::<SchemaPrivate>();
        if !private.is_null() {
            let private = Box::from_raw(private);
            for &child in &private.children {
                (*child).release_once();
                drop(Box::from_raw(child));
            }
        }
        (*schema).release = None;
    }
}
