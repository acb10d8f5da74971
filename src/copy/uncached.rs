//! Copies around the cache: non-temporal stores, for outputs too large to
//! stay in it.
//!
//! glibc's `memcpy` writes one copy larger than three quarters of the
//! last-level cache (its `x86_non_temporal_threshold`) with non-temporal
//! stores: they skip reading each destination line before overwriting it,
//! and leave the cache to other data. A tensor's copy reaches `memcpy` in
//! pieces (a column each, a chunk each), each below that size, so glibc
//! never makes that choice for them, whatever the whole copy's size.
//! [`worth_it`] makes it once for the whole output, by glibc's rule (with
//! the cache's size as Linux reports it: [`last_level_cache`]), and
//! [`copy`] applies it to each piece (the row-major tiles, which write
//! whole lines, store theirs so themselves: `transpose`). Below the
//! threshold nothing changes: a smaller output stays in the cache for its
//! consumer. What it gained: docs/benchmarks.md, "Measured decisions".

use std::sync::OnceLock;

/// Pieces smaller than this are copied by `memcpy` whatever the output:
/// a few lines gain nothing from bypassing the cache.
#[cfg(all(target_arch = "x86_64", not(miri)))]
const MIN_PIECE: usize = 4096;

/// Whether a copy writing `bytes` in all bypasses the cache: at least
/// three quarters of the last-level cache, as glibc decides for one
/// `memcpy`; never where the cache's size is unknown.
pub fn worth_it(bytes: usize) -> bool {
    bytes >= threshold()
}

/// The bytes from which a copy's output bypasses the cache (`worth_it`):
/// `usize::MAX` where the cache's size is unknown.
pub fn threshold() -> usize {
    static AT: OnceLock<usize> = OnceLock::new();
    *AT.get_or_init(|| match last_level_cache() {
        Some(bytes) if bytes > 0 => (bytes / 4).saturating_mul(3),
        _ => usize::MAX,
    })
}

/// The size of the last-level cache the calling CPU's data can stay in:
/// as Linux reports it for CPU 0 (from the CPU's cache topology), else as
/// `sysconf` does.
///
/// Not `sysconf` first: glibc 2.34 to 2.36 (Debian 12's) take the L3 size
/// on AMD from CPUID leaf 0x80000006, the whole package's, of which one
/// core reaches only its CCX's part. On the development machine (AMD EPYC
/// Genoa, in a VM) `sysconf` and glibc's own `x86_shared_cache_size`
/// tunable read 320 MiB, Linux 32 MiB; at 240 MiB, three quarters of the
/// former, a 64 MiB output (twice what the cache holds) would be written
/// through the cache.
fn last_level_cache() -> Option<usize> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        let caches = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok();
        let largest = caches
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let dir = entry.ok()?.path();
                let read = |name| std::fs::read_to_string(dir.join(name)).ok();
                let level: u32 = read("level")?.trim().parse().ok()?;
                let kind = read("type")?;
                let holds_data = kind.trim() != "Instruction";
                holds_data.then_some((level, size_of(&read("size")?)?))
            })
            .max();
        if let Some((_, bytes)) = largest {
            return Some(bytes);
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    {
        // SAFETY: sysconf has no preconditions; it returns 0 or -1 where
        // the size is unknown.
        let l3 = unsafe { libc::sysconf(libc::_SC_LEVEL3_CACHE_SIZE) };
        if l3 > 0 {
            return Some(l3 as usize);
        }
    }
    None
}

/// Bytes of a cache size as sysfs writes it: `32768K` (or a plain number,
/// or `M`); `None` for anything else.
#[cfg_attr(any(not(target_os = "linux"), miri), allow(dead_code))]
fn size_of(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'M']) {
        Some(digits) => (
            digits,
            if text.ends_with('K') {
                1 << 10
            } else {
                1 << 20
            },
        ),
        None => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// Copies `n` bytes from `src` to `dst` with non-temporal stores where the
/// CPU has AVX (whole 64-byte lines of the destination; its unaligned
/// head and tail through `memcpy`), else with `memcpy`. Returns once the
/// stores are ordered before any later store (`sfence`), so that a
/// thread's copy is complete when its job reports done.
///
/// # Safety
/// `src` is readable and `dst` writable for `n` bytes; they do not
/// overlap.
pub unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if n >= MIN_PIECE && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked); forwarded from the caller.
        return unsafe { copy_avx(src, dst, n) };
    }
    // SAFETY: `copy`'s caller promises it: `src` is readable and `dst` writable for `n` bytes;
    // they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) }
}

/// Orders the calling thread's non-temporal stores before any later
/// store: what a kernel writing with them calls before its job reports
/// done ([`copy`] does so itself).
pub fn fence() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `sfence` is SSE, which every x86_64 CPU has.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// [`copy`] with AVX non-temporal stores; `n >= 64`.
///
/// # Safety
/// As [`copy`]; the CPU has AVX.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx")]
unsafe fn copy_avx(src: *const u8, dst: *mut u8, n: usize) {
    use std::arch::x86_64::{__m256i, _mm_sfence, _mm256_loadu_si256, _mm256_stream_si256};
    // The head, up to the destination's next 64-byte line: `n >= 64`.
    let head = dst.align_offset(64).min(n);
    let lines = (n - head) / 64;
    // SAFETY: all offsets stay within the `n` bytes of both buffers
    // (caller's contract): `head + lines * 64 <= n`. The stores' addresses
    // are 32-byte aligned (64-byte aligned lines); the loads are
    // unaligned ones.
    unsafe {
        std::ptr::copy_nonoverlapping(src, dst, head);
        let (s, d) = (src.add(head), dst.add(head));
        for line in 0..lines {
            let (s, d) = (s.add(line * 64), d.add(line * 64));
            let a = _mm256_loadu_si256(s.cast::<__m256i>());
            let b = _mm256_loadu_si256(s.add(32).cast::<__m256i>());
            _mm256_stream_si256(d.cast::<__m256i>(), a);
            _mm256_stream_si256(d.add(32).cast::<__m256i>(), b);
        }
        let done = head + lines * 64;
        std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n - done);
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "Miri runs memcpy in place of the AVX stores")]
    fn every_size_and_alignment_copies_exactly_its_bytes() {
        let sizes = [0, 1, 63, 64, 65, 4095, 4096, 4097, 4160, 4161, 70_001];
        let source: Vec<u8> = (0..70_200u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut out = vec![0u8; 70_400];
        for n in sizes {
            for from in [0, 1, 31, 64] {
                for to in [0, 1, 17, 32, 63] {
                    out.fill(0xA5);
                    // SAFETY: in bounds of both vectors, which are
                    // distinct.
                    unsafe { copy(source.as_ptr().add(from), out.as_mut_ptr().add(to), n) };
                    let at = format!("{n} bytes, from {from} to {to}");
                    assert_eq!(&out[to..to + n], &source[from..from + n], "{at}");
                    assert!(out[..to].iter().all(|&b| b == 0xA5), "{at}: before");
                    assert!(out[to + n..].iter().all(|&b| b == 0xA5), "{at}: after");
                }
            }
        }
    }

    #[test]
    fn cache_sizes_read_as_sysfs_writes_them() {
        assert_eq!(size_of("32768K\n"), Some(32 << 20));
        assert_eq!(size_of("2M"), Some(2 << 20));
        assert_eq!(size_of("512"), Some(512));
        assert_eq!(size_of("K"), None);
        assert_eq!(size_of("-1K"), None);
        assert_eq!(size_of("18446744073709551615K"), None);
    }

    #[test]
    fn small_outputs_stay_in_the_cache() {
        assert!(!worth_it(64 << 10));
        assert!(!worth_it(0));
    }
}
