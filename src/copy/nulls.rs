//! Nulls in a copy: overwritten with a fill value, and validity masks.
//! Both walk the validity bitmaps a word at a time, skipping words without
//! nulls, so a column with few nulls costs a pass over its bitmap on top of
//! the copy (1/64 of a float64 column's bytes).

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
/// element a null of `maps` covers; element `e` of the copy is at
/// `dst + e * width`, and each map's entries count from the copy's start.
///
/// # Safety
/// `dst` has room for every element the maps cover; the maps' bitmaps hold
/// their bits.
pub unsafe fn fill(dst: *mut u8, width: usize, value: &[u8; 8], maps: &[NullMap]) {
    for map in maps {
        // SAFETY: forwarded from the caller.
        unsafe {
            for_each_null(map, |r| {
                for e in r * map.per_entry..(r + 1) * map.per_entry {
                    dst.add(e * width)
                        .copy_from_nonoverlapping(value.as_ptr(), width);
                }
            })
        };
    }
}

/// Writes the validity mask of `count` elements to `dst`: 1 where the
/// element is valid, 0 where a null of `maps` covers it.
///
/// # Safety
/// `dst` has room for `count` bytes, every element the maps cover is below
/// `count`; the maps' bitmaps hold their bits.
pub unsafe fn mask(dst: *mut u8, count: usize, maps: &[NullMap]) {
    // SAFETY: `count` bytes of room.
    unsafe { dst.write_bytes(1, count) };
    for map in maps {
        // SAFETY: forwarded from the caller.
        unsafe {
            for_each_null(map, |r| {
                dst.add(r * map.per_entry).write_bytes(0, map.per_entry);
            })
        };
    }
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
        let maps = [NullMap {
            bitmap: bitmap.as_ptr(),
            first: 3,
            count: 150,
            per_entry: 2,
            depth: 0,
        }];
        let mut values = vec![7i32; 300];
        // SAFETY: 300 elements; 150 entries of 2.
        unsafe { fill(values.as_mut_ptr().cast(), 4, &(-1i64).to_ne_bytes(), &maps) };
        let mut mask_bytes = vec![9u8; 300];
        // SAFETY: as above.
        unsafe { mask(mask_bytes.as_mut_ptr(), 300, &maps) };
        for e in 0..300 {
            let null = [0, 64, 100, 149].contains(&(e / 2));
            assert_eq!(values[e], if null { -1 } else { 7 }, "{e}");
            assert_eq!(mask_bytes[e], !null as u8, "{e}");
        }
    }
}
