//! The one type table: Arrow format <-> DLPack dtype, and the names and
//! hints used in error messages for every other Arrow format and DLPack
//! dtype. Adding a type both sides share is one row of [`TABLE`].

use std::ffi::CStr;
use std::fmt;

use crate::abi::{
    DLDataType, K_DL_BFLOAT, K_DL_BOOL, K_DL_COMPLEX, K_DL_FLOAT, K_DL_INT, K_DL_OPAQUE_HANDLE,
    K_DL_UINT,
};
use crate::error::{Error, err};

/// A type that both Arrow and DLPack represent identically in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    /// The Arrow format string (one character), as written in schemas.
    pub c_format: &'static CStr,
    /// Its one character.
    pub format: u8,
    /// The DLPack dtype, lanes 1.
    pub dl: DLDataType,
    /// Arrow's name for the type.
    pub name: &'static str,
}

impl DType {
    /// Bytes per element.
    pub const fn width(&self) -> usize {
        self.dl.bits as usize / 8
    }
}

const fn dtype(c_format: &'static CStr, code: u8, bits: u8, name: &'static str) -> DType {
    DType {
        c_format,
        format: c_format.to_bytes()[0],
        dl: DLDataType {
            code,
            bits,
            lanes: 1,
        },
        name,
    }
}

/// Every type shared without a copy, both directions.
pub const TABLE: [DType; 11] = [
    dtype(c"c", K_DL_INT, 8, "int8"),
    dtype(c"C", K_DL_UINT, 8, "uint8"),
    dtype(c"s", K_DL_INT, 16, "int16"),
    dtype(c"S", K_DL_UINT, 16, "uint16"),
    dtype(c"i", K_DL_INT, 32, "int32"),
    dtype(c"I", K_DL_UINT, 32, "uint32"),
    dtype(c"l", K_DL_INT, 64, "int64"),
    dtype(c"L", K_DL_UINT, 64, "uint64"),
    dtype(c"e", K_DL_FLOAT, 16, "float16"),
    dtype(c"f", K_DL_FLOAT, 32, "float32"),
    dtype(c"g", K_DL_FLOAT, 64, "float64"),
];

/// Arrow's boolean: one bit per element in Arrow, one byte (0 or 1) per
/// element as DLPack's `kDLBool`. Never shared: unpacked (export) or packed
/// (import) by a copy, and not in `TABLE`, which lists what is shared.
pub const BOOLEAN: DType = dtype(c"b", K_DL_BOOL, 8, "boolean");

/// The shared types' integer storage of Arrow's temporal types.
pub const INT32: &DType = &TABLE[4];
pub const INT64: &DType = &TABLE[6];

impl DType {
    /// Whether Arrow stores it one bit per element (boolean).
    pub fn is_bit_packed(&self) -> bool {
        self.format == b'b'
    }
}

/// `TABLE`'s row for each format character (`u8::MAX`: none), built from
/// the table at compile time: a load, not a scan, on every export's path.
const BY_FORMAT: [u8; 256] = {
    let mut index = [u8::MAX; 256];
    let mut row = 0;
    while row < TABLE.len() {
        index[TABLE[row].format as usize] = row as u8;
        row += 1;
    }
    index
};

/// The table entry for a one-character format.
fn primitive(format: u8) -> Option<&'static DType> {
    TABLE.get(BY_FORMAT[format as usize] as usize)
}

/// The table entry for a DLPack dtype, if Arrow has the same type.
pub fn from_dlpack(dl: DLDataType) -> Option<&'static DType> {
    TABLE.iter().find(|t| t.dl == dl)
}

/// The type of a DLPack dtype that a copy can convert to or from: a shared
/// type, or `kDLBool` (8 bits, lanes 1).
pub fn from_dlpack_or_bool(dl: DLDataType) -> Option<&'static DType> {
    from_dlpack(dl).or((dl == BOOLEAN.dl).then_some(&BOOLEAN))
}

/// The dtype NumPy's `result_type` gives two columns' dtypes: the
/// smallest type that holds every value of both (int64 + uint64 -> float64,
/// int32 + float32 -> float64, bool + anything -> the other).
pub fn promote(a: &'static DType, b: &'static DType) -> &'static DType {
    let (ka, kb) = (a.dl.code, b.dl.code);
    let (ba, bb) = (a.dl.bits, b.dl.bits);
    // The float bits NumPy gives an integer of `bits` beside a float.
    let float_for = |bits: u8| match bits {
        8 => 16,
        16 => 32,
        _ => 64,
    };
    let (code, bits) = match (ka, kb) {
        _ if a == b => return a,
        (K_DL_BOOL, _) => return b,
        (_, K_DL_BOOL) => return a,
        (K_DL_FLOAT, K_DL_FLOAT) => (K_DL_FLOAT, ba.max(bb)),
        (K_DL_FLOAT, _) => (K_DL_FLOAT, ba.max(float_for(bb))),
        (_, K_DL_FLOAT) => (K_DL_FLOAT, bb.max(float_for(ba))),
        _ if ka == kb => (ka, ba.max(bb)),
        // Signed and unsigned: a signed type wider than the unsigned one,
        // or float64 beside uint64.
        _ => {
            let (signed, unsigned) = if ka == K_DL_INT { (ba, bb) } else { (bb, ba) };
            match (signed > unsigned, unsigned < 64) {
                (true, _) => (K_DL_INT, signed),
                (false, true) => (K_DL_INT, 2 * unsigned),
                (false, false) => (K_DL_FLOAT, 64),
            }
        }
    };
    from_dlpack(DLDataType {
        code,
        bits,
        lanes: 1,
    })
    .expect("every promotion of two table types is a table type")
}

/// `UNSUPPORTED_TYPE` for a DLPack dtype without an Arrow twin, naming it.
pub fn unsupported_dlpack(t: DLDataType) -> Error {
    let name = match t.code {
        K_DL_BOOL => "bool",
        K_DL_BFLOAT => "bfloat16",
        K_DL_COMPLEX => "complex",
        K_DL_OPAQUE_HANDLE => "opaque handle",
        7..=17 => "a float8/6/4 format",
        K_DL_INT | K_DL_UINT | K_DL_FLOAT if t.lanes != 1 => "a vector type",
        K_DL_INT | K_DL_UINT | K_DL_FLOAT => "a width Arrow lacks",
        _ => "unknown",
    };
    err!(
        ARROW_DLPACK_UNSUPPORTED_TYPE,
        "unsupported dtype {{code {}, bits {}, lanes {}}} ({name}): Arrow shares int/uint 8-64 and float 16/32/64 with lanes 1",
        t.code,
        t.bits,
        t.lanes
    )
}

/// The formats a reader accepts beyond the shared types, each of which
/// some copy option allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    /// `b` (boolean), for an unpacking copy.
    pub boolean: bool,
    /// Dates, times, timestamps and durations, as their integer storage
    /// (shared, never copied).
    pub temporal: bool,
}

/// Temporal formats and their integer storage (a timestamp's zone, after
/// the colon, does not matter).
const TEMPORAL: &[(&[u8], &DType)] = &[
    (b"tdD", INT32),
    (b"tts", INT32),
    (b"ttm", INT32),
    (b"tdm", INT64),
    (b"ttu", INT64),
    (b"ttn", INT64),
    (b"tDs", INT64),
    (b"tDm", INT64),
    (b"tDu", INT64),
    (b"tDn", INT64),
];
const TIMESTAMPS: [&[u8]; 4] = [b"tss:", b"tsm:", b"tsu:", b"tsn:"];

/// What a format string describes, as far as export is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A fixed-width number: shared as is.
    Primitive(&'static DType),
    /// `+w:N`: rows of `N` child elements.
    FixedSizeList(i64),
}

/// Formats that are valid Arrow but have no DLPack equivalent, with a name
/// and, where one exists, what the user can do instead.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (b"n", "null"),
    (b"b", "boolean: bit-packed, needs a copy"),
    (b"z", "binary"),
    (b"Z", "large binary"),
    (b"vz", "binary view"),
    (b"u", "utf8"),
    (b"U", "large utf8"),
    (b"vu", "utf8 view"),
    (b"tdD", "date32: cast to its integer storage"),
    (b"tdm", "date64: cast to its integer storage"),
    (b"tts", "time32[s]: cast to its integer storage"),
    (b"ttm", "time32[ms]: cast to its integer storage"),
    (b"ttu", "time64[us]: cast to its integer storage"),
    (b"ttn", "time64[ns]: cast to its integer storage"),
    (b"tDs", "duration[s]: cast to its integer storage"),
    (b"tDm", "duration[ms]: cast to its integer storage"),
    (b"tDu", "duration[us]: cast to its integer storage"),
    (b"tDn", "duration[ns]: cast to its integer storage"),
    (b"tiM", "interval[months]: cast to its integer storage"),
    (b"tiD", "interval[day_time]"),
    (b"tin", "interval[month_day_nano]"),
    (b"+l", "list"),
    (b"+L", "large list"),
    (b"+vl", "list view"),
    (b"+vL", "large list view"),
    (b"+s", "struct"),
    (b"+m", "map"),
    (b"+r", "run-end encoded"),
];

/// Formats that take a parameter after the prefix (`tss:UTC`, `w:16`, ...):
/// prefix, name, whether the parameter may be empty (a timestamp without a
/// time zone is `tss:`).
const UNSUPPORTED_PREFIXED: &[(&[u8], &str, bool)] = &[
    (b"tss:", "timestamp[s]: cast to its integer storage", true),
    (b"tsm:", "timestamp[ms]: cast to its integer storage", true),
    (b"tsu:", "timestamp[us]: cast to its integer storage", true),
    (b"tsn:", "timestamp[ns]: cast to its integer storage", true),
    (b"w:", "fixed-size binary", false),
    (b"d:", "decimal", false),
    (b"+ud:", "dense union", false),
    (b"+us:", "sparse union", false),
];

const FIXED_SIZE_LIST: &[u8] = b"+w:";

/// Classifies a format string: a supported type, or an error that names it.
///
/// Unknown formats and strict prefixes of a known format (`"t"`, `"+w"`)
/// are `INVALID_ARROW`; valid formats without a DLPack equivalent are
/// `UNSUPPORTED_TYPE` with a hint.
#[inline]
pub fn classify(format: &[u8], accept: Accept) -> Result<Format, Error> {
    if let [c] = format {
        if let Some(t) = primitive(*c) {
            return Ok(Format::Primitive(t));
        }
    }
    classify_other(format, accept)
}

/// Everything but the one-character primitives, out of the hot path.
fn classify_other(format: &[u8], accept: Accept) -> Result<Format, Error> {
    if accept.boolean && format == b"b" {
        return Ok(Format::Primitive(&BOOLEAN));
    }
    if accept.temporal {
        if let Some((_, storage)) = TEMPORAL.iter().find(|(f, _)| *f == format) {
            return Ok(Format::Primitive(storage));
        }
        if TIMESTAMPS.iter().any(|p| format.starts_with(p)) {
            return Ok(Format::Primitive(INT64));
        }
    }
    if let Some(size) = format.strip_prefix(FIXED_SIZE_LIST) {
        return match parse_count(size) {
            Some(n) => Ok(Format::FixedSizeList(n)),
            None => Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "malformed format '{}': the list size must be a non-negative integer",
                Shown(format)
            )),
        };
    }
    if let Some((_, what)) = UNSUPPORTED.iter().find(|(f, _)| *f == format) {
        return Err(unsupported(format, what));
    }
    if let Some((_, what, _)) = UNSUPPORTED_PREFIXED.iter().find(|(p, _, may_be_empty)| {
        format.starts_with(p) && (*may_be_empty || format.len() > p.len())
    }) {
        return Err(unsupported(format, what));
    }
    let is_truncated = UNSUPPORTED
        .iter()
        .map(|(f, _)| *f)
        .chain(UNSUPPORTED_PREFIXED.iter().map(|(p, _, _)| *p))
        .chain([FIXED_SIZE_LIST])
        .any(|f| f.len() >= format.len() && f.starts_with(format));
    if format.is_empty() {
        Err(err!(ARROW_DLPACK_INVALID_ARROW, "empty format string"))
    } else if is_truncated {
        Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "truncated format '{}'",
            Shown(format)
        ))
    } else {
        Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "unknown format '{}'",
            Shown(format)
        ))
    }
}

fn unsupported(format: &[u8], what: &str) -> Error {
    err!(
        ARROW_DLPACK_UNSUPPORTED_TYPE,
        "unsupported format '{}' ({})",
        Shown(format),
        what
    )
}

/// A decimal integer without sign or leading garbage, as `i64`.
fn parse_count(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
    )
}

/// Displays untrusted bytes (a format string) safely: printable ASCII as
/// is, anything else escaped, at most 32 bytes.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 32;
        for &b in self.0.iter().take(LIMIT) {
            if b.is_ascii_graphic() || b == b' ' {
                fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > LIMIT {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn promotion_is_numpys_result_type() {
        let t = |name: &str| {
            TABLE
                .iter()
                .chain([&BOOLEAN])
                .find(|t| t.name == name)
                .unwrap()
        };
        // Read off `numpy.result_type` (NumPy 2).
        for (a, b, want) in [
            ("int64", "uint64", "float64"),
            ("int32", "float32", "float64"),
            ("int8", "uint8", "int16"),
            ("int16", "uint8", "int16"),
            ("int32", "uint32", "int64"),
            ("int8", "uint64", "float64"),
            ("uint16", "float16", "float32"),
            ("uint8", "float16", "float16"),
            ("int64", "float16", "float64"),
            ("float32", "float64", "float64"),
            ("uint8", "uint32", "uint32"),
            ("boolean", "int8", "int8"),
            ("boolean", "boolean", "boolean"),
        ] {
            assert_eq!(promote(t(a), t(b)).name, want, "{a} + {b}");
            assert_eq!(promote(t(b), t(a)).name, want, "{b} + {a}");
        }
    }

    #[test]
    fn every_table_entry_round_trips() {
        for t in &TABLE {
            assert_eq!(
                classify(&[t.format], Accept::default()).unwrap(),
                Format::Primitive(t)
            );
            assert_eq!(from_dlpack(t.dl), Some(t));
            assert_eq!(t.width() * 8, t.dl.bits as usize);
            assert_eq!(t.c_format.to_bytes(), &[t.format]);
        }
    }

    #[test]
    fn unsupported_formats_are_named_with_a_hint() {
        let e = classify(b"b", Accept::default()).unwrap_err();
        assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        assert_eq!(
            e.message(),
            "unsupported format 'b' (boolean: bit-packed, needs a copy)"
        );
        let e = classify(b"tsu:Europe/Paris", Accept::default()).unwrap_err();
        assert!(
            e.message()
                .contains("timestamp[us]: cast to its integer storage"),
            "{e}"
        );
        let e = classify(b"tss:", Accept::default()).unwrap_err();
        assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}");
        assert!(
            classify(b"u", Accept::default())
                .unwrap_err()
                .message()
                .contains("(utf8)")
        );
        assert!(
            classify(b"d:10,2", Accept::default())
                .unwrap_err()
                .message()
                .contains("decimal")
        );
    }

    #[test]
    fn booleans_and_temporal_types_only_where_a_copy_option_accepts_them() {
        let all = Accept {
            boolean: true,
            temporal: true,
        };
        assert_eq!(classify(b"b", all).unwrap(), Format::Primitive(&BOOLEAN));
        for (format, storage) in [
            (&b"tdD"[..], INT32),
            (b"tts", INT32),
            (b"ttm", INT32),
            (b"tdm", INT64),
            (b"ttu", INT64),
            (b"ttn", INT64),
            (b"tDs", INT64),
            (b"tDn", INT64),
            (b"tsu:", INT64),
            (b"tsn:Europe/Paris", INT64),
        ] {
            assert_eq!(classify(format, all).unwrap(), Format::Primitive(storage));
            let e = classify(format, Accept::default()).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        }
        // Intervals are not integers one by one; strings never are.
        for format in [&b"tiD"[..], b"tin", b"u", b"ts"] {
            assert!(classify(format, all).is_err(), "{format:?}");
        }
    }

    #[test]
    fn unknown_and_truncated_formats_are_invalid_arrow() {
        for (format, word) in [
            (&b"t"[..], "truncated"),
            (b"ts", "truncated"),
            (b"tss", "truncated"),
            (b"+", "truncated"),
            (b"+w", "truncated"),
            (b"w:", "truncated"),
            (b"x", "unknown"),
            (b"ii", "unknown"),
            (b"\xff\x01", "unknown"),
            (b"", "empty"),
        ] {
            let e = classify(format, Accept::default()).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARROW, "{format:?}");
            assert!(e.message().contains(word), "{format:?}: {e}");
        }
        assert!(
            classify(b"\xff\x01", Accept::default())
                .unwrap_err()
                .message()
                .contains("'\\xff\\x01'")
        );
    }

    #[test]
    fn fixed_size_list_sizes_are_parsed_strictly() {
        assert_eq!(
            classify(b"+w:0", Accept::default()).unwrap(),
            Format::FixedSizeList(0)
        );
        assert_eq!(
            classify(b"+w:128", Accept::default()).unwrap(),
            Format::FixedSizeList(128)
        );
        for bad in [&b"+w:-1"[..], b"+w:1x", b"+w: 1", b"+w:9999999999999999999"] {
            assert_eq!(
                classify(bad, Accept::default()).unwrap_err().status(),
                Status::ARROW_DLPACK_INVALID_ARROW
            );
        }
    }
}
