//! The split of a copy over threads.
//!
//! A copy that writes more than [`MIN_BYTES`] is cut into contiguous row
//! ranges (a wide column-major matrix: ranges of whole columns,
//! [`split_column_major`]), each written by one thread with the same
//! kernel that writes a whole tensor: the bytes are the same whatever the
//! thread count, because every kernel writes any block on its own
//! ([`super::layout`], [`super::jagged`], [`super::gather`]).
//!
//! The threads are the calling thread and the workers of one pool, started
//! at the first parallel copy and kept, blocked, for the next: a copy of a
//! few megabytes takes less time than starting a thread. No crate: a pool
//! of a few threads that run one job at a time is a hundred lines, and
//! rayon's global pool is not fork-safe (a child inherits its state but
//! not its threads, and hangs at its first parallel call).
//!
//! **Fork safety.** The pool remembers the process that made it. A forked
//! child (PyTorch `DataLoader` workers, `multiprocessing` with fork,
//! `os.fork`) has the pool's memory but none of its threads, and perhaps
//! a lock a parent thread held at the fork: it never touches that pool
//! and makes its own, its workers started at its first parallel copy.
//!
//! **Concurrency.** One job at a time: a caller that finds the pool busy
//! (another thread of the program copying) copies on its own thread, so
//! that concurrent copies never wait for each other nor oversubscribe the
//! cores.
//!
//! **How many.** `options.threads` for one call; otherwise
//! [`set_default`] (Python `arrow_dlpack.set_threads`), otherwise the
//! environment variable `ARROW_DLPACK_THREADS` (read once, at the first
//! copy that asks), otherwise the machine's cores, at most
//! [`MAX_DEFAULT`]. 1 is the calling thread only.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

/// Bytes below which a copy runs on the calling thread: waking workers
/// costs about as much as they would save.
pub const MIN_BYTES: usize = 1 << 20;

/// Bytes each task writes at least: tasks are a few times the threads, so
/// that a slow thread (a busy core) holds up little.
const MIN_TASK_BYTES: usize = 256 << 10;

/// Tasks per thread, where the copy is large enough.
const TASKS_PER_THREAD: usize = 4;

/// Row ranges start at multiples of this many rows (but the last), so that
/// two threads seldom write the same cache line.
const ROW_ALIGN: usize = 64;

/// The default count's ceiling: more rarely helps a memory-bound copy.
pub const MAX_DEFAULT: usize = 8;

/// The most threads a copy uses, whatever is asked.
pub const MAX: usize = 256;

/// [`set_default`]'s count; 0: none set.
static CHOSEN: AtomicUsize = AtomicUsize::new(0);

/// Sets the thread count of copies that do not give one (0: back to the
/// environment variable or the machine's cores).
pub fn set_default(threads: usize) {
    CHOSEN.store(threads.min(MAX), Ordering::Relaxed);
}

/// Whether the default count was chosen: by [`set_default`], or by
/// `ARROW_DLPACK_THREADS` (a positive number).
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
pub fn chosen() -> bool {
    CHOSEN.load(Ordering::Relaxed) != 0
        || std::env::var("ARROW_DLPACK_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > 0)
}

/// The thread count of copies that do not give one.
pub fn default_count() -> usize {
    match CHOSEN.load(Ordering::Relaxed) {
        0 => from_environment(),
        n => n,
    }
}

/// `ARROW_DLPACK_THREADS` (a positive number), else the machine's cores,
/// at most [`MAX_DEFAULT`]; read once.
fn from_environment() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let set = std::env::var("ARROW_DLPACK_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0);
        match set {
            Some(n) => n.min(MAX),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_DEFAULT),
        }
    })
}

/// The threads a copy runs on: `requested`, or the default when 0.
pub fn resolve(requested: usize) -> usize {
    match requested {
        0 => default_count(),
        n => n.min(MAX),
    }
}

/// A copy's destination, shared by the threads that write its disjoint
/// row ranges.
#[derive(Clone, Copy)]
pub struct Dst(pub *mut u8);

// SAFETY: each thread writes only its own rows' bytes (the kernels'
// contract), so no byte is written by two threads or read while written.
unsafe impl Sync for Dst {}

impl Dst {
    /// The pointer (a method, so that a closure captures the whole
    /// `Dst`, not its field).
    pub fn get(self) -> *mut u8 {
        self.0
    }
}

/// Memory a copy's threads read (written before the split, never during).
#[derive(Clone, Copy)]
pub struct Src(pub *const u8);

// SAFETY: only read while shared.
unsafe impl Sync for Src {}

impl Src {
    /// The pointer, as [`Dst::get`].
    pub fn get(self) -> *const u8 {
        self.0
    }
}

/// Calls `f` on contiguous ranges that cover `0..rows` exactly once, on up
/// to `threads` threads (the calling one among them), each range written
/// by one thread; on the calling thread alone when the copy writes less
/// than [`MIN_BYTES`] (`rows * row_bytes`) or `threads` is 1. Returns when
/// every range is written. A panic in `f` is raised here, after the other
/// ranges finished.
pub fn split(rows: usize, row_bytes: usize, threads: usize, f: impl Fn(Range<usize>) + Sync) {
    let tasks = tasks(rows.saturating_mul(row_bytes), threads).min(rows);
    cut(rows, tasks, ROW_ALIGN, threads, &f);
}

/// As [`split`], for a copy whose output is column after column (`rows`
/// x `columns` elements of `element` bytes): calls `f(rows, columns)` on
/// blocks that cover the matrix exactly once. Whole columns where there
/// are at least as many columns as tasks, else row ranges of every
/// column.
///
/// Whole columns, because each task then writes (and reads) long runs:
/// cut by rows, a wide table's runs are short (1,000 columns of 8,388
/// rows in 8 tasks: 8 KiB each), and two threads copying those ran no
/// faster than one (polars' `to_numpy(order="fortran")` also copies whole
/// columns; the two splits compared: docs/benchmarks.md, "Measured
/// decisions").
pub fn split_column_major(
    rows: usize,
    columns: usize,
    element: usize,
    threads: usize,
    f: impl Fn(Range<usize>, Range<usize>) + Sync,
) {
    let bytes = rows.saturating_mul(columns).saturating_mul(element);
    let tasks = tasks(bytes, threads);
    match columns >= tasks {
        true => cut(columns, tasks, 1, threads, &|c| f(0..rows, c)),
        false => cut(rows, tasks.min(rows), ROW_ALIGN, threads, &|r| {
            f(r, 0..columns)
        }),
    }
}

/// How many tasks a copy of `bytes` on `threads` threads is cut into: 1
/// (the calling thread alone) below [`MIN_BYTES`] or on one thread; else
/// [`TASKS_PER_THREAD`] a thread, each at least [`MIN_TASK_BYTES`], and
/// at least 2.
fn tasks(bytes: usize, threads: usize) -> usize {
    match threads <= 1 || bytes < MIN_BYTES {
        true => 1,
        false => (threads * TASKS_PER_THREAD)
            .min(bytes / MIN_TASK_BYTES)
            .max(2),
    }
}

/// Calls `f` on `tasks` contiguous ranges that cover `0..units` exactly
/// once (on this thread alone for fewer than 2), run on up to `threads`
/// threads; each range starts at a multiple of `align` where there are
/// enough units for it.
fn cut(
    units: usize,
    tasks: usize,
    align: usize,
    threads: usize,
    f: &(dyn Fn(Range<usize>) + Sync),
) {
    if tasks < 2 {
        return f(0..units);
    }
    // Cut `t` of `tasks + 1`: an even share, rounded down to whole
    // `align` units where there are enough units for it. Cuts never
    // decrease, the first is 0 and the last `units`: the ranges between
    // them cover every unit once (some may be empty).
    let align = match units >= align.saturating_mul(tasks) {
        true => align,
        false => 1,
    };
    let cut = |t: usize| match t >= tasks {
        true => units,
        // `units * t` fits in u128 (both below 2^64).
        false => (units as u128 * t as u128 / tasks as u128) as usize / align * align,
    };
    run(tasks, threads, &|t: usize| {
        let r = cut(t)..cut(t + 1);
        if !r.is_empty() {
            f(r);
        }
    });
}

/// Runs `task(0..tasks)` on up to `threads` threads; see [`split`].
fn run(tasks: usize, threads: usize, task: &(dyn Fn(usize) + Sync)) {
    let pool = Pool::get();
    if pool
        .busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Another copy has the pool: this one runs here, alone.
        return (0..tasks).for_each(task);
    }
    let helpers = pool.ensure_workers(threads.min(tasks) - 1);
    // SAFETY: only the lifetime is erased: the job's tasks are all run
    // before this function returns (it waits for them below), and no one
    // calls `task` once they are (a worker late to the job finds no task
    // left: `claim` returns None).
    let task: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(task) };
    let job = Arc::new(Job {
        task,
        tasks,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        seats: helpers,
        joined: AtomicUsize::new(0),
        finished: Mutex::new(false),
        all_done: Condvar::new(),
        panic: Mutex::new(None),
    });
    if helpers > 0 {
        let mut state = pool.lock();
        state.job = Some(job.clone());
        state.generation += 1;
        drop(state);
        pool.wake.notify_all();
    }
    job.work();
    job.wait();
    pool.lock().job = None;
    if cfg!(miri) {
        // Miri runs no `.fini_array` and fails a program whose threads
        // outlive it: there, the workers end with each job (the pool is
        // still this caller's: no one else starts or joins them).
        pool.stop_workers();
        pool.lock().stop = false;
    }
    pool.busy.store(false, Ordering::Release);
    let panic = job.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
}

/// One parallel copy: tasks claimed in order by whoever is free.
struct Job {
    task: &'static (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Workers that may join (the rest of the pool sleeps on).
    seats: usize,
    joined: AtomicUsize,
    finished: Mutex<bool>,
    all_done: Condvar,
    /// The first panic of a task, raised by the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Job {
    /// Runs tasks until none is left.
    fn work(&self) {
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= self.tasks {
                return;
            }
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (self.task)(t))) {
                let mut panic = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                panic.get_or_insert(payload);
            }
            // `AcqRel`: the last task's finisher sees every task's writes,
            // and the caller, woken by it, too.
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.tasks {
                *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
                self.all_done.notify_all();
            }
        }
    }

    /// Waits until every task is done.
    fn wait(&self) {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        while !*finished {
            finished = self
                .all_done
                .wait(finished)
                .unwrap_or_else(|e| e.into_inner());
        }
        // Pairs with the finishers' `AcqRel`.
        std::sync::atomic::fence(Ordering::Acquire);
    }
}

/// The workers and the job they are woken for.
struct Pool {
    /// The process that made the pool (and its threads).
    pid: u32,
    state: Mutex<State>,
    wake: Condvar,
    /// A caller holds the pool.
    busy: AtomicBool,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

struct State {
    job: Option<Arc<Job>>,
    /// Bumped for each job, and at shutdown.
    generation: u64,
    stop: bool,
}

/// The pool of this process; NULL until the first parallel copy.
static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

impl Pool {
    /// This process's pool, made if needed (a forked child's first call
    /// makes its own: see the module's notes).
    fn get() -> &'static Pool {
        let pid = std::process::id();
        loop {
            let current = POOL.load(Ordering::Acquire);
            // SAFETY: a pool, once published, is freed only at exit
            // (`shutdown`), after which no copy runs.
            if let Some(pool) = unsafe { current.as_ref() } {
                if pool.pid == pid {
                    return pool;
                }
            }
            // The parent's pool, if any, stays as it is (leaked in this
            // process: its threads are not here, its locks may be held).
            let fresh = Box::into_raw(Box::new(Pool {
                pid,
                state: Mutex::new(State {
                    job: None,
                    generation: 0,
                    stop: false,
                }),
                wake: Condvar::new(),
                busy: AtomicBool::new(false),
                handles: Mutex::new(Vec::new()),
            }));
            match POOL.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
                // SAFETY: just published; lives until `shutdown`.
                Ok(_) => return unsafe { &*fresh },
                // Another thread made one first: ours was never shared.
                // SAFETY: allocated above, not published.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is as good.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts workers until there are `n` (or as many as the system
    /// lets); returns how many there are, at most `n`.
    fn ensure_workers(&'static self, n: usize) -> usize {
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        while handles.len() < n {
            let spawned = std::thread::Builder::new()
                .name("arrow-dlpack".into())
                .stack_size(256 << 10)
                .spawn(move || self.serve());
            match spawned {
                Ok(h) => handles.push(h),
                Err(_) => break, // fewer threads: the same bytes
            }
        }
        handles.len().min(n)
    }

    /// Stops and joins the workers.
    fn stop_workers(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }

    /// A worker: sleeps until a job (or the shutdown) is announced, joins
    /// it if a seat is left, repeats.
    fn serve(&self) {
        let mut seen = 0;
        loop {
            let job = {
                let mut state = self.lock();
                while state.generation == seen && !state.stop {
                    state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.stop {
                    return;
                }
                seen = state.generation;
                state.job.clone()
            };
            if let Some(job) = job {
                if job.joined.fetch_add(1, Ordering::Relaxed) < job.seats {
                    job.work();
                }
            }
        }
    }
}

/// Stops and joins this process's workers and frees the pool: at exit or
/// when the library is unloaded, so that no thread runs code that goes
/// away and leak checkers see nothing left.
extern "C" fn shutdown() {
    let pool = POOL.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if pool.is_null() {
        return;
    }
    // SAFETY: unpublished above; the last reference.
    let pool = unsafe { Box::from_raw(pool) };
    if pool.pid != std::process::id() {
        // A forked child's copy of its parent's pool: no threads to join
        // (and their handles name threads of another process).
        std::mem::forget(pool);
        return;
    }
    pool.stop_workers();
}

/// Run when the library is unloaded or the process exits.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".fini_array")]
static SHUTDOWN_AT_EXIT: extern "C" fn() = shutdown;

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of the tests' parallel splits: few under Miri, which
    /// interprets every row's atomic add (the bytes per row, which no test
    /// writes, keep the split parallel: over [`MIN_BYTES`]).
    const ROWS: usize = if cfg!(miri) { 512 } else { 1 << 16 };
    const ROW_BYTES: usize = (2 * MIN_BYTES).div_ceil(ROWS);

    /// Which thread wrote each row, and how often.
    fn cover(rows: usize, row_bytes: usize, threads: usize) -> Vec<u32> {
        let seen: Vec<AtomicUsize> = (0..rows).map(|_| AtomicUsize::new(0)).collect();
        split(rows, row_bytes, threads, |r| {
            for i in r {
                seen[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        seen.iter()
            .map(|s| s.load(Ordering::Relaxed) as u32)
            .collect()
    }

    #[test]
    fn every_row_is_written_once_whatever_the_split() {
        // Odd counts too: rows that do not split evenly, nor into whole
        // `ROW_ALIGN` blocks.
        let many = if cfg!(miri) { 1003 } else { 100_003 };
        // Under Miri, which interprets every thread's start, stop and
        // atomic add: one, two and an odd count of threads (the
        // ThreadSanitizer run takes them all).
        let counts: &[usize] = match cfg!(miri) {
            true => &[1, 2, 5],
            false => &[1, 2, 3, 4, 5, 6, 7, 8],
        };
        for (rows, row_bytes) in [
            (0, 8),
            (1, 1 << 21),
            (2, 1 << 20),
            (1000, 4096),
            (many, (8 * MIN_BYTES).div_ceil(many)),
        ] {
            for &threads in counts {
                let seen = cover(rows, row_bytes, threads);
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "{rows} x {row_bytes} on {threads}"
                );
            }
        }
    }

    #[test]
    fn a_column_major_split_covers_every_cell_once_by_whole_columns_when_wide() {
        // Few cells under Miri, which interprets every atomic add.
        let wide = if cfg!(miri) {
            (2, 40)
        } else {
            (ROWS / 64, 1000)
        };
        // (rows, columns, cut by whole columns on 2 or more threads)
        for (rows, columns, whole) in [
            (0, 0, true),
            (1, 40, true),
            (ROWS, 3, false),
            (wide.0, wide.1, true),
            (ROWS, 1, false),
        ] {
            let cells = rows * columns;
            let element = (2 * MIN_BYTES).div_ceil(cells.max(1));
            // Under Miri, each job starts and stops its workers.
            let counts: &[usize] = match cfg!(miri) {
                true => &[1, 2, 5],
                false => &[1, 2, 3, 4, 5, 6, 7, 8],
            };
            for &threads in counts {
                let seen: Vec<AtomicUsize> = (0..cells).map(|_| AtomicUsize::new(0)).collect();
                let (by_rows, by_columns) = (AtomicBool::new(false), AtomicBool::new(false));
                split_column_major(rows, columns, element, threads, |r, c| {
                    by_rows.fetch_or(r != (0..rows), Ordering::Relaxed);
                    by_columns.fetch_or(c != (0..columns), Ordering::Relaxed);
                    for j in c {
                        for i in r.clone() {
                            seen[j * rows + i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                let at = format!("{rows} x {columns} on {threads}");
                assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "{at}");
                let (by_rows, by_columns) = (by_rows.into_inner(), by_columns.into_inner());
                assert!(!(by_rows && by_columns), "{at}: blocks of both");
                if threads > 1 && cells > 1 {
                    assert_eq!((by_columns, by_rows), (whole, !whole), "{at}");
                }
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // sleeps
    fn the_work_runs_on_several_threads() {
        // The pool may be another test's at the moment (then this copy runs
        // on its own thread, by design): try until it is ours.
        for _ in 0..100 {
            let ids = Mutex::new(std::collections::HashSet::new());
            split(ROWS, ROW_BYTES, 4, |_| {
                ids.lock().unwrap().insert(std::thread::current().id());
                // Slow tasks: the workers wake before the caller is done.
                std::thread::sleep(std::time::Duration::from_millis(5));
            });
            if ids.lock().unwrap().len() >= 2 {
                return;
            }
        }
        panic!("every copy ran on one thread");
    }

    #[test]
    fn a_panic_in_a_task_reaches_the_caller_and_the_pool_stays_usable() {
        let caught = catch_unwind(|| {
            split(ROWS, ROW_BYTES, 4, |r| {
                if r.contains(&(ROWS / 2 + 1)) {
                    panic!("task");
                }
            })
        });
        assert!(caught.is_err());
        assert!(cover(ROWS, ROW_BYTES, 4).iter().all(|&n| n == 1));
    }

    #[test]
    fn concurrent_callers_each_get_every_row() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..if cfg!(miri) { 3 } else { 20 } {
                        assert!(cover(ROWS, ROW_BYTES, 3).iter().all(|&n| n == 1));
                    }
                });
            }
        });
    }

    #[test]
    fn the_count_resolves_from_the_call_then_the_default() {
        assert_eq!(resolve(3), 3);
        assert_eq!(resolve(100_000), MAX);
        set_default(2);
        assert_eq!(resolve(0), 2);
        set_default(0);
        assert!(resolve(0) >= 1);
    }
}
