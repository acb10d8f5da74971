//! Releasing what a producer handed over, in one place: the producer's
//! `release` callback, called once, and the struct marked released after
//! it (the callback sets `release` to NULL itself; the library does too,
//! so a callback that forgets cannot lead to a second call).

use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};

/// An Arrow C struct that is released through its own callback.
pub trait Release {
    /// Calls the struct's `release` callback if it is live, then marks it
    /// released; a released struct is left as it is.
    ///
    /// # Safety
    /// The struct is live or released (a live one is the caller's to
    /// release: handed over by its producer, or moved in, and not moved
    /// out since), and its callback follows the C Data Interface.
    unsafe fn release_once(&mut self);
}

macro_rules! release_through_callback {
    ($($ty:ty),*) => {$(
        impl Release for $ty {
            unsafe fn release_once(&mut self) {
                if let Some(release) = self.release {
                    // SAFETY: the producer's callback, on its live struct,
                    // once (`release_once`'s contract): marked released
                    // right after.
                    unsafe { release(self) };
                    self.release = None;
                }
            }
        }
    )*};
}

release_through_callback!(ArrowArray, ArrowSchema, ArrowArrayStream);
