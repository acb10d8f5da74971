//! The Arrow C structs that imports hand out: arrays whose buffers belong
//! to a shared keeper (the imported tensor), and schemas, with their
//! release callbacks.
//!
//! Every array made here holds a share of its [`Keeper`]: the keeper is
//! dropped (the tensor deleted) when the last array sharing it is released,
//! in whatever order a consumer releases or moves them. A schema of a
//! primitive type allocates nothing.

use std::ffi::{CStr, CString, c_void};
use std::ptr;
use std::sync::Arc;

use crate::abi::{ArrowArray, ArrowSchema};
use crate::dtype::DType;

/// What an array's buffers belong to, shared by every array that points
/// into them; dropping the last share frees them.
pub type Keeper = Arc<dyn Send + Sync>;

/// What an `ArrowArray` made here owns: a share of the keeper, its buffer
/// pointers and its child (a `Box` turned raw, freed by `release_array`).
struct ArrayPrivate {
    _keeper: Keeper,
    buffers: [*const c_void; 2],
    children: [*mut ArrowArray; 1],
}

/// A primitive array of `length` elements at `values` (no validity bitmap),
/// holding `keeper` (moved in: the caller clones it for every other array
/// that shares it, and no share is taken and dropped for nothing).
pub fn primitive_array(length: i64, values: *const c_void, keeper: Keeper) -> ArrowArray {
    array(length, [ptr::null(), values], None, keeper)
}

/// A `fixed_size_list` array of `length` rows over `child`, holding
/// `keeper`.
pub fn fixed_size_list_array(length: i64, child: ArrowArray, keeper: Keeper) -> ArrowArray {
    array(length, [ptr::null(), ptr::null()], Some(child), keeper)
}

/// A primitive array (`child` None: validity + values buffers) or a
/// fixed_size_list over `child` (validity buffer only).
fn array(
    length: i64,
    buffers: [*const c_void; 2],
    child: Option<ArrowArray>,
    keeper: Keeper,
) -> ArrowArray {
    let is_list = child.is_some();
    let child = child.map_or(ptr::null_mut(), |c| Box::into_raw(Box::new(c)));
    // Raw from the start: the struct hands out pointers into it.
    let private = Box::into_raw(Box::new(ArrayPrivate {
        _keeper: keeper,
        buffers,
        children: [child],
    }));
    ArrowArray {
        length,
        null_count: 0,
        offset: 0,
        n_buffers: if is_list { 1 } else { 2 },
        n_children: is_list as i64,
        // SAFETY: fields of the live allocation just made.
        buffers: unsafe { (&raw mut (*private).buffers).cast() },
        children: if is_list {
            // SAFETY: as above.
            unsafe { (&raw mut (*private).children).cast() }
        } else {
            ptr::null_mut()
        },
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: private.cast(),
    }
}

/// The release callback of arrays made here: releases the child unless a
/// consumer moved it out, frees it, then drops this struct's share of the
/// keeper (the last share frees the buffers, on this thread).
unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called by the consumer on a live array made by `array` (the
    // C Data Interface: release once, then `release` is NULL); its private
    // data and child were made by `Box::into_raw` there.
    unsafe {
        let Some(_) = (*array).release else { return };
        let private = Box::from_raw((*array).private_data.cast::<ArrayPrivate>());
        let child = private.children[0];
        if !child.is_null() {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        (*array).release = None;
        drop(private);
    }
}

/// What a list schema owns.
struct SchemaPrivate {
    format: CString,
    metadata: Vec<u8>,
    children: [*mut ArrowSchema; 1],
}

/// The schema of a primitive type: static strings, nothing allocated
/// (`private_data` NULL).
pub fn primitive_schema(dtype: &'static DType, name: &'static CStr) -> ArrowSchema {
    ArrowSchema {
        format: dtype.c_format.as_ptr(),
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
/// `metadata` (a C Data Interface metadata block), in one allocation.
pub fn fixed_size_list_schema(list_size: i32, item: ArrowSchema, metadata: Vec<u8>) -> ArrowSchema {
    let child = Box::into_raw(Box::new(item));
    let private = Box::into_raw(Box::new(SchemaPrivate {
        format: CString::new(format!("+w:{list_size}")).expect("no NUL in a number"),
        metadata,
        children: [child],
    }));
    // SAFETY: fields of the live allocation just made; the CString and the
    // Vec's heap buffer stay put while the box lives.
    unsafe {
        ArrowSchema {
            format: (*private).format.as_ptr(),
            name: c"".as_ptr(),
            metadata: (*private).metadata.as_ptr().cast(),
            flags: 0,
            n_children: 1,
            children: (&raw mut (*private).children).cast(),
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
            let child = private.children[0];
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        (*schema).release = None;
    }
}
