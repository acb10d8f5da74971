//! IEEE 754 binary16 (`float16`) conversions, written out: the standard
//! library's `f16` is not stable. Rounding is to nearest, ties to even, as
//! NumPy's `npy_double_to_half` does, directly from `f64` (never through
//! `f32`, which would round twice).

/// `2^e`, exactly, for the exponents of these conversions (`-60..=60`):
/// built from its bits, not with `powi`, whose result is not guaranteed
/// exact (Miri perturbs it).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// The `f64` value of a binary16 (exact).
pub fn to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = (h >> 10) & 0x1f;
    let mantissa = f64::from(h & 0x3ff);
    match exponent {
        0 => sign * mantissa * pow2(-24),
        0x1f if mantissa == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * pow2(i32::from(e) - 15),
    }
}

/// The binary16 nearest to `x` (ties to even); overflow gives infinity,
/// NaN stays NaN.
pub fn from_f64(x: f64) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 48) & 0x8000) as u16;
    if x.is_nan() {
        return sign | 0x7e00;
    }
    let a = x.abs();
    if a >= 65520.0 {
        // 65520 = the largest half (65504) plus half an ulp: rounds up to inf.
        return sign | 0x7c00;
    }
    // The value in units of the smallest subnormal (2^-24), or of the ulp of
    // its binade for normal numbers; rounded to nearest even.
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    if exponent < -14 {
        // Subnormal (or zero): a multiple of 2^-24.
        let scaled = a * pow2(24);
        return sign | round_even(scaled) as u16;
    }
    // Normal: 1.m * 2^e with 10 mantissa bits.
    let ulp = pow2(exponent - 10);
    let q = round_even(a / ulp) as u32; // in [1024, 2048]
    let (q, exponent) = if q == 2048 {
        (1024, exponent + 1)
    } else {
        (q, exponent)
    };
    if exponent > 15 {
        return sign | 0x7c00;
    }
    sign | (((exponent + 15) as u16) << 10) | (q as u16 & 0x3ff)
}

fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (r - x).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // Safe arithmetic only (no `unsafe` in this file): Miri would spend half
    // a minute finding nothing to check.
    #[cfg_attr(miri, ignore)]
    fn every_half_round_trips_and_ties_go_to_even() {
        for h in 0..=u16::MAX {
            let x = to_f64(h);
            if x.is_nan() {
                assert!(to_f64(from_f64(x)).is_nan());
            } else {
                assert_eq!(from_f64(x), h, "{h:#x} = {x}");
            }
        }
        assert_eq!(to_f64(from_f64(1.0 + pow2(-11))), 1.0); // tie: to even
        assert_eq!(to_f64(from_f64(1.0 + 3.0 * pow2(-11))), 1.0 + pow2(-9));
        assert_eq!(to_f64(from_f64(65519.0)), 65504.0);
        assert_eq!(to_f64(from_f64(65520.0)), f64::INFINITY);
        assert_eq!(to_f64(from_f64(pow2(-25))), 0.0); // tie to even: zero
        assert_eq!(to_f64(from_f64(3.0 * pow2(-26))), pow2(-24));
        assert_eq!(from_f64(-0.0), 0x8000);
    }
}
