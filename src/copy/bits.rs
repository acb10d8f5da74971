//! Arrow's bit-packed booleans (LSB first) to DLPack's one byte per bool,
//! and back.

/// The eight bytes (0 or 1 each, in memory order) that a byte of bits
/// unpacks to, as a little-endian `u64`.
const SPREAD: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            table[byte] |= (((byte >> bit) & 1) as u64) << (8 * bit);
            bit += 1;
        }
        byte += 1;
    }
    table
};

/// Unpacks `count` bits, the first being bit `bit_offset` of `src[0]` (any
/// offset), into `count` bytes 0/1 at `dst`.
///
/// # Safety
/// `src` holds `bit_offset + count` bits; `dst` has room for `count` bytes.
pub unsafe fn unpack(src: *const u8, bit_offset: usize, dst: *mut u8, count: usize) {
    let (src, bit_offset) = (
        // SAFETY: whole bytes of the offset are inside the bitmap.
        unsafe { src.add(bit_offset / 8) },
        bit_offset % 8,
    );
    let mut i = 0;
    // A leading partial byte, bit by bit.
    while i < count && (bit_offset + i) % 8 != 0 {
        // SAFETY: bit `bit_offset + i` < 8 lies in `src[0]`; `i < count`.
        unsafe { *dst.add(i) = (*src >> (bit_offset + i)) & 1 };
        i += 1;
    }
    // Whole bytes: eight bools per table load and one 8-byte store.
    // SAFETY: `bit_offset + i` is a multiple of 8 here (or `i == count`).
    let bytes = unsafe { src.add((bit_offset + i) / 8) };
    let whole = (count - i) / 8;
    for k in 0..whole {
        // SAFETY: byte `k` holds bits below `bit_offset + count`; the eight
        // destination bytes are below `count`.
        unsafe {
            let spread = SPREAD[*bytes.add(k) as usize].to_le_bytes();
            dst.add(i + 8 * k).cast::<[u8; 8]>().write_unaligned(spread);
        }
    }
    i += 8 * whole;
    // The trailing bits.
    while i < count {
        let bit = bit_offset + i;
        // SAFETY: bit `bit` < `bit_offset + count`; `i < count`.
        unsafe { *dst.add(i) = (*src.add(bit / 8) >> (bit % 8)) & 1 };
        i += 1;
    }
}

/// Packs `count` bools at `src` (one byte each, nonzero = true) into bits
/// at `dst`, LSB first, the unused bits of the last byte zero.
///
/// # Safety
/// `src` holds `count` bytes; `dst` has room for `count.div_ceil(8)` bytes.
pub unsafe fn pack(src: *const u8, dst: *mut u8, count: usize) {
    for k in 0..count.div_ceil(8) {
        let mut byte = 0u8;
        for bit in 0..8.min(count - 8 * k) {
            // SAFETY: element `8k + bit` < `count`.
            byte |= ((unsafe { *src.add(8 * k + bit) } != 0) as u8) << bit;
        }
        // SAFETY: byte `k` < `count.div_ceil(8)`.
        unsafe { *dst.add(k) = byte };
    }
}

/// [`pack`] split over threads, each a run of whole bytes.
///
/// # Safety
/// As [`pack`].
pub unsafe fn pack_on(src: *const u8, dst: *mut u8, count: usize, threads: usize) {
    let (s, d) = (super::threads::Src(src), super::threads::Dst(dst));
    // A "row" is one byte of bits: eight bools in.
    super::threads::split(count.div_ceil(8), 8, threads, |r| {
        let n = (r.end * 8).min(count) - r.start * 8;
        // SAFETY: bools `8 * start..` and bytes `start..` of this run.
        unsafe { pack(s.get().add(r.start * 8), d.get().add(r.start), n) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_at_every_offset_matches_bit_by_bit() {
        let bitmap: Vec<u8> = (0..8u32)
            .map(|i| (i.wrapping_mul(0x9e37) >> 3) as u8)
            .collect();
        for offset in 0..12 {
            for count in [0, 1, 5, 8, 9, 17, 40] {
                let mut dst = vec![9u8; count];
                // SAFETY: 64 bits available; `offset + count <= 52`.
                unsafe { unpack(bitmap.as_ptr(), offset, dst.as_mut_ptr(), count) };
                let expected: Vec<u8> = (offset..offset + count)
                    .map(|b| (bitmap[b / 8] >> (b % 8)) & 1)
                    .collect();
                assert_eq!(dst, expected, "offset {offset}, count {count}");
                let mut packed = vec![0xffu8; count.div_ceil(8)];
                // SAFETY: sizes as computed.
                unsafe { pack(dst.as_ptr(), packed.as_mut_ptr(), count) };
                for (i, &v) in expected.iter().enumerate() {
                    assert_eq!((packed[i / 8] >> (i % 8)) & 1, v);
                }
                if count % 8 != 0 {
                    assert_eq!(packed[count / 8] >> (count % 8), 0, "padding bits are zero");
                }
            }
        }
    }
}
