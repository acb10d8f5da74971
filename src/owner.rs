//! The one allocation behind every tensor this library makes.
//!
//! An [`Owner`] holds the managed tensor first (so a pointer to the tensor
//! is a pointer to its owner), what the tensor's data belongs to, and the
//! tensor's `ndim` shape and `ndim` stride entries right after it. The data
//! belongs either to the producer's Arrow array, moved in ([`share`]: the
//! tensor is read-only), or to the owner itself: bytes in the same
//! allocation, 64-byte aligned, written once by a copy kernel ([`own`]: the
//! tensor is marked copied and writable). The deleter releases the array,
//! if there is one, and frees the allocation, once.

use std::alloc::{self, Layout};
use std::ptr::{self, NonNull};

use crate::abi::{
    ArrowArray, DLDataType, DLDevice, DLPACK_FLAG_BITMASK_IS_COPIED, DLPACK_FLAG_BITMASK_READ_ONLY,
    DLTensor,
};
use crate::dims::Dims;
use crate::error::{Error, err};
use crate::managed::Managed;

/// Alignment of a tensor's own bytes: a cache line, and what SIMD loads
/// and DLPack consumers (XLA asks for 64) like best.
pub const DATA_ALIGN: usize = 64;

/// What the tensor's data belongs to.
enum Data {
    /// The producer's Arrow array, released by the deleter.
    Shared(ArrowArray),
    /// `len` bytes of the owner's own allocation, which is `alloc` bytes
    /// long (more than the layout needs when it was recycled).
    Owned { len: usize, alloc: usize },
}

/// The allocation behind a tensor; `ndim * 2` `i64`s follow it, then its
/// own bytes, if any.
#[repr(C)]
struct Owner<M> {
    managed: M,
    data: Data,
    ndim: usize,
}

/// Layout of an owner with `ndim` dimensions and `bytes` bytes of its own,
/// and the offsets of its dims and its bytes; `None` when no allocation can
/// hold that much. (An `Option`, not a `Result`: this runs on every export
/// and every deletion, and an `Error` is 264 bytes to return.)
fn layout<M>(ndim: usize, bytes: usize) -> Option<(Layout, usize, usize)> {
    let dims = Layout::array::<i64>(2 * ndim).ok()?;
    let (layout, dims_offset) = Layout::new::<Owner<M>>().extend(dims).ok()?;
    if bytes == 0 {
        return Some((layout.pad_to_align(), dims_offset, 0));
    }
    let data = Layout::from_size_align(bytes, DATA_ALIGN).ok()?;
    let (layout, data_offset) = layout.extend(data).ok()?;
    Some((layout.pad_to_align(), dims_offset, data_offset))
}

/// A fresh owner of `data`, its dims written. `shared` is the data pointer
/// of a share (`None`: the tensor's data is the owner's own bytes).
/// Returns the tensor and the address of its own bytes (NULL when it has
/// none).
fn build<M: Managed>(
    dims: &Dims,
    dtype: DLDataType,
    device: DLDevice,
    data: Data,
    shared: Option<*mut std::ffi::c_void>,
) -> Result<(NonNull<M>, *mut u8), Error> {
    let ndim = dims.ndim();
    let bytes = match data {
        Data::Owned { len, .. } => len,
        Data::Shared(_) => 0,
    };
    let Some((layout, dims_offset, data_offset)) = layout::<M>(ndim, bytes) else {
        return Err(err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "a tensor of {bytes} bytes exceeds what one allocation may hold"
        ));
    };
    // Own bytes: a recycled allocation if one fits, else a fresh one.
    let recycled = match bytes {
        0 => None,
        _ => recycle::take(layout),
    };
    let (base, data) = match (recycled, data) {
        (Some((base, size)), Data::Owned { len, .. }) => (base, Data::Owned { len, alloc: size }),
        (_, data) => {
            // SAFETY: the layout has a non-zero size (it holds at least the owner).
            let Some(base) = NonNull::new(unsafe { alloc::alloc(layout) }) else {
                return Err(err!(
                    ARROW_DLPACK_OUT_OF_MEMORY,
                    "allocating a {}-byte tensor failed",
                    layout.size()
                ));
            };
            let data = match data {
                Data::Owned { len, .. } => Data::Owned {
                    len,
                    alloc: layout.size(),
                },
                shared => shared,
            };
            (base, data)
        }
    };
    let owner = base.cast::<Owner<M>>().as_ptr();
    // SAFETY: `dims_offset + 2 * ndim * 8 <= layout.size()`, and the offset
    // is aligned for i64 (`Layout::extend`).
    let shape = unsafe { base.as_ptr().add(dims_offset) }.cast::<i64>();
    // SAFETY: in bounds, see above.
    let strides = unsafe { shape.add(ndim) };
    // A plain loop rather than `copy_nonoverlapping`: `ndim` is tiny and a
    // call to `memmove` costs more than the copy.
    for (d, (&extent, &stride)) in dims.shape().iter().zip(dims.strides()).enumerate() {
        // SAFETY: `d < ndim`: inside the fresh allocation (see above).
        unsafe {
            shape.add(d).write(extent);
            strides.add(d).write(stride);
        }
    }
    let own = match bytes {
        0 => ptr::null_mut(),
        // SAFETY: `data_offset + bytes <= layout.size()` (`Layout::extend`).
        _ => unsafe { base.as_ptr().add(data_offset) },
    };
    huge_pages(own, bytes);
    let (data_ptr, flags) = match shared {
        Some(p) => (p, DLPACK_FLAG_BITMASK_READ_ONLY),
        None => (own.cast(), DLPACK_FLAG_BITMASK_IS_COPIED),
    };
    let dl_tensor = DLTensor {
        data: data_ptr,
        device,
        ndim: ndim as i32,
        dtype,
        shape,
        strides,
        byte_offset: 0,
    };
    // SAFETY: `owner` is a fresh allocation of the right layout.
    unsafe {
        owner.write(Owner {
            managed: M::new(dl_tensor, owner.cast(), delete::<M>, flags),
            data,
            ndim,
        });
    }
    Ok((base.cast(), own))
}

/// Asks the kernel to back a large copy's fresh bytes with transparent huge
/// pages: the copy writes every byte once, and faulting 4 KiB pages in one
/// by one (a 64 MiB copy takes 16,384 faults) would cost more than the copy
/// itself. A hint: where it is refused, nothing changes.
pub fn huge_pages(bytes: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if len < 2 * HUGE {
            return;
        }
        // The whole 2 MiB pages inside the range.
        let start = (bytes as usize).next_multiple_of(HUGE);
        let end = (bytes as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: a range of the caller's own live allocation;
            // MADV_HUGEPAGE changes how it is backed, not its contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (bytes, len);
}

/// Moves `array` into a new tensor of `dims` whose data is the array's
/// memory at `data`: read-only (Arrow buffers are immutable and may be
/// shared with others). The caller's `release` becomes NULL.
///
/// # Safety
/// `array` is valid for reads and writes; `data` is its memory.
pub unsafe fn share<M: Managed>(
    array: &mut ArrowArray,
    data: *mut std::ffi::c_void,
    dtype: DLDataType,
    device: DLDevice,
    dims: &Dims,
) -> Result<NonNull<M>, Error> {
    // SAFETY: reading the array and clearing the caller's `release` (below,
    // only once the tensor exists) is the C Data Interface's move: from
    // there on only the owner releases it.
    let moved = Data::Shared(unsafe { ptr::read(array) });
    match build(dims, dtype, device, moved, Some(data)) {
        Ok((tensor, _)) => {
            array.release = None;
            Ok(tensor)
        }
        // The copy read above was dropped with the failed owner's parts:
        // `ArrowArray` has no `Drop`, so nothing was released.
        Err(e) => Err(e),
    }
}

// The copy kernels (one-copy conversions) are its callers; until they
// land, its tests are.
#[cfg_attr(not(test), allow(dead_code))]
/// A new host tensor of `dims` owning `len` bytes of its own (64-byte
/// aligned, uninitialized), marked copied and writable; returns it and
/// its bytes, which the caller fills before handing the tensor out.
pub fn own<M: Managed>(
    dtype: DLDataType,
    dims: &Dims,
    len: usize,
) -> Result<(NonNull<M>, *mut u8), Error> {
    let cpu = DLDevice {
        device_type: crate::abi::K_DL_CPU,
        device_id: 0,
    };
    build(dims, dtype, cpu, Data::Owned { len, alloc: 0 }, None)
}

/// The deleter of every tensor this library makes: releases the moved
/// Arrow array, if any, then frees the owner. Callable from any thread,
/// exactly once per tensor.
///
/// # Safety
/// `managed` is NULL or a tensor made by [`build`] with the same `M` that
/// was not deleted yet.
unsafe extern "C" fn delete<M: Managed>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    let owner = managed.cast::<Owner<M>>();
    // SAFETY: `managed` is the first field of a live `Owner<M>`.
    let (ndim, own) = unsafe {
        let own = match &mut (*owner).data {
            Data::Shared(array) => {
                if let Some(release) = array.release {
                    // SAFETY: the producer's callback, called once on its
                    // own array (moved in, not released yet).
                    release(array);
                }
                None
            }
            Data::Owned { len, alloc } => Some((*len, *alloc)),
        };
        ((*owner).ndim, own)
    };
    let base = NonNull::new(owner.cast::<u8>()).expect("a live owner");
    // The layouts were valid when the owner was built with these sizes.
    match own {
        // A copy's allocation (perhaps a recycled, larger one): kept for
        // the next copy when large.
        Some((len, size)) => {
            let (layout, _, _) = layout::<M>(ndim, len).expect("the owner's own layout");
            recycle::give(base, size, layout.align());
        }
        None => {
            let (layout, _, _) = layout::<M>(ndim, 0).expect("the owner's own layout");
            // SAFETY: allocated by `build` with exactly this layout.
            unsafe { alloc::dealloc(owner.cast(), layout) };
        }
    }
}

/// One large freed allocation kept for the next copy.
///
/// A copy writes its tensor's own bytes once; into fresh memory, that
/// write pays the kernel's page faults and zeroing (a 64 MiB copy: 32
/// huge pages or 16,384 small ones cleared), which cost as much as the
/// copy itself. Allocators that retain freed pages (jemalloc, mimalloc:
/// pyarrow's pools) reuse them; glibc returns large blocks to the kernel
/// at once. So the last freed allocation of 1 MiB to 1 GiB is kept, one
/// at most, and the next copy of a size it can hold (within a quarter more
/// than needed) reuses it: converting batch after batch of one size runs
/// at warm-memory speed. It is freed when the library is unloaded or the
/// process exits (so that leak checkers see nothing left), or replaced by
/// a later one.
mod recycle {
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;
    use std::sync::Mutex;

    const MIN: usize = 1 << 20;
    const MAX: usize = 1 << 30;

    struct Block {
        base: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: plain memory, owned by whoever holds the block.
    unsafe impl Send for Block {}

    static SLOT: Mutex<Option<Block>> = Mutex::new(None);

    fn slot() -> std::sync::MutexGuard<'static, Option<Block>> {
        // Nothing panics while holding the lock; a poisoned one is as good.
        SLOT.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept allocation, if it fits `layout` (same alignment, as large,
    /// at most a quarter larger); returns its base and size.
    pub fn take(layout: Layout) -> Option<(NonNull<u8>, usize)> {
        if cfg!(miri) || !(MIN..=MAX).contains(&layout.size()) {
            return None;
        }
        let mut slot = slot();
        let fits = slot.as_ref().is_some_and(|b| {
            b.layout.align() == layout.align()
                && b.layout.size() >= layout.size()
                && b.layout.size() - layout.size() <= layout.size() / 4
        });
        match fits {
            true => slot.take().map(|b| (b.base, b.layout.size())),
            false => None,
        }
    }

    /// Keeps or frees an allocation of `size` bytes aligned to `align`
    /// (made by `build`); a block kept before is freed.
    pub fn give(base: NonNull<u8>, size: usize, align: usize) {
        // The owner was allocated with exactly this size and alignment.
        let layout = Layout::from_size_align(size, align).expect("the owner's own layout");
        let old = match cfg!(miri) || !(MIN..=MAX).contains(&size) {
            true => Some(Block { base, layout }),
            false => slot().replace(Block { base, layout }),
        };
        if let Some(b) = old {
            // SAFETY: allocated with this layout, owned by no one else.
            unsafe { alloc::dealloc(b.base.as_ptr(), b.layout) };
        }
    }

    /// Frees the kept allocation.
    pub extern "C" fn clear() {
        if let Some(b) = slot().take() {
            // SAFETY: as in `give`.
            unsafe { alloc::dealloc(b.base.as_ptr(), b.layout) };
        }
    }

    /// Run when the library is unloaded or the process exits (after
    /// `atexit` handlers, before valgrind's leak check).
    #[cfg(target_os = "linux")]
    #[used]
    #[unsafe(link_section = ".fini_array")]
    static CLEAR_AT_EXIT: extern "C" fn() = clear;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{DLManagedTensor, DLManagedTensorVersioned, K_DL_FLOAT};

    const F64: DLDataType = DLDataType {
        code: K_DL_FLOAT,
        bits: 64,
        lanes: 1,
    };

    fn dims(shape: &[i64]) -> Dims {
        let mut d = Dims::new();
        for &e in shape {
            d.push(e).unwrap();
        }
        d.set_row_major_strides().unwrap();
        d
    }

    #[test]
    fn a_tensor_owning_its_bytes_is_aligned_writable_and_freed_once() {
        // Miri checks the rest: every byte written is inside the
        // allocation, and the deleter frees it exactly once (a leak or a
        // double free fails the run).
        for shape in [&[3, 5][..], &[0], &[1, 1, 7]] {
            let d = dims(shape);
            let n: i64 = shape.iter().product();
            let (t, bytes) = own::<DLManagedTensorVersioned>(F64, &d, n as usize * 8).unwrap();
            // SAFETY: a live tensor made above, its bytes `n * 8` long.
            unsafe {
                let m = t.as_ref();
                assert_eq!(
                    m.flags, DLPACK_FLAG_BITMASK_IS_COPIED,
                    "writable: no READ_ONLY"
                );
                assert_eq!(m.dl_tensor.data.cast(), bytes);
                assert_eq!(bytes as usize % DATA_ALIGN, 0);
                assert_eq!(bytes.is_null(), n == 0, "no element: data NULL");
                for i in 0..n as usize {
                    bytes.cast::<f64>().add(i).write(i as f64);
                }
                assert_eq!(
                    std::slice::from_raw_parts(m.dl_tensor.shape, shape.len()),
                    shape
                );
                crate::managed::delete(t);
            }
        }
        // The legacy flavour has no flags, and the same owner.
        let (t, bytes) = own::<DLManagedTensor>(F64, &dims(&[2]), 16).unwrap();
        // SAFETY: as above.
        unsafe {
            bytes.cast::<[f64; 2]>().write([1.0, 2.0]);
            crate::managed::delete(t);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "recycling is off under Miri")]
    fn a_large_copy_reuses_the_last_freed_allocation() {
        let d = dims(&[1 << 18]); // 2 MiB of float64
        let (t, first) = own::<DLManagedTensorVersioned>(F64, &d, 8 << 18).unwrap();
        // SAFETY: live, deleted once.
        unsafe { crate::managed::delete(t) };
        let (t, again) = own::<DLManagedTensorVersioned>(F64, &d, 8 << 18).unwrap();
        // (No other unit test makes a copy of a megabyte or more.)
        assert_eq!(again, first, "the freed block reused");
        // A size twice as large never takes a block it does not fit.
        let big = dims(&[1 << 19]);
        let (u, other) = own::<DLManagedTensorVersioned>(F64, &big, 8 << 19).unwrap();
        assert_ne!(other, again);
        // SAFETY: live, written within their sizes, deleted once.
        unsafe {
            again.cast::<f64>().add((1 << 18) - 1).write(1.0);
            other.cast::<f64>().add((1 << 19) - 1).write(1.0);
            crate::managed::delete(t);
            crate::managed::delete(u);
        }
        recycle::clear();
    }

    #[test]
    fn sizes_no_allocation_can_hold_are_out_of_memory() {
        let e = own::<DLManagedTensorVersioned>(F64, &dims(&[1]), isize::MAX as usize).unwrap_err();
        assert_eq!(e.status(), crate::Status::ARROW_DLPACK_OUT_OF_MEMORY);
    }
}
