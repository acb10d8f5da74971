//! Concurrency: two threads export and delete a million tensors each while
//! a third deletes tensors exported on the others. Every array is released
//! exactly once, and the heap ends where it started. The two tensors of a
//! jagged pair, deleted on two threads at once, release their array once.

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

/// Held by each test: the heap and release counts are the whole process's,
/// so the tests run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// A schema of `format` without children.
fn schema(format: &'static std::ffi::CStr) -> ArrowSchema {
    ArrowSchema {
        format: format.as_ptr(),
        name: ptr::null(),
        metadata: ptr::null(),
        flags: 0,
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    }
}

fn producer(n: usize, to_third: mpsc::Sender<SendPtr>) -> usize {
    static VALUES: [u64; 16] = [0; 16];
    let schema = schema(c"L");
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
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// A `list<int32>` array of two rows over `VALUES`, its release counted in
/// `counter`.
fn list_array(
    counter: &AtomicUsize,
    buffers: &mut [*const c_void; 2],
    child: &mut *mut ArrowArray,
) -> ArrowArray {
    ArrowArray {
        length: 2,
        null_count: 0,
        offset: 0,
        n_buffers: 2,
        n_children: 1,
        buffers: buffers.as_mut_ptr(),
        children: child,
        dictionary: ptr::null_mut(),
        release: Some(release),
        private_data: ptr::from_ref(counter).cast_mut().cast(),
    }
}

#[test]
fn jagged_halves_deleted_on_two_threads_release_each_array_once() {
    // Each jagged pair's offsets are deleted on another thread while this
    // one deletes the values: the two deleters race on the pair's count
    // (ThreadSanitizer runs this), and exactly one releases the array.
    static OFFSETS: [i32; 3] = [0, 3, 5];
    static VALUES: [i32; 5] = [1, 2, 3, 4, 5];
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = if cfg!(miri) { 20 } else { 100_000 };
    let item = schema(c"i");
    let mut item_ptr = ptr::from_ref(&item).cast_mut();
    let schema = ArrowSchema {
        n_children: 1,
        children: &mut item_ptr,
        ..schema(c"+l")
    };
    let mut child_buffers = [ptr::null::<c_void>(), VALUES.as_ptr().cast()];
    let mut child = ArrowArray {
        length: 5,
        null_count: 0,
        offset: 0,
        n_buffers: 2,
        n_children: 0,
        buffers: child_buffers.as_mut_ptr(),
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: None,
        private_data: ptr::null_mut(),
    };
    let mut child_ptr: *mut ArrowArray = &mut child;
    let mut buffers = [ptr::null::<c_void>(), OFFSETS.as_ptr().cast()];
    let counters: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    let released_before = RELEASES.load(Ordering::SeqCst);
    let (tx, rx) = mpsc::channel::<SendPtr>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for SendPtr(t) in rx {
                // SAFETY: a live tensor of a pair, deleted once.
                unsafe { ((*t).deleter.unwrap())(t) };
            }
        });
        for counter in &counters {
            let mut array = list_array(counter, &mut buffers, &mut child_ptr);
            let mut out = arrow_dlpack::capi::ArrowDlpackJagged {
                values: ptr::null_mut(),
                offsets: ptr::null_mut(),
            };
            // SAFETY: valid structs; the counters outlive the scope.
            let status = unsafe {
                arrow_dlpack::capi::arrow_dlpack_export_jagged(
                    &mut array,
                    &schema,
                    ptr::null(),
                    &mut out,
                    ptr::null_mut(),
                )
            };
            assert_eq!(status, arrow_dlpack::Status::ARROW_DLPACK_OK);
            // SAFETY: the shared pair: both views of the array's buffers.
            unsafe {
                assert_eq!(
                    (*out.offsets).dl_tensor.data,
                    OFFSETS.as_ptr().cast_mut().cast()
                );
                assert_eq!(
                    (*out.values).dl_tensor.data,
                    VALUES.as_ptr().cast_mut().cast()
                );
            }
            tx.send(SendPtr(out.offsets)).unwrap();
            // SAFETY: a live tensor, deleted once.
            unsafe { ((*out.values).deleter.unwrap())(out.values) };
        }
        drop(tx);
    });
    assert!(
        counters.iter().all(|c| c.load(Ordering::SeqCst) == 1),
        "every array released exactly once"
    );
    assert_eq!(RELEASES.load(Ordering::SeqCst) - released_before, n);
}
