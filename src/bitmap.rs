//! Counting the set bits of an Arrow validity bitmap over any bit range.
//!
//! Used when a producer reports `null_count == -1`. The middle of the range
//! is counted a 64-bit word at a time; the instruction set is picked at run
//! time, because the default x86-64 target compiles `count_ones` without the
//! POPCNT instruction (several times slower than memory bandwidth).

/// Number of set bits among bits `[offset, offset + len)` of `bitmap`
/// (LSB-first, as Arrow numbers them).
pub fn count_set_bits(bitmap: &[u8], offset: usize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let end = offset + len;
    let (first, last) = (offset / 8, (end - 1) / 8);
    let head_mask = 0xffu8 << (offset % 8);
    let tail_mask = 0xffu8 >> (7 - (end - 1) % 8);
    if first == last {
        return (bitmap[first] & head_mask & tail_mask).count_ones() as usize;
    }
    let head = (bitmap[first] & head_mask).count_ones() as usize;
    let tail = (bitmap[last] & tail_mask).count_ones() as usize;
    head + tail + count_ones(&bitmap[first + 1..last])
}

/// Whether bit `i` (LSB-first) of `bitmap` is set.
///
/// # Safety
/// `bitmap` holds at least `i + 1` bits.
#[inline]
pub unsafe fn bit(bitmap: *const u8, i: usize) -> bool {
    // SAFETY: byte `i / 8` is inside the bitmap (caller's contract).
    unsafe { (*bitmap.add(i / 8) >> (i % 8)) & 1 == 1 }
}

/// Set bits in whole bytes, with the fastest code this CPU runs.
fn count_ones(bytes: &[u8]) -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: the CPU supports every feature the function enables.
            return unsafe { x86::count_avx512(bytes) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as for the block above, the CPU supports every feature the function
            // enables.
            return unsafe { x86::count_avx2(bytes) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: as for the block above, the CPU supports every feature the function
            // enables.
            return unsafe { x86::count_popcnt(bytes) };
        }
    }
    count_words(bytes)
}

/// The portable loop; inlined into each feature-specific copy so that the
/// compiler vectorizes it for that instruction set.
#[inline(always)]
fn count_words(bytes: &[u8]) -> usize {
    let words = bytes.chunks_exact(8);
    let rest: usize = words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum();
    let body: u64 = words
        .map(|w| u64::from_le_bytes(w.try_into().expect("chunks of 8")).count_ones() as u64)
        .sum();
    body as usize + rest
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq,popcnt")]
    pub(super) fn count_avx512(bytes: &[u8]) -> usize {
        super::count_words(bytes)
    }

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn count_avx2(bytes: &[u8]) -> usize {
        super::count_words(bytes)
    }

    #[target_feature(enable = "popcnt")]
    pub(super) fn count_popcnt(bytes: &[u8]) -> usize {
        super::count_words(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bitmap: &[u8], offset: usize, len: usize) -> usize {
        (offset..offset + len)
            .filter(|i| bitmap[i / 8] >> (i % 8) & 1 == 1)
            .count()
    }

    #[test]
    fn counts_match_bit_by_bit_at_every_offset_and_length() {
        let bitmap: Vec<u8> = (0..40u32)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 13) as u8)
            .collect();
        let bits = bitmap.len() * 8;
        let step = if cfg!(miri) { 7 } else { 1 };
        for offset in (0..bits).step_by(step) {
            for len in (0..=bits - offset).step_by(step) {
                assert_eq!(
                    count_set_bits(&bitmap, offset, len),
                    reference(&bitmap, offset, len)
                );
            }
        }
    }

    #[test]
    fn large_bitmaps_take_the_word_path() {
        let mut bitmap = vec![0xffu8; 10_000];
        bitmap[5_000] = 0b1110_1111;
        assert_eq!(count_set_bits(&bitmap, 3, 79_990), 79_989);
        assert_eq!(count_set_bits(&bitmap, 0, 80_000), 79_999);
    }
}
