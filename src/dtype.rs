//! The one type table: Arrow format <-> DLPack dtype, the names NumPy and
//! PyTorch give each type, and the names and hints used in error messages
//! for every other Arrow format and DLPack dtype. Adding a type both sides
//! share is one named row below and its place in [`SHARED`].

use std::ffi::CStr;
use std::fmt;

use crate::abi::{
    DLDataType, K_DL_BFLOAT, K_DL_BOOL, K_DL_COMPLEX, K_DL_FLOAT, K_DL_INT, K_DL_OPAQUE_HANDLE,
    K_DL_UINT,
};
use crate::error::{Error, Term, err};

/// How the copy kernels read and write one element of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    F32,
    F64,
    /// Arrow's boolean: one bit an element in Arrow, one byte (0 or 1) as
    /// DLPack's `kDLBool`.
    Bool,
    /// bfloat16: a DLPack dtype (kDLBfloat) without an Arrow twin, made by
    /// conversion only.
    BF16,
    /// Arrow's decimals (`d:p,s,32|64|128|256`): a little-endian two's
    /// complement integer of 4, 8, 16 or 32 bytes, the value that integer
    /// divided by 10^scale. No DLPack twin: read only, converted to a float.
    Dec32,
    Dec64,
    Dec128,
    Dec256,
}

/// A type of the table: its Arrow format (where Arrow has it), its DLPack
/// dtype and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    /// The Arrow format string, as written in schemas (empty for bfloat16).
    pub c_format: &'static CStr,
    /// Its one character (0 for bfloat16).
    pub format: u8,
    pub elem: Elem,
    /// The DLPack dtype, lanes 1.
    pub dl: DLDataType,
    /// Arrow's name for the type (NumPy's for bfloat16).
    pub name: &'static str,
    /// NumPy's (and PyTorch's, after `torch.`) name.
    pub numpy: &'static str,
    /// A decimal's scale (the value is its integer / 10^scale); 0 for
    /// every other type.
    pub scale: i32,
}

impl DType {
    /// Bytes per element (of the DLPack tensor: a boolean is a byte; of
    /// Arrow's buffer for a decimal).
    pub const fn width(&self) -> usize {
        match self.elem {
            Elem::Dec256 => 32,
            _ => self.dl.bits as usize / 8,
        }
    }

    /// Whether it is one of Arrow's decimals (read only, converted to a
    /// float).
    pub fn is_decimal(&self) -> bool {
        matches!(
            self.elem,
            Elem::Dec32 | Elem::Dec64 | Elem::Dec128 | Elem::Dec256
        )
    }

    /// Whether Arrow stores it one bit per element (boolean).
    pub fn is_bit_packed(&self) -> bool {
        self.elem == Elem::Bool
    }

    /// Whether it is an integer type (the indices of a dictionary, the
    /// offsets of a list are).
    pub fn is_integer(&self) -> bool {
        matches!(self.dl.code, K_DL_INT | K_DL_UINT)
    }
}

const fn row(
    c_format: &'static CStr,
    elem: Elem,
    code: u8,
    bits: u8,
    name: &'static str,
    numpy: &'static str,
) -> DType {
    let bytes = c_format.to_bytes();
    DType {
        c_format,
        format: if bytes.is_empty() { 0 } else { bytes[0] },
        elem,
        dl: DLDataType {
            code,
            bits,
            lanes: 1,
        },
        name,
        numpy,
        scale: 0,
    }
}

pub static INT8: DType = row(c"c", Elem::I8, K_DL_INT, 8, "int8", "int8");
pub static UINT8: DType = row(c"C", Elem::U8, K_DL_UINT, 8, "uint8", "uint8");
pub static INT16: DType = row(c"s", Elem::I16, K_DL_INT, 16, "int16", "int16");
pub static UINT16: DType = row(c"S", Elem::U16, K_DL_UINT, 16, "uint16", "uint16");
pub static INT32: DType = row(c"i", Elem::I32, K_DL_INT, 32, "int32", "int32");
pub static UINT32: DType = row(c"I", Elem::U32, K_DL_UINT, 32, "uint32", "uint32");
pub static INT64: DType = row(c"l", Elem::I64, K_DL_INT, 64, "int64", "int64");
pub static UINT64: DType = row(c"L", Elem::U64, K_DL_UINT, 64, "uint64", "uint64");
pub static FLOAT16: DType = row(c"e", Elem::F16, K_DL_FLOAT, 16, "float16", "float16");
pub static FLOAT32: DType = row(c"f", Elem::F32, K_DL_FLOAT, 32, "float32", "float32");
pub static FLOAT64: DType = row(c"g", Elem::F64, K_DL_FLOAT, 64, "float64", "float64");
/// Arrow's boolean: bits in Arrow, bytes 0/1 as kDLBool. Never shared:
/// unpacked (export) or packed (import) by a copy.
pub static BOOLEAN: DType = row(c"b", Elem::Bool, K_DL_BOOL, 8, "boolean", "bool");
/// DLPack's bfloat16 (kDLBfloat 16): Arrow has no such type, so it is only
/// a conversion target of export (round to nearest even).
pub static BFLOAT16: DType = row(c"", Elem::BF16, K_DL_BFLOAT, 16, "bfloat16", "bfloat16");

/// Every type shared without a copy, both directions.
pub static SHARED: [&DType; 11] = [
    &INT8, &UINT8, &INT16, &UINT16, &INT32, &UINT32, &INT64, &UINT64, &FLOAT16, &FLOAT32, &FLOAT64,
];

/// Every dtype an export can convert to: the shared ones, kDLBool and
/// bfloat16.
pub static TARGETS: [&DType; 13] = [
    &INT8, &UINT8, &INT16, &UINT16, &INT32, &UINT32, &INT64, &UINT64, &FLOAT16, &FLOAT32, &FLOAT64,
    &BOOLEAN, &BFLOAT16,
];

/// The decimal widths, as their format's last parameter and element kind.
const DECIMAL_WIDTHS: [(u32, Elem, &str); 4] = [
    (32, Elem::Dec32, "decimal32"),
    (64, Elem::Dec64, "decimal64"),
    (128, Elem::Dec128, "decimal128"),
    (256, Elem::Dec256, "decimal256"),
];

/// The scales a decimal row exists for. Arrow bounds a decimal's
/// precision (9, 18, 38, 76 digits) but not its scale; every producer we
/// know keeps it inside the precision (Parquet: `0..=precision`), and
/// rows for this range keep every type a `&'static DType` (a scale
/// outside it is refused, named).
pub const DECIMAL_SCALES: std::ops::RangeInclusive<i32> = -128..=127;

/// One row per decimal width and scale in [`DECIMAL_SCALES`].
static DECIMALS: [[DType; 256]; 4] = decimal_rows();

const fn decimal_rows() -> [[DType; 256]; 4] {
    let blank = row(
        c"d",
        Elem::Dec128,
        K_DL_OPAQUE_HANDLE,
        0,
        "decimal",
        "decimal",
    );
    let mut rows = [[blank; 256]; 4];
    let mut w = 0;
    while w < 4 {
        let (bits, elem, name) = DECIMAL_WIDTHS[w];
        let mut i = 0;
        while i < 256 {
            // Never a DLPack dtype: kDLOpaqueHandle, lanes 0.
            rows[w][i] = DType {
                elem,
                dl: DLDataType {
                    code: K_DL_OPAQUE_HANDLE,
                    bits: if bits > 128 { 0 } else { bits as u8 },
                    lanes: 0,
                },
                name,
                numpy: name,
                scale: i as i32 + *DECIMAL_SCALES.start(),
                ..blank
            };
            i += 1;
        }
        w += 1;
    }
    rows
}

/// The row of a decimal of `bits` (32, 64, 128 or 256) and `scale`, if
/// both are in range.
pub fn decimal(bits: u32, scale: i32) -> Option<&'static DType> {
    let w = DECIMAL_WIDTHS.iter().position(|(b, _, _)| *b == bits)?;
    let i = scale.checked_sub(*DECIMAL_SCALES.start())?;
    DECIMALS[w].get(usize::try_from(i).ok()?)
}

/// The most digits a decimal of `bits` holds (Arrow's bound on its
/// precision).
fn max_precision(bits: u32) -> u32 {
    match bits {
        32 => 9,
        64 => 18,
        128 => 38,
        _ => 76,
    }
}

/// The dtype of a table without columns (NumPy's default, as
/// `numpy.empty((n, 0))` has it).
pub static NO_COLUMNS: &DType = &FLOAT64;

/// Other names NumPy and PyTorch accept for the targets.
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
const ALIASES: [(&str, &DType); 9] = [
    ("bool_", &BOOLEAN),
    ("half", &FLOAT16),
    ("single", &FLOAT32),
    ("double", &FLOAT64),
    ("float", &FLOAT64),
    ("int", &INT64),
    ("long", &INT64),
    ("short", &INT16),
    ("byte", &INT8),
];

/// The table row of a one-character primitive format.
#[inline]
pub fn primitive(format: u8) -> Option<&'static DType> {
    Some(match format {
        b'c' => &INT8,
        b'C' => &UINT8,
        b's' => &INT16,
        b'S' => &UINT16,
        b'i' => &INT32,
        b'I' => &UINT32,
        b'l' => &INT64,
        b'L' => &UINT64,
        b'e' => &FLOAT16,
        b'f' => &FLOAT32,
        b'g' => &FLOAT64,
        _ => return None,
    })
}

/// The table entry for a DLPack dtype, if Arrow has the same type.
pub fn from_dlpack(dl: DLDataType) -> Option<&'static DType> {
    SHARED.iter().copied().find(|t| t.dl == dl)
}

/// The type of a DLPack dtype that an import can take with a copy: a
/// shared type, or kDLBool (packed into Arrow's bits).
pub fn from_dlpack_or_bool(dl: DLDataType) -> Option<&'static DType> {
    from_dlpack(dl).or((dl == BOOLEAN.dl).then_some(&BOOLEAN))
}

/// The type of a DLPack dtype that a copy can convert to or from: a shared
/// type, kDLBool (8 bits, lanes 1) or bfloat16 (export only).
pub fn target(dl: DLDataType) -> Option<&'static DType> {
    TARGETS.iter().copied().find(|t| t.dl == dl)
}

/// The target named `name` as NumPy or PyTorch name it (`"float32"`,
/// `"bool"`, `"double"`, `"bfloat16"`...).
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
pub fn by_name(name: &str) -> Option<&'static DType> {
    TARGETS
        .iter()
        .copied()
        .find(|t| t.numpy == name)
        .or_else(|| ALIASES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t))
}

/// The names [`by_name`] takes, for messages.
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
pub fn names() -> impl Iterator<Item = &'static str> {
    TARGETS.iter().map(|t| t.numpy)
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
    if t.code == K_DL_BFLOAT && t.bits == 16 && t.lanes == 1 {
        return err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "unsupported dtype {{code {}, bits 16, lanes 1}} (bfloat16): Arrow has no bfloat16 type; convert the tensor to float32 first",
            t.code
        );
    }
    let name = match t.code {
        K_DL_BOOL => "bool",
        K_DL_BFLOAT => "bfloat",
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

/// The input shapes a reader accepts beyond the shared primitives and
/// fixed-size lists of them, each for a copy or share that the caller
/// offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    /// `b` (boolean), for an unpacking copy.
    pub boolean: bool,
    /// Dates, times, timestamps and durations, as their integer storage
    /// (shared, never copied).
    pub temporal: bool,
    /// A struct (`+s`) at the top: a record batch, as a 2-D tensor.
    pub table: bool,
    /// Lists, list views, strings and binaries at the top: jagged or
    /// padded tensors.
    pub variable: bool,
    /// A dictionary-encoded array, as its indices.
    pub dictionary: bool,
}

impl Accept {
    /// Every shape a reader can read.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
    pub const ALL: Accept = Accept {
        boolean: true,
        temporal: true,
        table: true,
        variable: true,
        dictionary: true,
    };
}

/// Temporal formats and their integer storage (a timestamp's zone, after
/// the colon, does not matter).
const TEMPORAL: &[(&[u8], &DType)] = &[
    (b"tdD", &INT32),
    (b"tts", &INT32),
    (b"ttm", &INT32),
    (b"tdm", &INT64),
    (b"ttu", &INT64),
    (b"ttn", &INT64),
    (b"tDs", &INT64),
    (b"tDm", &INT64),
    (b"tDu", &INT64),
    (b"tDn", &INT64),
];
const TIMESTAMPS: [&[u8]; 4] = [b"tss:", b"tsm:", b"tsu:", b"tsn:"];

/// What a format string describes, as far as export is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A fixed-width number (or, accepted, a boolean or a temporal type's
    /// storage).
    Primitive(&'static DType),
    /// `+w:N`: rows of `N` child elements.
    FixedSizeList(i64),
    /// `w:N`: rows of `N` bytes in the array's own data buffer, read as
    /// `N` uint8 elements.
    FixedSizeBinary(i64),
    /// `d:p,s[,bits]`: a decimal (its row holds width and scale).
    Decimal(&'static DType),
    /// `+r`: run ends and values, decoded (a copy).
    RunEndEncoded,
    /// `n`: no values, every row null.
    Null,
    /// `+s`.
    Struct,
    /// `+l` / `+L` (`large`: int64 offsets).
    List { large: bool },
    /// `+vl` / `+vL`.
    ListView { large: bool },
    /// `u` `z` / `U` `Z`: bytes with int32 / int64 offsets.
    Binary { large: bool },
    /// `vu` `vz`: 16-byte views.
    BinaryView,
}

/// Formats that are valid Arrow but have no DLPack equivalent, with a name
/// and, where one exists, what the user can do instead.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (b"b", "boolean: bit-packed, needs a copy"),
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
    (b"+s", "struct"),
    (b"+m", "map"),
];

/// Variable-length formats: valid where [`Accept::variable`] is, with
/// their name (the hint, where they are not, names the functions that
/// take them).
const VARIABLE: &[(&[u8], &str, Format)] = &[
    (b"z", "binary", Format::Binary { large: false }),
    (b"Z", "large binary", Format::Binary { large: true }),
    (b"vz", "binary view", Format::BinaryView),
    (b"u", "utf8", Format::Binary { large: false }),
    (b"U", "large utf8", Format::Binary { large: true }),
    (b"vu", "utf8 view", Format::BinaryView),
    (b"+l", "list", Format::List { large: false }),
    (b"+L", "large list", Format::List { large: true }),
    (b"+vl", "list view", Format::ListView { large: false }),
    (b"+vL", "large list view", Format::ListView { large: true }),
];

/// Formats that take a parameter after the prefix (`tss:UTC`, `w:16`, ...):
/// prefix, name, whether the parameter may be empty (a timestamp without a
/// time zone is `tss:`).
const UNSUPPORTED_PREFIXED: &[(&[u8], &str, bool)] = &[
    (b"tss:", "timestamp[s]: cast to its integer storage", true),
    (b"tsm:", "timestamp[ms]: cast to its integer storage", true),
    (b"tsu:", "timestamp[us]: cast to its integer storage", true),
    (b"tsn:", "timestamp[ns]: cast to its integer storage", true),
    (b"+ud:", "dense union", false),
    (b"+us:", "sparse union", false),
];

const FIXED_SIZE_LIST: &[u8] = b"+w:";
const FIXED_SIZE_BINARY: &[u8] = b"w:";
const DECIMAL: &[u8] = b"d:";

/// The list size of a `fixed_size_list` format (`+w:N`), the one parse of
/// it; `None` for any other format or a malformed size.
#[inline]
pub fn fixed_size_list(format: &[u8]) -> Option<i64> {
    format.strip_prefix(FIXED_SIZE_LIST).and_then(parse_count)
}

/// Classifies a format string: a supported type, or an error that names it.
///
/// Unknown formats and strict prefixes of a known format (`"t"`, `"+w"`)
/// are `INVALID_ARROW`; valid formats without a DLPack equivalent (or not
/// accepted here) are `UNSUPPORTED_TYPE` with a hint.
#[inline]
pub fn classify(format: &[u8], accept: Accept) -> Result<Format, Error> {
    if let [c] = format {
        if let Some(t) = primitive(*c) {
            return Ok(Format::Primitive(t));
        }
    }
    if let Some(n) = fixed_size_list(format) {
        return Ok(Format::FixedSizeList(n));
    }
    classify_other(format, accept)
}

/// Everything but the one-character primitives, out of the hot path.
#[inline(never)]
fn classify_other(format: &[u8], accept: Accept) -> Result<Format, Error> {
    if accept.boolean && format == b"b" {
        return Ok(Format::Primitive(&BOOLEAN));
    }
    if accept.temporal {
        if let Some((_, storage)) = TEMPORAL.iter().find(|(f, _)| *f == format) {
            return Ok(Format::Primitive(storage));
        }
        if TIMESTAMPS.iter().any(|p| format.starts_with(p)) {
            return Ok(Format::Primitive(&INT64));
        }
    }
    if format == b"+s" && accept.table {
        return Ok(Format::Struct);
    }
    match format {
        b"+r" => return Ok(Format::RunEndEncoded),
        b"n" => return Ok(Format::Null),
        _ => {}
    }
    if format.starts_with(FIXED_SIZE_LIST) {
        // Not a valid size: `classify` took every valid one.
        return match fixed_size_list(format) {
            Some(n) => Ok(Format::FixedSizeList(n)),
            None => Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "malformed format '{}': the list size must be a non-negative integer",
                Shown(format)
            )),
        };
    }
    if let Some(width) = format
        .strip_prefix(FIXED_SIZE_BINARY)
        .filter(|w| !w.is_empty())
    {
        return match parse_count(width) {
            Some(n) => Ok(Format::FixedSizeBinary(n)),
            None => Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "malformed format '{}': the byte width must be a non-negative integer",
                Shown(format)
            )),
        };
    }
    if let Some(params) = format.strip_prefix(DECIMAL).filter(|p| !p.is_empty()) {
        return decimal_format(format, params).map(Format::Decimal);
    }
    if let Some((_, what, parsed)) = VARIABLE.iter().find(|(f, _, _)| *f == format) {
        return match accept.variable {
            true => Ok(*parsed),
            false => Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "unsupported format '{}' ({what}); a variable-length type: export it with {}",
                Shown(format),
                Term::JaggedOrPadded
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
        .chain(VARIABLE.iter().map(|(f, _, _)| *f))
        .chain(UNSUPPORTED_PREFIXED.iter().map(|(p, _, _)| *p))
        .chain([FIXED_SIZE_LIST, FIXED_SIZE_BINARY, DECIMAL])
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

/// A decimal's parameters, `p,s` or `p,s,bits`: the row of its width and
/// scale; `INVALID_ARROW` for a malformed or out-of-range precision or
/// width, `UNSUPPORTED_TYPE` for a scale outside [`DECIMAL_SCALES`].
fn decimal_format(format: &[u8], params: &[u8]) -> Result<&'static DType, Error> {
    let malformed = || {
        err!(
            ARROW_DLPACK_INVALID_ARROW,
            "malformed format '{}': a decimal is 'd:precision,scale[,bitwidth]'",
            Shown(format)
        )
    };
    let mut parts = params.split(|&b| b == b',');
    let (Some(p), Some(s), bits, None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let precision = parse_count(p).ok_or_else(malformed)?;
    let scale = match s.strip_prefix(b"-") {
        Some(digits) => parse_count(digits).map(|n| -n),
        None => parse_count(s),
    }
    .ok_or_else(malformed)?;
    let bits = match bits {
        None => 128,
        Some(b) => match parse_count(b) {
            Some(n @ (32 | 64 | 128 | 256)) => n as u32,
            _ => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "format '{}': a decimal's bit width is 32, 64, 128 or 256",
                    Shown(format)
                ));
            }
        },
    };
    if !(1..=i64::from(max_precision(bits))).contains(&precision) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "format '{}': a decimal{bits}'s precision is 1 to {}, not {precision}",
            Shown(format),
            max_precision(bits)
        ));
    }
    i32::try_from(scale)
        .ok()
        .and_then(|scale| decimal(bits, scale))
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "format '{}': a decimal's scale must be in {}..={}, not {scale}",
                Shown(format),
                DECIMAL_SCALES.start(),
                DECIMAL_SCALES.end()
            )
        })
}

/// `UNSUPPORTED_TYPE` for a decimal where no float dtype was asked for.
pub fn decimal_needs_dtype(t: &DType) -> Error {
    err!(
        ARROW_DLPACK_UNSUPPORTED_TYPE,
        "unsupported type {} (scale {}): DLPack has no decimal type; {} (one copy, the nearest float)",
        t.name,
        t.scale,
        Term::DecimalAdvice
    )
}

/// The dtype a column of `source` becomes with `asked` (`None`: its own):
/// a decimal only as float64 or float32, asked for.
pub fn target_of(
    source: &'static DType,
    asked: Option<&'static DType>,
) -> Result<&'static DType, Error> {
    match (source.is_decimal(), asked) {
        (false, asked) => Ok(asked.unwrap_or(source)),
        (true, Some(t)) if matches!(t.elem, Elem::F32 | Elem::F64) => Ok(t),
        (true, _) => Err(decimal_needs_dtype(source)),
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
#[inline]
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

/// Displays untrusted bytes (a format string, a name) safely: printable
/// ASCII as is, anything else escaped, at most 32 bytes.
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
        let t = |name: &str| by_name(name).unwrap();
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
            ("bool", "int8", "int8"),
            ("bool", "bool", "bool"),
        ] {
            assert_eq!(promote(t(a), t(b)).numpy, want, "{a} + {b}");
            assert_eq!(promote(t(b), t(a)).numpy, want, "{b} + {a}");
        }
    }

    #[test]
    fn every_shared_row_round_trips() {
        for &t in &SHARED {
            assert_eq!(
                classify(&[t.format], Accept::default()).unwrap(),
                Format::Primitive(t)
            );
            assert_eq!(from_dlpack(t.dl), Some(t));
            assert_eq!(target(t.dl), Some(t));
            assert_eq!(by_name(t.numpy), Some(t));
            assert_eq!(t.width() * 8, t.dl.bits as usize);
            assert_eq!(t.c_format.to_bytes(), &[t.format]);
        }
        assert_eq!(by_name("bfloat16"), Some(&BFLOAT16));
        assert_eq!(by_name("double"), Some(&FLOAT64));
        assert_eq!(by_name("bool"), Some(&BOOLEAN));
        assert_eq!(from_dlpack(BFLOAT16.dl), None, "Arrow has no bfloat16");
        assert_eq!(target(BFLOAT16.dl), Some(&BFLOAT16));
        assert!(by_name("complex64").is_none());
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
        let e = classify(b"u", Accept::default()).unwrap_err();
        assert!(
            e.message().contains("unsupported format 'u' (utf8);"),
            "{e}"
        );
        assert!(e.message().contains("arrow_dlpack_export_jagged"), "{e}");
        assert!(
            decimal_needs_dtype(decimal(128, 2).unwrap())
                .message()
                .contains("decimal128 (scale 2)")
        );
    }

    #[test]
    fn decimal_formats_are_parsed_strictly() {
        for (format, bits, scale) in [
            (&b"d:10,2"[..], 128, 2),
            (b"d:38,0", 128, 0),
            (b"d:5,-3", 128, -3),
            (b"d:76,76,256", 256, 76),
            (b"d:9,2,32", 32, 2),
            (b"d:18,4,64", 64, 4),
            (b"d:1,127", 128, 127),
            (b"d:1,-128", 128, -128),
        ] {
            let t = decimal(bits, scale).unwrap();
            assert_eq!(
                classify(format, Accept::default()).unwrap(),
                Format::Decimal(t)
            );
            assert_eq!((t.scale, t.is_decimal()), (scale, true));
            assert_eq!(t.width() as u32 * 8, bits);
        }
        for (format, status, word) in [
            (
                &b"d:39,2"[..],
                Status::ARROW_DLPACK_INVALID_ARROW,
                "precision is 1 to 38, not 39",
            ),
            (b"d:0,0", Status::ARROW_DLPACK_INVALID_ARROW, "not 0"),
            (b"d:10,2,32", Status::ARROW_DLPACK_INVALID_ARROW, "1 to 9"),
            (b"d:77,2,256", Status::ARROW_DLPACK_INVALID_ARROW, "1 to 76"),
            (
                b"d:10,2,100",
                Status::ARROW_DLPACK_INVALID_ARROW,
                "bit width",
            ),
            (b"d:10", Status::ARROW_DLPACK_INVALID_ARROW, "malformed"),
            (
                b"d:10,2,128,1",
                Status::ARROW_DLPACK_INVALID_ARROW,
                "malformed",
            ),
            (b"d:a,2", Status::ARROW_DLPACK_INVALID_ARROW, "malformed"),
            (b"d:10,--2", Status::ARROW_DLPACK_INVALID_ARROW, "malformed"),
            (b"d:", Status::ARROW_DLPACK_INVALID_ARROW, "truncated"),
            (
                b"d:10,128",
                Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
                "-128..=127, not 128",
            ),
            (
                b"d:10,-999999",
                Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
                "not -999999",
            ),
        ] {
            let e = classify(format, Accept::default()).unwrap_err();
            assert_eq!(e.status(), status, "{format:?}: {e}");
            assert!(e.message().contains(word), "{format:?}: {e}");
        }
        // A decimal becomes only the float asked for.
        let t = decimal(128, 2).unwrap();
        assert_eq!(target_of(t, Some(&FLOAT32)).unwrap(), &FLOAT32);
        assert_eq!(target_of(&INT8, None).unwrap(), &INT8);
        for asked in [None, Some(&INT64), Some(&FLOAT16), Some(&BFLOAT16)] {
            let e = target_of(t, asked).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        }
    }

    #[test]
    fn fixed_size_binary_widths_are_parsed_strictly() {
        assert_eq!(
            classify(b"w:16", Accept::default()).unwrap(),
            Format::FixedSizeBinary(16)
        );
        assert_eq!(
            classify(b"w:0", Accept::default()).unwrap(),
            Format::FixedSizeBinary(0)
        );
        for bad in [&b"w:-1"[..], b"w:1x", b"w:99999999999999999999"] {
            let e = classify(bad, Accept::default()).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARROW, "{e}");
        }
    }

    #[test]
    fn each_shape_only_where_accepted() {
        let all = Accept {
            boolean: true,
            temporal: true,
            table: true,
            variable: true,
            dictionary: true,
        };
        assert_eq!(classify(b"b", all).unwrap(), Format::Primitive(&BOOLEAN));
        for (format, storage) in [
            (&b"tdD"[..], &INT32),
            (b"tts", &INT32),
            (b"ttm", &INT32),
            (b"tdm", &INT64),
            (b"ttu", &INT64),
            (b"ttn", &INT64),
            (b"tDs", &INT64),
            (b"tDn", &INT64),
            (b"tsu:", &INT64),
            (b"tsn:Europe/Paris", &INT64),
        ] {
            assert_eq!(classify(format, all).unwrap(), Format::Primitive(storage));
            let e = classify(format, Accept::default()).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        }
        for (format, parsed) in [
            (&b"+s"[..], Format::Struct),
            (b"+l", Format::List { large: false }),
            (b"+L", Format::List { large: true }),
            (b"+vL", Format::ListView { large: true }),
            (b"u", Format::Binary { large: false }),
            (b"Z", Format::Binary { large: true }),
            (b"vu", Format::BinaryView),
        ] {
            assert_eq!(classify(format, all).unwrap(), parsed);
            let e = classify(format, Accept::default()).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        }
        // Intervals are not integers one by one.
        for format in [&b"tiD"[..], b"tin", b"ts"] {
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
            (b"+v", "truncated"),
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
