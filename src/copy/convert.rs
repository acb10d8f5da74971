//! Elements of one type to another, as NumPy's `astype` with unsafe
//! casting: integers wrap, floats truncate toward zero into integers
//! (saturating out of range, NaN to 0: NumPy leaves those undefined),
//! anything to bool is `x != 0`, bool is 0 or 1, float16 rounds to nearest
//! even. bfloat16 is made as PyTorch makes it (`Tensor.to(torch.bfloat16)`):
//! the value as a float32, rounded to nearest even, NaN as 0x7FC0. The same
//! type is a plain copy.

use crate::dtype::{DType, Elem};

use super::{bits, half};

/// A float16, as its bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct F16(u16);

/// A bool as DLPack stores it: one byte, 0 or 1.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Bool(u8);

/// A bfloat16, as its bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct BF16(u16);

/// The bfloat16 of a float32, as PyTorch's `c10::BFloat16` rounds it (to
/// nearest even; every NaN is 0x7FC0).
pub fn bfloat16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    let bias = ((bits >> 16) & 1) + 0x7fff;
    (bits.wrapping_add(bias) >> 16) as u16
}

/// `self` as a `D`, with `astype`'s semantics.
trait Cast<D> {
    fn cast(self) -> D;
}

macro_rules! numeric_casts {
    ($($s:ty),*) => { numeric_casts!(@each [$($s),*] [$($s),*]); };
    (@each [$($s:ty),*] $d:tt) => { $( numeric_casts!(@one $s $d); )* };
    (@one $s:ty [$($d:ty),*]) => {
        $(
            impl Cast<$d> for $s {
                #[inline(always)]
                #[allow(clippy::unnecessary_cast)]
                fn cast(self) -> $d {
                    self as $d
                }
            }
        )*
        impl Cast<F16> for $s {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> F16 {
                F16(half::from_f64(self as f64))
            }
        }
        impl Cast<$s> for F16 {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> $s {
                half::to_f64(self.0) as $s
            }
        }
        impl Cast<Bool> for $s {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> Bool {
                Bool((self != (0 as $s)) as u8)
            }
        }
        impl Cast<$s> for Bool {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> $s {
                (self.0 != 0) as u8 as $s
            }
        }
        impl Cast<BF16> for $s {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> BF16 {
                BF16(bfloat16(self as f32))
            }
        }
        impl Cast<$s> for BF16 {
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn cast(self) -> $s {
                f32::from_bits(u32::from(self.0) << 16) as $s
            }
        }
    };
}

numeric_casts!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

impl Cast<F16> for F16 {
    fn cast(self) -> F16 {
        self
    }
}
impl Cast<Bool> for F16 {
    fn cast(self) -> Bool {
        Bool((self.0 & 0x7fff != 0) as u8)
    }
}
impl Cast<F16> for Bool {
    fn cast(self) -> F16 {
        F16(if self.0 != 0 { 0x3c00 } else { 0 })
    }
}
impl Cast<Bool> for Bool {
    fn cast(self) -> Bool {
        Bool((self.0 != 0) as u8)
    }
}
impl Cast<BF16> for F16 {
    fn cast(self) -> BF16 {
        BF16(bfloat16(half::to_f64(self.0) as f32))
    }
}
impl Cast<F16> for BF16 {
    fn cast(self) -> F16 {
        F16(half::from_f64(f64::from(f32::from_bits(
            u32::from(self.0) << 16,
        ))))
    }
}
impl Cast<BF16> for Bool {
    fn cast(self) -> BF16 {
        BF16(if self.0 != 0 { 0x3f80 } else { 0 })
    }
}
impl Cast<Bool> for BF16 {
    fn cast(self) -> Bool {
        Bool((self.0 & 0x7fff != 0) as u8)
    }
}
impl Cast<BF16> for BF16 {
    fn cast(self) -> BF16 {
        self
    }
}

/// `count` elements from `src` converted into `dst`, both read and written
/// unaligned (the C Data Interface allows unaligned buffers; the owner's
/// bytes are aligned, and unaligned accesses cost nothing more there).
///
/// # Safety
/// `src` holds `count` `S`s, `dst` room for `count` `D`s.
unsafe fn run<S: Copy + Cast<D>, D: Copy>(src: *const u8, dst: *mut u8, count: usize) {
    let (src, dst) = (src.cast::<S>(), dst.cast::<D>());
    for i in 0..count {
        // SAFETY: in bounds (caller's contract), any alignment.
        unsafe {
            dst.add(i)
                .write_unaligned(src.add(i).read_unaligned().cast())
        };
    }
}

/// Calls `$body` with `$T` the Rust type of the element kind `$e`.
macro_rules! with_type {
    ($e:expr, $T:ident => $body:expr) => {
        match $e {
            Elem::I8 => {
                type $T = i8;
                $body
            }
            Elem::U8 => {
                type $T = u8;
                $body
            }
            Elem::I16 => {
                type $T = i16;
                $body
            }
            Elem::U16 => {
                type $T = u16;
                $body
            }
            Elem::I32 => {
                type $T = i32;
                $body
            }
            Elem::U32 => {
                type $T = u32;
                $body
            }
            Elem::I64 => {
                type $T = i64;
                $body
            }
            Elem::U64 => {
                type $T = u64;
                $body
            }
            Elem::F16 => {
                type $T = F16;
                $body
            }
            Elem::F32 => {
                type $T = f32;
                $body
            }
            Elem::F64 => {
                type $T = f64;
                $body
            }
            Elem::Bool => {
                type $T = Bool;
                $body
            }
            Elem::BF16 => {
                type $T = BF16;
                $body
            }
            Elem::Dec32 | Elem::Dec64 | Elem::Dec128 | Elem::Dec256 => {
                unreachable!("decimals are converted by copy::decimal, to floats only")
            }
        }
    };
}

/// Converts `count` elements of type `from` starting at `src` (for a
/// bit-packed boolean: the byte holding the first bit, which is bit
/// `bit_offset`) into `dst`, as elements of type `to`.
///
/// # Safety
/// `src` holds the elements, `dst` has room for `count` elements of `to`.
pub unsafe fn convert(
    from: &DType,
    src: *const u8,
    bit_offset: usize,
    to: &DType,
    dst: *mut u8,
    count: usize,
) {
    if from.is_decimal() {
        // SAFETY: forwarded from the caller (the planner asks only for
        // float64 or float32: `dtype::target_of`).
        return unsafe { super::decimal::to_float(from, src, to, dst, count) };
    }
    if from.is_bit_packed() {
        // SAFETY: `convert`'s caller promises it: `src` holds the elements, `dst` has room for
        // `count` elements of `to`.
        return unsafe { bits_to(to, src, bit_offset, dst, count) };
    }
    if from.elem == to.elem {
        // SAFETY: the same element size; forwarded from the caller.
        return unsafe { std::ptr::copy_nonoverlapping(src, dst, count * from.width()) };
    }
    // SAFETY: forwarded from the caller; `S` and `D` are the types of the
    // element kinds.
    with_type!(from.elem, S => with_type!(to.elem, D => unsafe { run::<S, D>(src, dst, count) }))
}

/// Bit-packed booleans into `to`: bytes straight from the bits, other
/// types through their 0 or 1.
///
/// # Safety
/// As [`convert`].
unsafe fn bits_to(to: &DType, src: *const u8, bit_offset: usize, dst: *mut u8, count: usize) {
    if to.is_bit_packed() {
        // SAFETY: `bits_to`'s caller promises it: as `convert`'s: `src` holds the elements,
        // `dst` has room for `count` elements of `to`.
        return unsafe { bits::unpack(src, bit_offset, dst, count) };
    }
    // SAFETY: as above; `D` is the type of the element kind.
    with_type!(to.elem, D => unsafe {
        let dst = dst.cast::<D>();
        for i in 0..count {
            let bit = bit_offset + i;
            let value = Bool((*src.add(bit / 8) >> (bit % 8)) & 1);
            dst.add(i).write_unaligned(value.cast());
        }
    })
}

/// The bytes of `value` as an element of `to` (little-endian in the
/// first `to.width()` bytes), if `to` holds it exactly: integers in range,
/// floats that round-trip (NaN included), bool 0 or 1.
pub fn exact(value: f64, to: &DType) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    let integral = value.is_finite() && value.trunc() == value;
    macro_rules! int {
        ($T:ty) => {{
            let fits = integral && value >= <$T>::MIN as f64 && value < (<$T>::MAX as f64 + 1.0);
            if !fits {
                return None;
            }
            let bytes = (value as $T).to_ne_bytes();
            out[..bytes.len()].copy_from_slice(&bytes);
        }};
    }
    match to.elem {
        Elem::I8 => int!(i8),
        Elem::U8 => int!(u8),
        Elem::I16 => int!(i16),
        Elem::U16 => int!(u16),
        Elem::I32 => int!(i32),
        Elem::U32 => int!(u32),
        // `MAX as f64 + 1.0` is exactly 2^63 / 2^64: the open upper bound.
        Elem::I64 => int!(i64),
        Elem::U64 => int!(u64),
        Elem::Bool if value == 0.0 || value == 1.0 => out[0] = value as u8,
        Elem::Bool => return None,
        Elem::BF16 => {
            let b = bfloat16(value as f32);
            let back = f64::from(f32::from_bits(u32::from(b) << 16));
            if !(value.is_nan() || back == value) {
                return None;
            }
            out[..2].copy_from_slice(&b.to_ne_bytes());
        }
        Elem::F16 => {
            let h = half::from_f64(value);
            if !(value.is_nan() || half::to_f64(h) == value) {
                return None;
            }
            out[..2].copy_from_slice(&h.to_ne_bytes());
        }
        Elem::F32 => {
            let f = value as f32;
            if !(value.is_nan() || f as f64 == value) {
                return None;
            }
            out[..4].copy_from_slice(&f.to_ne_bytes());
        }
        Elem::F64 => out = value.to_ne_bytes(),
        // Never a tensor's dtype.
        Elem::Dec32 | Elem::Dec64 | Elem::Dec128 | Elem::Dec256 => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{BFLOAT16, BOOLEAN, TARGETS};

    fn dtype(format: u8) -> &'static DType {
        if format == b'B' {
            return &BFLOAT16;
        }
        TARGETS
            .iter()
            .copied()
            .find(|t| t.format == format)
            .unwrap()
    }

    fn converted(from: u8, src: &[u8], to: u8) -> Vec<u8> {
        let (from, to) = (dtype(from), dtype(to));
        let count = match from.is_bit_packed() {
            true => src.len() * 8,
            false => src.len() / from.width(),
        };
        let mut dst = vec![0u8; count * to.width()];
        // SAFETY: sizes as computed.
        unsafe { convert(from, src.as_ptr(), 0, to, dst.as_mut_ptr(), count) };
        dst
    }

    fn bytes<T: Copy>(values: &[T]) -> Vec<u8> {
        // SAFETY: plain numbers.
        unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
            .to_vec()
    }

    #[test]
    fn conversions_follow_numpy_astype() {
        // float -> int truncates toward zero; out of range saturates.
        let got = converted(b'g', &bytes(&[-2.7f64, 2.7, 1e300, f64::NAN]), b'i');
        assert_eq!(got, bytes(&[-2i32, 2, i32::MAX, 0]));
        // int -> narrower int wraps.
        assert_eq!(
            converted(b'l', &bytes(&[300i64, -1]), b'C'),
            bytes(&[44u8, 255])
        );
        // anything -> bool is != 0; bool -> number is 0/1.
        let got = converted(b'g', &bytes(&[0.0f64, -0.0, 0.5, f64::NAN]), b'b');
        assert_eq!(got, vec![0, 0, 1, 1]);
        // Arrow's booleans are bits (LSB first).
        assert_eq!(
            converted(b'b', &[0b101], b'f')[..12],
            bytes(&[1f32, 0.0, 1.0])
        );
        // float16 both ways, rounding to nearest even.
        let got = converted(b'f', &bytes(&[1.0f32, 65504.0, 1e6]), b'e');
        assert_eq!(got, bytes(&[0x3c00u16, 0x7bff, 0x7c00]));
        assert_eq!(converted(b'e', &bytes(&[0xc000u16]), b'l'), bytes(&[-2i64]));
        // The same type is a copy.
        assert_eq!(converted(b'S', &bytes(&[7u16, 9]), b'S'), bytes(&[7u16, 9]));
        // bfloat16 as PyTorch makes it: through float32, nearest even.
        let got = converted(
            b'g',
            &bytes(&[1.0f64, 1.00390625, 1.01171875, -0.0, f64::NAN, 1e39]),
            b'B',
        );
        assert_eq!(
            got,
            bytes(&[0x3f80u16, 0x3f80, 0x3f82, 0x8000, 0x7fc0, 0x7f80])
        );
        assert_eq!(
            converted(b'l', &bytes(&[257i64]), b'B'),
            bytes(&[0x4380u16])
        );
    }

    #[test]
    fn unaligned_sources_are_read() {
        let mut raw = [0u8; 17];
        raw[1..17].copy_from_slice(&bytes(&[1.5f64, -3.0]));
        let mut dst = [0i64; 2];
        // SAFETY: two f64 at an odd address; room for two i64.
        unsafe {
            convert(
                dtype(b'g'),
                raw.as_ptr().add(1),
                0,
                dtype(b'l'),
                dst.as_mut_ptr().cast(),
                2,
            )
        };
        assert_eq!(dst, [1, -3]);
    }

    #[test]
    fn bits_at_any_offset_become_any_type() {
        let bitmap = [0b1010_1100u8, 0b0000_0001];
        let mut dst = [0u16; 7];
        // SAFETY: 9 bits available from bit 2; room for 7.
        unsafe {
            convert(
                &BOOLEAN,
                bitmap.as_ptr(),
                2,
                dtype(b'S'),
                dst.as_mut_ptr().cast(),
                7,
            )
        };
        assert_eq!(dst, [1, 1, 0, 1, 0, 1, 1]);
    }

    #[test]
    fn fill_values_must_be_held_exactly() {
        assert!(exact(0.5, dtype(b'i')).is_none());
        assert!(exact(f64::NAN, dtype(b'l')).is_none());
        assert!(exact(1000.0, dtype(b'c')).is_none());
        assert!(exact(-1.0, dtype(b'S')).is_none());
        let two_63 = 9_223_372_036_854_775_808.0f64;
        assert!(exact(two_63, dtype(b'l')).is_none());
        assert!(exact(2.0 * two_63, dtype(b'L')).is_none());
        assert!(exact(0.1, dtype(b'f')).is_none());
        assert!(exact(2.0, dtype(b'b')).is_none());
        assert_eq!(exact(-128.0, dtype(b'c')).unwrap()[0], 0x80);
        assert_eq!(exact(-two_63, dtype(b'l')).unwrap(), i64::MIN.to_ne_bytes());
        assert!(exact(f64::NAN, dtype(b'f')).is_some());
        assert!(exact(0.1, dtype(b'g')).is_some());
        assert_eq!(
            exact(1.0, dtype(b'e')).unwrap()[..2],
            0x3c00u16.to_ne_bytes()
        );
    }
}
