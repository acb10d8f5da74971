//! Nulls in a copy: overwritten with a fill value, and cleared in validity
//! masks.
//! Both walk the validity bitmaps a word at a time, skipping words without
//! nulls, so a column with few nulls costs a pass over its bitmap on top of
//! the copy (1/64 of a float64 column's bytes).

#[cfg(test)]
use crate::arrow::read::Level;
use crate::arrow::read::NullMap;

/// Calls `f(r)` for each entry `r` (relative to the map's first bit) whose
/// validity bit is 0.
///
/// # Safety
/// The map's bitmap holds `first + count` bits.
unsafe fn for_each_null(map: &NullMap, mut f: impl FnMut(usize)) {
    let bit = |i: usize| {
        let b = map.first + i;
        // SAFETY: `i < count` (callers below), inside the bitmap.
        unsafe { (*map.bitmap.add(b / 8) >> (b % 8)) & 1 }
    };
    let mut i = 0;
    while i < map.count && (map.first + i) % 8 != 0 {
        if bit(i) == 0 {
            f(i);
        }
        i += 1;
    }
    while i + 64 <= map.count {
        // SAFETY: bits `first + i .. first + i + 64` are inside the bitmap,
        // and `first + i` is a multiple of 8: eight whole bytes.
        let word = unsafe {
            map.bitmap
                .add((map.first + i) / 8)
                .cast::<[u8; 8]>()
                .read_unaligned()
        };
        let mut zeros = !u64::from_le_bytes(word);
        while zeros != 0 {
            f(i + zeros.trailing_zeros() as usize);
            zeros &= zeros - 1;
        }
        i += 64;
    }
    while i < map.count {
        if bit(i) == 0 {
            f(i);
        }
        i += 1;
    }
}

/// Writes `value` (its first `width` bytes: one element) over every
/// element a null of `map` covers; element `e` of the copy is at
/// `dst + e * width`, and the map's entries count from the copy's start.
///
/// # Safety
/// `dst` has room for every element the map covers; its bitmap holds its
/// bits.
pub unsafe fn fill(dst: *mut u8, width: usize, value: &[u8; 8], map: &NullMap) {
    // SAFETY: `fill`'s caller promises it: `dst` has room for every element the map covers; its
    // bitmap holds its bits.
    unsafe {
        for_each_null(map, |r| {
            repeat(
                dst.add(r * map.per_entry * width),
                width,
                value,
                map.per_entry,
            )
        })
    };
}

/// Writes `count` elements of `width` bytes (1, 2, 4 or 8), each the first
/// `width` bytes of `value`, from `dst`: a `memset` where the bytes allow
/// it, else a loop of whole-element stores the compiler vectorizes.
///
/// # Safety
/// `dst` has room for `count` elements.
pub unsafe fn repeat(dst: *mut u8, width: usize, value: &[u8; 8], count: usize) {
    let bytes = &value[..width];
    // SAFETY: room for `count * width` bytes (caller's contract); the
    // stores are unaligned, so any `dst` will do.
    unsafe {
        if bytes.iter().all(|&b| b == bytes[0]) {
            return dst.write_bytes(bytes[0], count * width);
        }
        macro_rules! each {
            ($t:ty) => {{
                let v = <$t>::from_ne_bytes(bytes.try_into().expect("the width"));
                let dst = dst.cast::<$t>();
                for i in 0..count {
                    dst.add(i).write_unaligned(v);
                }
            }};
        }
        match width {
            2 => each!(u16),
            4 => each!(u32),
            8 => each!(u64),
            _ => unreachable!("elements of 1, 2, 4 or 8 bytes"),
        }
    }
}

/// Writes 0 over every element a null of `map` covers in a validity mask
/// (a byte per element) at `dst`, whose entries count from `dst`.
///
/// # Safety
/// `dst` has room for every element the map covers; its bitmap holds its
/// bits.
pub unsafe fn clear(dst: *mut u8, map: &NullMap) {
    // SAFETY: `clear`'s caller promises it: `dst` has room for every element the map covers;
    // its bitmap holds its bits.
    unsafe {
        for_each_null(map, |r| {
            dst.add(r * map.per_entry).write_bytes(0, map.per_entry);
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_at_any_level_and_offset_are_filled_and_masked() {
        // 150 entries from bit 3: nulls at entries 0, 64, 100 and 149.
        let mut bitmap = [0xffu8; 20];
        for r in [0usize, 64, 100, 149] {
            let b = 3 + r;
            bitmap[b / 8] &= !(1 << (b % 8));
        }
        let map = NullMap {
            bitmap: bitmap.as_ptr(),
            first: 3,
            count: 150,
            per_entry: 2,
            per_row: 1,
            level: Level::Depth(0),
            rows: false,
        };
        let mut values = vec![7i32; 300];
        // SAFETY: 300 elements; 150 entries of 2.
        unsafe { fill(values.as_mut_ptr().cast(), 4, &(-1i64).to_ne_bytes(), &map) };
        let mut mask_bytes = vec![1u8; 300];
        // SAFETY: as for the block above, 300 elements; 150 entries of 2.
        unsafe { clear(mask_bytes.as_mut_ptr(), &map) };
        for e in 0..300 {
            let null = [0, 64, 100, 149].contains(&(e / 2));
            assert_eq!(values[e], if null { -1 } else { 7 }, "{e}");
            assert_eq!(mask_bytes[e], !null as u8, "{e}");
        }
    }
}
