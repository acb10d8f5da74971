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
//!
//! A [`Pair`] is the one allocation behind two 1-D tensors sharing one
//! moved array (a list's offsets and values): the array is released and
//! the allocation freed by whichever deleter runs second.

use std::alloc::Layout;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{
    ArrowArray, DLDataType, DLDevice, DLManagedTensorVersioned, DLPACK_FLAG_BITMASK_IS_COPIED,
    DLPACK_FLAG_BITMASK_READ_ONLY, DLTensor,
};
use crate::arrow::release::Release;
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
    /// A share of one producer's array that several tensors point into
    /// (a list's values and offsets; the batches of one chunk), released
    /// when the last of them is deleted.
    Kept(Arc<Kept>),
    /// `len` bytes of the owner's own allocation, which is `alloc` bytes
    /// long (more than the layout needs when it was recycled).
    Owned { len: usize, alloc: usize },
    /// Page-locked memory of the CUDA driver ([`crate::pinned`]), freed
    /// by the deleter.
    Pinned(*mut u8),
}

/// An Arrow array moved out of its producer's struct, shared by the
/// tensors that point into it; released once, when the last share goes.
pub struct Kept(ArrowArray);

// SAFETY: the C Data Interface lets any thread release an array; the
// struct is only read (to release it) by whoever drops the last share.
unsafe impl Send for Kept {}
// SAFETY: as above: shared access reads nothing.
unsafe impl Sync for Kept {}

impl Kept {
    /// Moves `array` in (the caller's `release` becomes NULL): released
    /// when the last share is dropped.
    ///
    /// # Safety
    /// `array` is a live array, valid for reads and writes.
    pub unsafe fn new(array: &mut ArrowArray) -> Arc<Kept> {
        // SAFETY: a bitwise move; the caller's copy disarmed below.
        let kept = Arc::new(Kept(unsafe { ptr::read(array) }));
        array.release = None;
        kept
    }

    /// The array, to read (its children, buffers): alive while this is.
    pub fn array(&self) -> &ArrowArray {
        &self.0
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: the array moved in (`Kept::new`), or disarmed by an
        // uncommitted `Keeper`.
        unsafe { self.0.release_once() };
    }
}

/// The array of several tensors, moved out of `array` only when every
/// tensor was made ([`Keeper::commit`]); dropped before that (a tensor
/// failed), it leaves the caller's array as it was.
pub struct Keeper {
    kept: Arc<Kept>,
    array: *mut ArrowArray,
}

impl Keeper {
    /// A keeper of `array`, not moved yet.
    ///
    /// # Safety
    /// `array` is a live array, valid for reads and writes until the
    /// keeper is committed or dropped.
    pub unsafe fn new(array: *mut ArrowArray) -> Keeper {
        // SAFETY: a bitwise copy, armed only by `commit` (see `Drop`).
        let kept = Arc::new(Kept(unsafe { ptr::read(array) }));
        Keeper { kept, array }
    }

    /// The share the tensors made with this keeper take.
    pub fn kept(&self) -> &Arc<Kept> {
        &self.kept
    }

    /// Moves the array in: the caller's `release` becomes NULL; the
    /// tensors made with this keeper release it, the last of them.
    pub fn commit(self) {
        // SAFETY: live and writable until now (`new`'s contract).
        unsafe { (*self.array).release = None };
        // The tensors hold their shares; this one goes, without `Drop`
        // (which would disarm the array the tensors now own).
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: read once, from a keeper never used or dropped again.
        drop(unsafe { ptr::read(&this.kept) });
    }
}

impl Drop for Keeper {
    /// Not committed: the tensors made were deleted first (the caller's
    /// contract), so this is the last share; it must not release the
    /// caller's array.
    fn drop(&mut self) {
        if let Some(kept) = Arc::get_mut(&mut self.kept) {
            kept.0.release = None;
        }
    }
}

/// The allocation behind a tensor; `ndim * 2` `i64`s follow it, then its
/// own bytes, if any.
#[repr(C)]
struct Owner<M> {
    managed: M,
    data: Data,
    ndim: usize,
}

/// A block of `layout` from the C allocator (`malloc`, or `posix_memalign`
/// for a copy's 64-byte alignment), freed by [`free`]: the owners are C
/// allocations, made and freed once per export, where Rust's allocator
/// shims would add a tenth to the plain export. NULL when it fails.
#[inline(always)]
fn allocate(layout: Layout) -> *mut u8 {
    if layout.align() <= 16 {
        // SAFETY: malloc has no preconditions; its blocks are 16-aligned
        // on every 64-bit target.
        return unsafe { libc::malloc(layout.size()) }.cast();
    }
    let mut block = ptr::null_mut();
    // SAFETY: the alignment is a power of two, a multiple of the pointer
    // size; the out-pointer is writable.
    match unsafe { libc::posix_memalign(&mut block, layout.align(), layout.size()) } {
        0 => block.cast(),
        _ => ptr::null_mut(),
    }
}

/// Frees a block of [`allocate`].
///
/// # Safety
/// `block` came from `allocate` and is not used again.
#[inline(always)]
unsafe fn free(block: *mut u8) {
    // SAFETY: a C allocation (caller's contract), freed once.
    unsafe { libc::free(block.cast()) }
}

/// Layout of an owner with `ndim` dimensions and `bytes` bytes of its own,
/// and the offset of its bytes (its dims follow the owner itself); `None`
/// when no allocation can hold that much. (An `Option`, not a `Result`:
/// this runs on every export and every deletion, and an `Error` is 264
/// bytes to return.)
#[inline(always)]
fn layout<M>(ndim: usize, bytes: usize) -> Option<(Layout, usize)> {
    // `Owner<M>` is 8-aligned, so its size is a multiple of 8: the dims
    // (`2 * ndim` i64s, `ndim <= MAX_NDIM`) follow it aligned.
    let dims_end = size_of::<Owner<M>>() + 16 * ndim;
    if bytes == 0 {
        return Layout::from_size_align(dims_end, align_of::<Owner<M>>())
            .ok()
            .map(|l| (l, 0));
    }
    let data_offset = dims_end.next_multiple_of(DATA_ALIGN);
    let size = data_offset.checked_add(bytes)?;
    Layout::from_size_align(size, DATA_ALIGN)
        .ok()
        .map(|l| (l, data_offset))
}

/// A fresh owner of `data`, its `shape` and `strides` written. `shared` is
/// the data pointer of a share (`None`: the tensor's data is the owner's
/// own bytes). Returns the tensor and the address of its own bytes (NULL
/// when it has none).
#[inline(always)]
fn build<M: Managed>(
    (shape, strides): (&[i64], &[i64]),
    dtype: DLDataType,
    device: DLDevice,
    data: Data,
    shared: Option<*mut std::ffi::c_void>,
) -> Result<(NonNull<M>, *mut u8), Error> {
    let ndim = shape.len();
    let bytes = match data {
        Data::Owned { len, .. } => len,
        Data::Shared(_) | Data::Kept(_) | Data::Pinned(_) => 0,
    };
    let Some((layout, data_offset)) = layout::<M>(ndim, bytes) else {
        return Err(too_large(bytes));
    };
    // Own bytes: a recycled allocation if one fits, else a fresh one.
    let recycled = match bytes {
        0 => None,
        _ => recycle::take(layout),
    };
    let (base, data) = match (recycled, data) {
        (Some((base, size)), Data::Owned { len, .. }) => (base, Data::Owned { len, alloc: size }),
        (_, data) => {
            let Some(base) = NonNull::new(allocate(layout)) else {
                return Err(allocation_failed(layout.size()));
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
    // SAFETY: the dims follow the owner inside the allocation (`layout`),
    // aligned for i64.
    let dims = unsafe { owner.add(1) }.cast::<i64>();
    // SAFETY: in bounds, see above.
    let (shape_at, strides_at) = (dims, unsafe { dims.add(ndim) });
    // A plain loop rather than `copy_nonoverlapping`: `ndim` is tiny and a
    // call to `memmove` costs more than the copy.
    for d in 0..ndim {
        // SAFETY: `d < ndim`: inside the fresh allocation (see above).
        unsafe {
            shape_at.add(d).write(shape[d]);
            strides_at.add(d).write(strides[d]);
        }
    }
    let own = match bytes {
        0 => ptr::null_mut(),
        // SAFETY: `data_offset + bytes <= layout.size()` (`layout`).
        _ => unsafe { base.as_ptr().add(data_offset) },
    };
    huge_pages(own, bytes);
    let (data_ptr, flags) = match (shared, &data) {
        (_, Data::Pinned(p)) => (p.cast(), DLPACK_FLAG_BITMASK_IS_COPIED),
        (Some(p), _) => (p, DLPACK_FLAG_BITMASK_READ_ONLY),
        (None, _) => (own.cast(), DLPACK_FLAG_BITMASK_IS_COPIED),
    };
    let dl_tensor = DLTensor {
        data: data_ptr,
        device,
        ndim: ndim as i32,
        dtype,
        shape: shape_at,
        strides: strides_at,
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

#[cold]
fn too_large(bytes: usize) -> Error {
    err!(
        ARROW_DLPACK_OUT_OF_MEMORY,
        "a tensor of {bytes} bytes exceeds what one allocation may hold"
    )
}

#[cold]
fn allocation_failed(size: usize) -> Error {
    err!(
        ARROW_DLPACK_OUT_OF_MEMORY,
        "allocating a {size}-byte tensor failed"
    )
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

/// Moves `array` into a new tensor of `dims` (shape and strides) whose
/// data is the array's memory at `data`: read-only (Arrow buffers are
/// immutable and may be shared with others). The caller's `release`
/// becomes NULL.
///
/// # Safety
/// `array` is valid for reads and writes; `data` is its memory.
#[inline(always)]
pub unsafe fn share<M: Managed>(
    array: &mut ArrowArray,
    data: *mut std::ffi::c_void,
    dtype: DLDataType,
    device: DLDevice,
    dims: (&[i64], &[i64]),
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

/// A new tensor of `dims` whose data, at `data` on `device`, belongs to
/// the array `keeper` holds (read-only, as a share): it takes a share of
/// it, released when the tensor is deleted.
///
/// # Safety
/// `data` is the kept array's memory.
pub unsafe fn share_kept<M: Managed>(
    kept: &Arc<Kept>,
    data: *mut std::ffi::c_void,
    dtype: DLDataType,
    device: DLDevice,
    dims: (&[i64], &[i64]),
) -> Result<NonNull<M>, Error> {
    let kept = Data::Kept(kept.clone());
    build(dims, dtype, device, kept, Some(data)).map(|(t, _)| t)
}

/// A new host tensor of `dims` owning `len` bytes of its own (64-byte
/// aligned, uninitialized), marked copied and writable; returns it and
/// its bytes, which the caller fills before handing the tensor out.
/// The bytes are in page-locked memory when `pinned` (the tensor's device
/// is then kDLCUDAHost 0, which the host reads as its own and a CUDA
/// device reads by DMA).
pub fn own<M: Managed>(
    dtype: DLDataType,
    dims: &Dims,
    len: usize,
    pinned: bool,
) -> Result<(NonNull<M>, *mut u8), Error> {
    let dims = (dims.shape(), dims.strides());
    if !pinned {
        let cpu = DLDevice {
            device_type: crate::abi::K_DL_CPU,
            device_id: 0,
        };
        return build(dims, dtype, cpu, Data::Owned { len, alloc: 0 }, None);
    }
    let host = DLDevice {
        device_type: crate::abi::K_DL_CUDA_HOST,
        device_id: 0,
    };
    let bytes = crate::pinned::alloc(len)?;
    match build(dims, dtype, host, Data::Pinned(bytes), None) {
        Ok((t, _)) => Ok((t, bytes)),
        Err(e) => {
            // SAFETY: allocated above, not handed out.
            unsafe { crate::pinned::free(bytes) };
            Err(e)
        }
    }
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
    // SAFETY: `managed` is the first field of a live `Owner<M>`, whose
    // data is released (or its share dropped) here once; the allocation
    // is freed below, never dropped again.
    let (ndim, own) = unsafe {
        let own = match &mut (*owner).data {
            Data::Shared(array) => {
                // The producer's array, moved in, released once.
                array.release_once();
                None
            }
            // This tensor's share goes; the last one releases the array.
            Data::Kept(kept) => {
                ptr::drop_in_place(kept);
                None
            }
            Data::Owned { len, alloc } => Some((*len, *alloc)),
            Data::Pinned(p) => {
                crate::pinned::free(*p);
                None
            }
        };
        ((*owner).ndim, own)
    };
    let base = NonNull::new(owner.cast::<u8>()).expect("a live owner");
    // The layouts were valid when the owner was built with these sizes.
    match own {
        // A copy's allocation (perhaps a recycled, larger one): kept for
        // the next copy when large.
        Some((len, size)) => {
            let (layout, _) = layout::<M>(ndim, len).expect("the owner's own layout");
            recycle::give(base, size, layout.align());
        }
        // SAFETY: allocated by `build`, freed once.
        None => unsafe { free(owner.cast()) },
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
    use std::alloc::Layout;
    use std::ptr::NonNull;
    use std::sync::Mutex;

    use super::free;

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
            // SAFETY: allocated by `build`, owned by no one else.
            unsafe { free(b.base.as_ptr()) };
        }
    }

    /// Frees the kept allocation.
    pub extern "C" fn clear() {
        if let Some(b) = slot().take() {
            // SAFETY: as in `give`.
            unsafe { free(b.base.as_ptr()) };
        }
    }

    /// Run when the library is unloaded or the process exits (after
    /// `atexit` handlers, before valgrind's leak check).
    #[cfg(target_os = "linux")]
    #[used]
    #[unsafe(link_section = ".fini_array")]
    static CLEAR_AT_EXIT: extern "C" fn() = clear;
}

/// One 1-D tensor of a [`Pair`]: the tensor and its shape and stride.
#[repr(C)]
struct Half<M> {
    managed: M,
    shape: i64,
    stride: i64,
}

/// Two 1-D tensors sharing one moved array, in one allocation (each
/// tensor's `manager_ctx` points at it): as fast as one plain export per
/// tensor, where two owners and an [`Arc`] cost three allocations.
#[repr(C)]
struct Pair<M> {
    halves: [Half<M>; 2],
    /// Tensors not deleted yet.
    live: AtomicUsize,
    array: ArrowArray,
}

/// One tensor of [`share_pair`]: its data, dtype and length.
pub struct PairPart {
    pub data: *mut std::ffi::c_void,
    pub dtype: DLDataType,
    pub length: i64,
}

/// Moves `array` into two new 1-D tensors, `parts`, both read-only views
/// of its memory, in one allocation; the caller's `release` becomes NULL.
/// The array is released when both are deleted, in either order.
///
/// # Safety
/// `array` is valid for reads and writes; each part's data is its memory.
#[inline(always)]
pub unsafe fn share_pair<M: Managed>(
    array: &mut ArrowArray,
    parts: [PairPart; 2],
    device: DLDevice,
) -> Result<[NonNull<M>; 2], Error> {
    let layout = Layout::new::<Pair<M>>();
    let Some(base) = NonNull::new(allocate(layout)) else {
        return Err(allocation_failed(layout.size()));
    };
    let pair = base.cast::<Pair<M>>().as_ptr();
    // SAFETY: a fresh allocation of the pair's layout: every field is
    // written before a tensor is handed out; the array is moved in (a
    // bitwise copy, the caller's disarmed).
    unsafe {
        ptr::addr_of_mut!((*pair).live).write(AtomicUsize::new(2));
        ptr::addr_of_mut!((*pair).array).write(ptr::read(array));
        array.release = None;
        for (k, part) in parts.into_iter().enumerate() {
            let half = ptr::addr_of_mut!((*pair).halves[k]);
            ptr::addr_of_mut!((*half).shape).write(part.length);
            ptr::addr_of_mut!((*half).stride).write(1);
            let dl_tensor = DLTensor {
                data: part.data,
                device,
                ndim: 1,
                dtype: part.dtype,
                shape: ptr::addr_of_mut!((*half).shape),
                strides: ptr::addr_of_mut!((*half).stride),
                byte_offset: 0,
            };
            ptr::addr_of_mut!((*half).managed).write(M::new(
                dl_tensor,
                pair.cast(),
                delete_half::<M>,
                DLPACK_FLAG_BITMASK_READ_ONLY,
            ));
        }
        let first = NonNull::new_unchecked(ptr::addr_of_mut!((*pair).halves[0].managed));
        let second = NonNull::new_unchecked(ptr::addr_of_mut!((*pair).halves[1].managed));
        Ok([first, second])
    }
}

/// The deleter of a [`Pair`]'s tensors: the second to run releases the
/// array and frees the pair. Callable from any thread, once per tensor.
///
/// # Safety
/// `managed` is NULL or a tensor of [`share_pair`] with the same `M`, not
/// deleted yet.
unsafe extern "C" fn delete_half<M: Managed>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    // SAFETY: a live tensor of a pair, whose context is the pair.
    let pair = unsafe { (*managed).manager_ctx() }.cast::<Pair<M>>();
    // SAFETY: the pair lives until both tensors are deleted.
    let live = unsafe { &(*pair).live };
    // A count of 1 seen with `Acquire` means the other tensor is deleted
    // (its `Release` decrement is the write seen): nothing else touches
    // the pair, so the last deleter skips the locked decrement, the
    // dearest instruction of the cycle. Otherwise `AcqRel`: the last
    // deleter sees every write the other made before its own.
    if live.load(Ordering::Acquire) != 1 && live.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    // SAFETY: the last tensor: the array, moved in, is released once and
    // the allocation, from `allocate`, freed once.
    unsafe {
        (*ptr::addr_of_mut!((*pair).array)).release_once();
        free(pair.cast());
    }
}

/// A finished tensor held for any number of consumers, each given a
/// [`view`] of it: deleted when the holder and every view are gone (the
/// Python exporter's: a value consumed any number of times).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub struct Handed(NonNull<DLManagedTensorVersioned>);

// SAFETY: the tensor is only read (its fields, to copy into views) and
// deleted once, by whichever thread drops the last share; DLPack deleters
// may run on any thread.
unsafe impl Send for Handed {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for Handed {}

#[cfg_attr(not(feature = "python"), allow(dead_code))]
impl Handed {
    /// Holds `tensor` (owned from here on).
    pub fn new(tensor: NonNull<DLManagedTensorVersioned>) -> Arc<Handed> {
        Arc::new(Handed(tensor))
    }

    /// The held tensor, to read.
    pub fn tensor(&self) -> &DLManagedTensorVersioned {
        // SAFETY: live while held.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        // SAFETY: owned here, the last share: deleted once.
        unsafe { crate::managed::delete(self.0) };
    }
}

/// Dimensions a view holds inline; more take a heap block.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
const VIEW_DIMS: usize = 8;

/// A view's one allocation: the managed tensor (first: its address is the
/// view's), its shape and strides, and its share of the tensor it views.
#[repr(C)]
struct View<M> {
    managed: M,
    dims: [i64; 2 * VIEW_DIMS],
    more: Option<Box<[i64]>>,
    owner: Arc<Handed>,
}

/// A new managed tensor of flavour `M` viewing `owner`'s tensor: the same
/// data, device, dtype, shape, strides and byte offset (and, 1.x, flags),
/// its own shape and strides arrays, a share of `owner` released by its
/// deleter. Legacy views of a 1.x tensor lose only its flags.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub fn view<M: Managed>(owner: &Arc<Handed>) -> NonNull<M> {
    let t = &owner.tensor().dl_tensor;
    let ndim = usize::try_from(t.ndim).unwrap_or(0);
    let raw = Box::into_raw(Box::new(View {
        managed: M::new(
            DLTensor {
                data: t.data,
                device: t.device,
                ndim: t.ndim,
                dtype: t.dtype,
                shape: ptr::null_mut(),
                strides: ptr::null_mut(),
                byte_offset: t.byte_offset,
            },
            ptr::null_mut(),
            delete_view::<M>,
            owner.tensor().flags,
        ),
        dims: [0; 2 * VIEW_DIMS],
        more: (ndim > VIEW_DIMS).then(|| vec![0; 2 * ndim].into_boxed_slice()),
        owner: owner.clone(),
    }));
    // SAFETY: just made and ours alone; every pointer below is derived
    // from `raw`, after the box gave the allocation up (a pointer taken
    // from the box before would be invalidated by that move). The held
    // tensor's shape and strides hold `ndim` entries when not NULL (its
    // producer's promise; the library's own tensors always do).
    unsafe {
        let half = ndim.max(VIEW_DIMS);
        let base: *mut i64 = match &mut (*raw).more {
            Some(more) => more.as_mut_ptr(),
            None => ptr::addr_of_mut!((*raw).dims).cast(),
        };
        let (shape, strides) = (base, base.add(half));
        let has_shape = ndim > 0 && !t.shape.is_null();
        if has_shape {
            ptr::copy_nonoverlapping(t.shape, shape, ndim);
        }
        let has_strides = ndim > 0 && !t.strides.is_null();
        if has_strides {
            ptr::copy_nonoverlapping(t.strides, strides, ndim);
        }
        let dl = (*raw).managed.dl_tensor_mut();
        dl.shape = if ndim > 0 { shape } else { ptr::null_mut() };
        dl.strides = if has_strides {
            strides
        } else {
            ptr::null_mut()
        };
        NonNull::new_unchecked(raw.cast::<M>())
    }
}

/// The deleter of a view: frees its allocation and its share.
///
/// # Safety
/// `tensor` is a live view made by [`view`], deleted once.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
unsafe extern "C" fn delete_view<M: Managed>(tensor: *mut M) {
    if tensor.is_null() {
        return;
    }
    // SAFETY: a view's managed tensor is its allocation's first field
    // (`repr(C)`), made by `Box::into_raw` in `view`.
    drop(unsafe { Box::from_raw(tensor.cast::<View<M>>()) });
}

#[cfg(test)]
mod tests {
    #[test]
    fn views_share_the_data_and_the_last_of_them_deletes_it() {
        use crate::abi::{DLManagedTensor, DLManagedTensorVersioned};
        let mut dims = Dims::new();
        dims.push(3).unwrap();
        dims.push(2).unwrap();
        dims.set_row_major_strides().unwrap();
        let (tensor, dst) =
            own::<DLManagedTensorVersioned>(crate::dtype::INT32.dl, &dims, 24, false).unwrap();
        // SAFETY: the tensor's own 24 bytes.
        unsafe { dst.cast::<i32>().write(7) };
        let held = Handed::new(tensor);
        let a = view::<DLManagedTensorVersioned>(&held);
        let b = view::<DLManagedTensor>(&held);
        drop(held);
        // SAFETY: live views, read then deleted once each, in either order.
        unsafe {
            let (ta, tb) = (&a.as_ref().dl_tensor, &b.as_ref().dl_tensor);
            assert_eq!(ta.data, tb.data);
            assert_eq!(ta.data.cast::<i32>().read(), 7);
            for t in [ta, tb] {
                assert_eq!(std::slice::from_raw_parts(t.shape, 2), &[3, 2]);
                assert_eq!(std::slice::from_raw_parts(t.strides, 2), &[2, 1]);
            }
            assert!(
                a.as_ref().flags & DLPACK_FLAG_BITMASK_IS_COPIED != 0,
                "the held tensor's flags"
            );
            crate::managed::delete(b);
            assert_eq!(
                a.as_ref().dl_tensor.data.cast::<i32>().read(),
                7,
                "alive while a view is"
            );
            crate::managed::delete(a);
        }
    }

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
            let (t, bytes) =
                own::<DLManagedTensorVersioned>(F64, &d, n as usize * 8, false).unwrap();
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
        let (t, bytes) = own::<DLManagedTensor>(F64, &dims(&[2]), 16, false).unwrap();
        // SAFETY: as for the block above, a live tensor made above, its bytes `n * 8` long.
        unsafe {
            bytes.cast::<[f64; 2]>().write([1.0, 2.0]);
            crate::managed::delete(t);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "recycling is off under Miri")]
    fn a_large_copy_reuses_the_last_freed_allocation() {
        let d = dims(&[1 << 18]); // 2 MiB of float64
        let (t, first) = own::<DLManagedTensorVersioned>(F64, &d, 8 << 18, false).unwrap();
        // SAFETY: live, deleted once.
        unsafe { crate::managed::delete(t) };
        let (t, again) = own::<DLManagedTensorVersioned>(F64, &d, 8 << 18, false).unwrap();
        // (No other unit test makes a copy of a megabyte or more.)
        assert_eq!(again, first, "the freed block reused");
        // A size twice as large never takes a block it does not fit.
        let big = dims(&[1 << 19]);
        let (u, other) = own::<DLManagedTensorVersioned>(F64, &big, 8 << 19, false).unwrap();
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
        let e = own::<DLManagedTensorVersioned>(F64, &dims(&[1]), isize::MAX as usize, false)
            .unwrap_err();
        assert_eq!(e.status(), crate::Status::ARROW_DLPACK_OUT_OF_MEMORY);
    }
}
