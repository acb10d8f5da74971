//! Arrow's decimals as floats: each value's integer divided by 10^scale,
//! rounded to the nearest float64 (then, for float32, to the nearest
//! float32, which overflows to infinity as NumPy's `astype` does).
//!
//! Where the integer has at most 53 bits and |scale| <= 22 (the powers of
//! ten a float64 holds exactly), one division or product, correctly
//! rounded: every decimal of at most 15 significant digits is exact. Else
//! in double-double arithmetic (about 106 bits, error-free products by
//! Dekker's split: no FMA needed), within one ulp and almost always
//! correctly rounded; a |scale| above 38 takes one more such step per 38
//! digits.

use crate::dtype::{DType, Elem};

/// A value as the unevaluated sum `hi + lo`, `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

/// `a + b` exactly, where `|a| >= |b|`.
#[inline(always)]
fn fast_two_sum(a: f64, b: f64) -> Dd {
    let hi = a + b;
    Dd {
        hi,
        lo: b - (hi - a),
    }
}

/// `a + b` exactly, any magnitudes.
#[inline(always)]
fn two_sum(a: f64, b: f64) -> Dd {
    let hi = a + b;
    let v = hi - a;
    Dd {
        hi,
        lo: (a - (hi - v)) + (b - v),
    }
}

/// Dekker's split: `a == hi + lo`, each of at most 26 significant bits.
#[inline(always)]
fn split(a: f64) -> (f64, f64) {
    let c = 134_217_729.0 * a; // 2^27 + 1
    let hi = c - (c - a);
    (hi, a - hi)
}

/// `a * b` exactly (no overflow: every magnitude here is below 2^1000).
#[inline(always)]
fn two_prod(a: f64, b: f64) -> Dd {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    Dd {
        hi: p,
        lo: ((ah * bh - p) + ah * bl + al * bh) + al * bl,
    }
}

impl Dd {
    /// An integer below 2^128, to within 2^-106 of itself (exact below
    /// 2^106): three chunks, each exact as a float64, summed.
    fn of_u128(m: u128) -> Dd {
        let top = (m >> 75) as f64 * f64::from_bits((1023 + 75) << 52);
        let mid = ((m >> 22) & ((1 << 53) - 1)) as f64 * f64::from_bits((1023 + 22) << 52);
        let low = (m & ((1 << 22) - 1)) as f64;
        let s = two_sum(top, mid);
        fast_two_sum(s.hi, s.lo + low)
    }

    /// A 256-bit magnitude `high * 2^128 + low`.
    fn of_u256(high: u128, low: u128) -> Dd {
        if high == 0 {
            return Dd::of_u128(low);
        }
        let h = Dd::of_u128(high);
        let two_128 = f64::from_bits((1023 + 128) << 52);
        let s = two_sum(h.hi * two_128, low as f64);
        fast_two_sum(s.hi, s.lo + h.lo * two_128)
    }

    fn div(self, p: Dd) -> Dd {
        let q1 = self.hi / p.hi;
        let qp = two_prod(q1, p.hi);
        let r = ((self.hi - qp.hi) - qp.lo + self.lo) - q1 * p.lo;
        fast_two_sum(q1, r / p.hi)
    }

    fn mul(self, p: Dd) -> Dd {
        let m = two_prod(self.hi, p.hi);
        fast_two_sum(m.hi, m.lo + (self.hi * p.lo + self.lo * p.hi))
    }
}

/// 10^k for k <= 22: exact float64s.
const EXACT: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The largest power of ten one double-double step takes (10^38 < 2^127).
const STEP: u32 = 38;

/// How one kernel call scales its integers: the steps' powers of ten.
struct Scaling {
    scale: i32,
    /// 10^|scale| as an exact float64 where |scale| <= 22.
    exact: Option<f64>,
    /// 10^min(|scale|, 38), and 10^38 for the further steps.
    first: Dd,
    full: Dd,
}

impl Scaling {
    fn new(scale: i32) -> Scaling {
        let k = scale.unsigned_abs();
        Scaling {
            scale,
            exact: EXACT.get(k as usize).copied(),
            first: Dd::of_u128(10u128.pow(k.min(STEP))),
            full: Dd::of_u128(10u128.pow(STEP)),
        }
    }

    /// `magnitude / 10^scale`, for the double-double `magnitude`.
    #[inline(never)]
    fn slow(&self, magnitude: Dd) -> f64 {
        let mut k = self.scale.unsigned_abs();
        let mut v = magnitude;
        let mut p = self.first;
        while k > 0 {
            v = match self.scale > 0 {
                true => v.div(p),
                false => v.mul(p),
            };
            k = k.saturating_sub(STEP);
            p = self.full;
            if k > 0 && k < STEP {
                p = Dd::of_u128(10u128.pow(k));
            }
        }
        v.hi + v.lo
    }

    /// A magnitude below 2^128 divided by 10^scale.
    #[inline(always)]
    fn of_u128(&self, m: u128) -> f64 {
        if let (true, Some(p)) = (m < 1 << 53, self.exact) {
            // Both exact: one correctly rounded operation (a 64-bit
            // conversion, not the 128-bit one, which is a library call).
            let x = m as u64 as f64;
            return match self.scale >= 0 {
                true => x / p,
                false => x * p,
            };
        }
        self.slow(Dd::of_u128(m))
    }
}

/// A decimal's integer, read from Arrow's little-endian bytes.
trait Unscaled: Copy {
    /// Its sign, and its magnitude's high and low 128 bits.
    fn split(self) -> (bool, u128, u128);
}

macro_rules! unscaled {
    ($($t:ty),*) => {$(
        impl Unscaled for $t {
            #[inline(always)]
            fn split(self) -> (bool, u128, u128) {
                (self < 0, 0, self.unsigned_abs() as u128)
            }
        }
    )*};
}
unscaled!(i32, i64, i128);

/// A decimal256: its low and high 128 bits, two's complement.
#[derive(Clone, Copy)]
#[repr(C)]
struct I256 {
    low: u128,
    high: i128,
}

impl Unscaled for I256 {
    #[inline(always)]
    fn split(self) -> (bool, u128, u128) {
        match self.high < 0 {
            // The magnitude of `high:low`: its two's complement negated.
            true => {
                let (low, borrow) = (!self.low).overflowing_add(1);
                (
                    true,
                    (!(self.high as u128)).wrapping_add(borrow as u128),
                    low,
                )
            }
            false => (false, self.high as u128, self.low),
        }
    }
}

/// A float the kernel writes.
trait Float: Copy {
    fn of(v: f64) -> Self;
}
impl Float for f64 {
    #[inline(always)]
    fn of(v: f64) -> f64 {
        v
    }
}
impl Float for f32 {
    #[inline(always)]
    fn of(v: f64) -> f32 {
        v as f32
    }
}

/// `count` integers `S` at `src` scaled into `D`s at `dst`.
///
/// # Safety
/// `src` holds `count` `S`s, `dst` room for `count` `D`s; any alignment.
#[inline(always)]
unsafe fn run<S: Unscaled, D: Float>(s: &Scaling, src: *const u8, dst: *mut u8, count: usize) {
    let (src, dst) = (src.cast::<S>(), dst.cast::<D>());
    for i in 0..count {
        // SAFETY: element `i` each way (caller's contract), unaligned.
        let x = unsafe { src.add(i).read_unaligned() };
        let (negative, high, low) = x.split();
        let v = match high == 0 {
            true => s.of_u128(low),
            false => s.slow(Dd::of_u256(high, low)),
        };
        let v = if negative { -v } else { v };
        // SAFETY: as above.
        unsafe { dst.add(i).write_unaligned(D::of(v)) };
    }
}

/// `count` decimals of `from` (its width and scale) at `src` as `to`
/// (float64 or float32) at `dst`, both read and written unaligned.
///
/// # Safety
/// `src` holds `count` elements of `from`, `dst` room for `count` of `to`.
pub unsafe fn to_float(from: &DType, src: *const u8, to: &DType, dst: *mut u8, count: usize) {
    let s = &Scaling::new(from.scale);
    // SAFETY: forwarded from the caller: `S` is the element's integer.
    unsafe {
        match (from.elem, to.elem == Elem::F32) {
            (Elem::Dec32, false) => run::<i32, f64>(s, src, dst, count),
            (Elem::Dec32, true) => run::<i32, f32>(s, src, dst, count),
            (Elem::Dec64, false) => run::<i64, f64>(s, src, dst, count),
            (Elem::Dec64, true) => run::<i64, f32>(s, src, dst, count),
            (Elem::Dec128, false) => run::<i128, f64>(s, src, dst, count),
            (Elem::Dec128, true) => run::<i128, f32>(s, src, dst, count),
            (_, false) => run::<I256, f64>(s, src, dst, count),
            (_, true) => run::<I256, f32>(s, src, dst, count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{self, FLOAT32, FLOAT64};

    fn one(bits: u32, scale: i32, raw: &[u8], to: &DType) -> f64 {
        let t = dtype::decimal(bits, scale).unwrap();
        let mut out = [0u8; 8];
        // SAFETY: one element each way.
        unsafe { to_float(t, raw.as_ptr(), to, out.as_mut_ptr(), 1) };
        match to.elem {
            Elem::F32 => f32::from_le_bytes(out[..4].try_into().unwrap()) as f64,
            _ => f64::from_le_bytes(out),
        }
    }

    fn d128(x: i128, scale: i32) -> f64 {
        one(128, scale, &x.to_le_bytes(), &FLOAT64)
    }

    /// The nearest float64 to `digits * 10^-scale`, by Rust's correctly
    /// rounded parser.
    fn exact(digits: i128, scale: i32) -> f64 {
        format!("{digits}e{}", -scale).parse().unwrap()
    }

    #[test]
    fn values_are_the_nearest_float() {
        for (x, s) in [
            (12345i128, 2),
            (-12345, 2),
            (1, 38),
            (-1, 38),
            (99_999_999_999_999_999_999_999_999_999_999_999_999, 0),
            (99_999_999_999_999_999_999_999_999_999_999_999_999, 38),
            (-99_999_999_999_999_999_999_999_999_999_999_999_999, 10),
            (123_456_789_012_345_678_901_234_567, 4),
            (7, -5),
            (123_456_789_012_345_678_901, -30),
            (1, 127),
            (1, -128),
            (3, 23),
            (i128::MIN, 0),
            (i128::MAX, 3),
            (0, 5),
        ] {
            let got = d128(x, s);
            let want = exact(x, s);
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 1, "{x}e-{s}: {got:e} vs {want:e}");
        }
        // Up to 15 significant digits: exact.
        assert_eq!(d128(123_456_789_012_345, 7), 12345678.9012345);
        assert_eq!(d128(-5, 1), -0.5);
    }

    #[test]
    fn every_width_reads_its_integer() {
        assert_eq!(one(32, 2, &(-12345i32).to_le_bytes(), &FLOAT64), -123.45);
        assert_eq!(one(64, 3, &(987_654i64).to_le_bytes(), &FLOAT64), 987.654);
        let mut raw = [0u8; 32];
        raw[..16].copy_from_slice(&(-250i128).to_le_bytes());
        raw[16..].copy_from_slice(&(-1i128).to_le_bytes());
        assert_eq!(one(256, 2, &raw, &FLOAT64), -2.5);
        // 2^128 + 2, as a decimal256 with scale 0.
        let mut raw = [0u8; 32];
        raw[0] = 2;
        raw[16] = 1;
        let want: f64 = "340282366920938463463374607431768211458".parse().unwrap();
        assert_eq!(one(256, 0, &raw, &FLOAT64), want);
        // The largest decimal256 (76 nines), and its negative.
        let (high, low) = (
            29_387_358_770_557_187_699_218_413_430_556_141_945u128,
            158_788_995_957_577_343_786_214_718_011_688_878_079u128,
        );
        let mut raw = [0u8; 32];
        raw[..16].copy_from_slice(&low.to_le_bytes());
        raw[16..].copy_from_slice(&high.to_le_bytes());
        assert_eq!(one(256, 0, &raw, &FLOAT64), 1e76);
        assert_eq!(one(256, 76, &raw, &FLOAT64), 1.0);
        let (l, borrow) = (!low).overflowing_add(1);
        raw[..16].copy_from_slice(&l.to_le_bytes());
        raw[16..].copy_from_slice(&(!high).wrapping_add(borrow as u128).to_le_bytes());
        assert_eq!(one(256, 40, &raw, &FLOAT64), -1e36);
    }

    #[test]
    fn float32_overflows_to_infinity() {
        let big = 10i128.pow(38) - 1;
        assert_eq!(one(128, -2, &big.to_le_bytes(), &FLOAT32), f64::INFINITY);
        assert_eq!(
            one(128, -2, &(-big).to_le_bytes(), &FLOAT32),
            f64::NEG_INFINITY
        );
        assert_eq!(one(128, 0, &big.to_le_bytes(), &FLOAT32), 1e38f32 as f64);
        assert_eq!(one(128, 2, &125i128.to_le_bytes(), &FLOAT32), 1.25);
    }
}
