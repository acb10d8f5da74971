//! Concurrency: two threads export and delete a million tensors each while
//! a third deletes tensors exported on the others. Every array is released
//! exactly once, and the heap ends where it started.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::mpsc;

use arrow_dlpack::abi::*;
use arrow_dlpack::capi::arrow_dlpack_export_versioned;

/// Counts live heap bytes, to prove that the run leaks nothing.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static RELEASES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn release(array: *mut ArrowArray) {
    // SAFETY: called once on a live array; its private data counts releases
    // per array (each must go from 0 to 1, never to 2).
    unsafe {
        let per_array = &*(*array).private_data.cast::<AtomicUsize>();
        assert_eq!(
            per_array.fetch_add(1, Ordering::SeqCst),
            0,
            "released twice"
        );
        (*array).release = None;
    }
    RELEASES.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: a live schema.
    unsafe { (*schema).release = None };
}

struct SendPtr(*mut DLManagedTensorVersioned);
// SAFETY: tensors may be deleted from any thread (the contract under test).
unsafe impl Send for SendPtr {}

fn producer(n: usize, to_third: mpsc::Sender<SendPtr>) -> usize {
    static VALUES: [u64; 16] = [0; 16];
    let format = c"L";
    let schema = ArrowSchema {
        format: format.as_ptr(),
        name: ptr::null(),
        metadata: ptr::null(),
        flags: 0,
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    };
    let mut buffers = [ptr::null::<c_void>(), VALUES.as_ptr().cast()];
    // One release counter per array, kept for the final check.
    let counters: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    for (i, counter) in counters.iter().enumerate() {
        let mut array = ArrowArray {
            length: 16,
            null_count: 0,
            offset: 0,
            n_buffers: 2,
            n_children: 0,
            buffers: buffers.as_mut_ptr(),
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: Some(release),
            private_data: ptr::from_ref(counter).cast_mut().cast(),
        };
        // SAFETY: valid structs; the counters outlive every tensor (the
        // third thread finishes before this function returns its count).
        let t = unsafe { arrow_dlpack_export_versioned(&mut array, &schema, ptr::null_mut()) };
        assert!(!t.is_null() && array.release.is_none());
        if i % 3 == 0 {
            to_third.send(SendPtr(t)).unwrap();
        } else {
            // SAFETY: a live tensor, deleted once.
            unsafe { ((*t).deleter.unwrap())(t) };
        }
    }
    drop(to_third);
    // Wait until the third thread has released everything sent to it.
    while counters.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
        std::thread::yield_now();
    }
    assert!(counters.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    n
}

/// Exports `n` tensors on each of two threads, a third of them deleted by a
/// third thread; returns (exported, deleted by the third thread).
fn run(n: usize) -> (usize, usize) {
    let (tx, rx) = mpsc::channel::<SendPtr>();
    let third = std::thread::spawn(move || {
        let mut deleted = 0usize;
        for SendPtr(t) in rx {
            // SAFETY: a live tensor exported on another thread, deleted once.
            unsafe { ((*t).deleter.unwrap())(t) };
            deleted += 1;
        }
        deleted
    });
    let (tx_a, tx_b) = (tx.clone(), tx);
    let a = std::thread::spawn(move || producer(n, tx_a));
    let b = std::thread::spawn(move || producer(n, tx_b));
    let exported = a.join().unwrap() + b.join().unwrap();
    (exported, third.join().unwrap())
}

#[test]
fn concurrent_exports_and_deletes_release_everything_exactly_once() {
    let n = if cfg!(miri) { 50 } else { 1_000_000 };
    // A small round first: the runtime's lazily made, never freed state
    // (thread bookkeeping, channel machinery) is in place before measuring.
    run(30);
    let (before, released_before) = (LIVE.load(Ordering::SeqCst), RELEASES.load(Ordering::SeqCst));
    let (exported, deleted_by_third) = run(n);
    assert_eq!(exported, 2 * n);
    assert_eq!(deleted_by_third, 2 * n.div_ceil(3));
    assert_eq!(RELEASES.load(Ordering::SeqCst) - released_before, 2 * n);
    // Thread teardown (runtime bookkeeping of the three threads) may still
    // be returning its last bytes on a loaded machine: wait for it, boundedly.
    // A leak never comes back.
    for _ in 0..200 {
        if LIVE.load(Ordering::SeqCst) == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        before,
        "the heap is back where it started"
    );
}
