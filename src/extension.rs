//! The canonical `arrow.fixed_shape_tensor` extension type, in one place:
//! read from a schema's metadata block, parsed, applied to an exported
//! tensor's dims ([`reshape`]), and written for an imported one
//! ([`metadata_block`]).
//!
//! The JSON is parsed here, not with arrow-schema's `FixedShapeTensor`
//! support: arrow-schema 60 reads the permutation under the key
//! `"permutations"`, while the specification (and pyarrow, which writes the
//! metadata users actually have) says `"permutation"`, so it would reject
//! every permuted tensor; it also computes the list size with unchecked
//! arithmetic and `expect`, which untrusted input must not reach. The
//! parser below accepts exactly JSON, allocates nothing, and bounds its
//! nesting depth.

use std::fmt::Write as _;

use crate::abi::ArrowSchema;
use crate::dims::{Dims, MAX_NDIM, row_major_strides};
use crate::error::{Error, err};

pub const EXTENSION_NAME_KEY: &[u8] = b"ARROW:extension:name";
pub const EXTENSION_METADATA_KEY: &[u8] = b"ARROW:extension:metadata";
pub const FIXED_SHAPE_TENSOR: &[u8] = b"arrow.fixed_shape_tensor";

/// Most entries and bytes per entry accepted in a metadata block. The block
/// carries no total size, so lengths are the only thing to check: these
/// bounds turn a corrupt length into an error rather than a read of
/// gigabytes.
const MAX_ENTRIES: i32 = 1 << 16;
const MAX_ENTRY_BYTES: i32 = 1 << 24;

/// The JSON parameters of a fixed_shape_tensor extension, if the schema is
/// one (`None` for no metadata or another extension type: those export
/// their storage type unchanged).
///
/// # Safety
/// `schema.metadata` is NULL or a metadata block as the C Data Interface
/// lays it out (int32 count, then int32-length-prefixed keys and values);
/// the lengths are checked before anything they cover is read.
pub unsafe fn fixed_shape_tensor_json(schema: &ArrowSchema) -> Result<Option<&[u8]>, Error> {
    if schema.metadata.is_null() {
        return Ok(None);
    }
    let mut cursor = schema.metadata.cast::<u8>();
    // SAFETY: the block starts with an int32 count (unaligned in general).
    let count = unsafe { read_i32(&mut cursor) };
    if !(0..=MAX_ENTRIES).contains(&count) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.metadata has {count} entries"
        ));
    }
    let (mut name, mut json) = (None, None);
    for entry in 0..count {
        // SAFETY: each entry is a length-prefixed key then value; `bytes`
        // checks each length before reading what it covers.
        let (key, value) = unsafe {
            (
                bytes(&mut cursor, entry, "key")?,
                bytes(&mut cursor, entry, "value")?,
            )
        };
        if key == EXTENSION_NAME_KEY {
            name = Some(value);
        } else if key == EXTENSION_METADATA_KEY {
            json = Some(value);
        }
    }
    match (name, json) {
        (Some(FIXED_SHAPE_TENSOR), Some(json)) => Ok(Some(json)),
        (Some(FIXED_SHAPE_TENSOR), None) => Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor without ARROW:extension:metadata"
        )),
        _ => Ok(None),
    }
}

/// # Safety
/// `*cursor` is valid for reading 4 bytes.
unsafe fn read_i32(cursor: &mut *const u8) -> i32 {
    // SAFETY: `read_i32`'s caller promises it: `*cursor` is valid for reading 4 bytes.
    let value = unsafe { cursor.cast::<i32>().read_unaligned() };
    // SAFETY: within the block (caller's contract).
    *cursor = unsafe { cursor.add(4) };
    value
}

/// # Safety
/// `*cursor` is at a length-prefixed byte string of the metadata block.
unsafe fn bytes<'a>(cursor: &mut *const u8, entry: i32, what: &str) -> Result<&'a [u8], Error> {
    // SAFETY: `bytes`'s caller promises it: `*cursor` is at a length-prefixed byte string of
    // the metadata block.
    let len = unsafe { read_i32(cursor) };
    if !(0..=MAX_ENTRY_BYTES).contains(&len) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.metadata entry {entry}: {what} length {len}"
        ));
    }
    // SAFETY: the producer wrote `len` bytes here (the length is sane).
    let slice = unsafe { std::slice::from_raw_parts(*cursor, len as usize) };
    // SAFETY: just past those bytes, still within the block.
    *cursor = unsafe { cursor.add(len as usize) };
    Ok(slice)
}

/// The parameters of a fixed_shape_tensor type: the physical shape of each
/// tensor (row-major in storage) and how logical dimensions map to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    ndim: usize,
    shape: [i64; MAX_NDIM],
    permutation: [usize; MAX_NDIM],
    /// Row-major strides of the physical shape, computed (checked) once
    /// the shape is known.
    strides: [i64; MAX_NDIM],
    list_size: i64,
}

impl TensorType {
    /// The physical shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape[..self.ndim]
    }

    /// Logical dimension `i` is physical dimension `permutation()[i]`
    /// (the identity when the metadata has none).
    pub fn permutation(&self) -> &[usize] {
        &self.permutation[..self.ndim]
    }

    /// Elements per tensor: the product of the shape.
    pub fn list_size(&self) -> i64 {
        self.list_size
    }

    /// Computes the physical strides and the list size with checked
    /// arithmetic: every suffix product must fit, not only the whole
    /// product (a 0 extent makes the whole product 0 whatever the others).
    fn set_strides(&mut self) -> Result<(), Error> {
        let strides = &mut self.strides;
        let size = row_major_strides(&self.shape[..self.ndim], |d, s| strides[d] = s);
        self.list_size = size.ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "arrow.fixed_shape_tensor shape {:?}: the product overflows",
                self.shape()
            )
        })?;
        Ok(())
    }

    /// The logical shape and strides (in elements) of one tensor.
    pub fn logical(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.permutation()
            .iter()
            .map(move |&p| (self.shape[p], self.strides[p]))
    }
}

/// Replaces the `[length, N]` of a fixed_shape_tensor's storage in `dims`
/// with `[length, *logical shape]`, strides derived from the permutation.
/// Out of line: its kilobyte of parsed parameters stays off the stack of
/// the common path.
#[inline(never)]
pub fn reshape(dims: &mut Dims, json: &[u8]) -> Result<(), Error> {
    let t = &parse_tensor_type(json)?;
    let list_size = t.list_size();
    if dims.ndim() != 2 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor storage must be a fixed_size_list of a number, found {} list levels",
            dims.ndim() - 1
        ));
    }
    if dims.shape()[1] != list_size {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor shape {:?} holds {list_size} elements but the list size is {}",
            t.shape(),
            dims.shape()[1]
        ));
    }
    dims.truncate(1);
    for (extent, stride) in t.logical() {
        dims.push_strided(extent, stride)?;
    }
    Ok(())
}

/// The metadata block (C Data Interface layout: an int32 count, then
/// int32-length-prefixed keys and values) that makes a schema an
/// `arrow.fixed_shape_tensor` of physical shape `shape` (row-major in
/// storage) and, when given, `permutation` (logical dimension `i` is
/// physical dimension `permutation[i]`).
pub fn metadata_block(shape: &[i64], permutation: Option<&[usize]>) -> Vec<u8> {
    let mut json = format!("{{\"shape\":{shape:?}");
    if let Some(p) = permutation {
        let _ = write!(json, ",\"permutation\":{p:?}");
    }
    json.push('}');
    let mut block = 2i32.to_ne_bytes().to_vec();
    for part in [
        EXTENSION_NAME_KEY,
        FIXED_SHAPE_TENSOR,
        EXTENSION_METADATA_KEY,
        json.as_bytes(),
    ] {
        // Lengths are small: the JSON of at most 64 extents.
        block.extend((part.len() as i32).to_ne_bytes());
        block.extend(part);
    }
    block
}

/// Parses `{"shape": [...], "permutation": [...], "dim_names": [...]}`;
/// other keys are ignored, as the specification allows.
pub fn parse_tensor_type(json: &[u8]) -> Result<TensorType, Error> {
    let mut p = Parser { s: json, at: 0 };
    let mut t = TensorType {
        ndim: 0,
        shape: [0; MAX_NDIM],
        permutation: [0; MAX_NDIM],
        strides: [0; MAX_NDIM],
        list_size: 0,
    };
    let (mut has_shape, mut n_permutation, mut n_names) = (false, None, None);
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if !p.eat(b'}') {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match key {
                b"shape" => {
                    t.ndim = p.int_array(&mut t.shape, "shape")?;
                    has_shape = true;
                }
                b"permutation" => {
                    let mut values = [0i64; MAX_NDIM];
                    let n = p.int_array(&mut values, "permutation")?;
                    for (dst, v) in t.permutation.iter_mut().zip(&values[..n]) {
                        *dst = *v as usize;
                    }
                    n_permutation = Some(n);
                }
                b"dim_names" => n_names = Some(p.string_array()?),
                _ => p.skip_value(0)?,
            }
            p.ws();
            if p.eat(b'}') {
                break;
            }
            p.expect(b',')?;
        }
    }
    p.ws();
    if p.at != json.len() {
        return Err(p.error("trailing characters"));
    }
    if !has_shape {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor metadata has no \"shape\""
        ));
    }
    let ndim = t.ndim;
    match n_permutation {
        None => (0..ndim).for_each(|i| t.permutation[i] = i),
        Some(n) => {
            let mut seen = [false; MAX_NDIM];
            let valid = n == ndim
                && t.permutation[..n]
                    .iter()
                    .all(|&p| p < ndim && !std::mem::replace(&mut seen[p], true));
            if !valid {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "arrow.fixed_shape_tensor permutation {:?} is not a permutation of 0..{ndim}",
                    &t.permutation[..n]
                ));
            }
        }
    }
    if let Some(n) = n_names.filter(|&n| n != ndim) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor has {n} dim_names for {ndim} dimensions"
        ));
    }
    t.set_strides()?;
    Ok(t)
}

/// A strict JSON reader over bytes, just enough for the metadata.
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

/// Deepest nesting skipped inside an ignored value.
const MAX_DEPTH: usize = 32;

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> Error {
        err!(
            ARROW_DLPACK_INVALID_ARROW,
            "arrow.fixed_shape_tensor metadata is not valid JSON: {what} at byte {}",
            self.at
        )
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.at += hit as usize;
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), Error> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }

    /// A string's raw contents (escapes are validated, not decoded: keys
    /// are compared as written, and names are only counted).
    fn string(&mut self) -> Result<&'a [u8], Error> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u')
                            if self.s.len() >= self.at + 5
                                && self.s[self.at + 1..self.at + 5]
                                    .iter()
                                    .all(u8::is_ascii_hexdigit) =>
                        {
                            self.at += 5
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("control character in string")),
                Some(_) => self.at += 1,
            }
        }
        let raw = &self.s[start..self.at];
        self.at += 1;
        if std::str::from_utf8(raw).is_err() {
            return Err(self.error("invalid UTF-8"));
        }
        Ok(raw)
    }

    /// A non-negative integer that fits `i64`.
    fn int(&mut self, what: &str) -> Result<i64, Error> {
        let start = self.at;
        let mut value = 0i64;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(d - b'0')))
                .ok_or_else(|| {
                    err!(
                        ARROW_DLPACK_INVALID_ARROW,
                        "arrow.fixed_shape_tensor {what}: a value overflows"
                    )
                })?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0
            || (digits > 1 && self.s[start] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "arrow.fixed_shape_tensor {what}: expected non-negative integers (byte {})",
                start
            ));
        }
        Ok(value)
    }

    /// `[item, ...]`: calls `item` with each element's index; the count.
    fn list(
        &mut self,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        self.expect(b'[')?;
        self.ws();
        if self.eat(b']') {
            return Ok(0);
        }
        let mut n = 0;
        loop {
            self.ws();
            item(self, n)?;
            n += 1;
            self.ws();
            if self.eat(b']') {
                return Ok(n);
            }
            self.expect(b',')?;
        }
    }

    /// `[int, ...]` into `out`; the count, at most `MAX_NDIM - 1` (one
    /// dimension is the array's length).
    fn int_array(&mut self, out: &mut [i64; MAX_NDIM], what: &str) -> Result<usize, Error> {
        self.list(|p, n| {
            if n == MAX_NDIM - 1 {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                    "arrow.fixed_shape_tensor {what} has more than {} dimensions",
                    MAX_NDIM - 1
                ));
            }
            out[n] = p.int(what)?;
            Ok(())
        })
    }

    /// `["name", ...]`: the count.
    fn string_array(&mut self) -> Result<usize, Error> {
        self.list(|p, _| p.string().map(drop))
    }

    /// Any JSON value, validated and ignored.
    fn skip_value(&mut self, depth: usize) -> Result<(), Error> {
        if depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(open @ (b'[' | b'{')) => {
                let close = if open == b'[' { b']' } else { b'}' };
                self.at += 1;
                self.ws();
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    if self.eat(close) {
                        return Ok(());
                    }
                    self.expect(b',')?;
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                self.eat(b'-');
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                ) {
                    self.at += 1;
                }
                if self.at == start {
                    Err(self.error("bad number"))
                } else {
                    Ok(())
                }
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        if self.s[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn parses_what_pyarrow_writes() {
        let t = parse_tensor_type(
            br#"{"shape":[2,3,4],"dim_names":["C","H","W"],"permutation":[2,0,1]}"#,
        )
        .unwrap();
        assert_eq!(t.shape(), &[2, 3, 4]);
        assert_eq!(t.permutation(), &[2, 0, 1]);
        assert_eq!(t.list_size(), 24);
        // Logical dim i is physical dim permutation[i]: physical strides [12, 4, 1].
        assert_eq!(
            t.logical().collect::<Vec<_>>(),
            vec![(4, 1), (2, 12), (3, 4)]
        );
        let t = parse_tensor_type(
            b" { \"shape\" : [ 5 ] , \"other\": {\"a\": [1, -2.5e3, null, true]} } ",
        )
        .unwrap();
        assert_eq!(t.logical().collect::<Vec<_>>(), vec![(5, 1)]);
        assert_eq!(
            parse_tensor_type(br#"{"shape":[]}"#).unwrap().list_size(),
            1
        );
    }

    #[test]
    fn written_metadata_reads_back() {
        let block = metadata_block(&[4, 3], Some(&[1, 0]));
        let schema = ArrowSchema {
            format: c"+w:12".as_ptr(),
            name: std::ptr::null(),
            metadata: block.as_ptr().cast(),
            flags: 0,
            n_children: 0,
            children: std::ptr::null_mut(),
            dictionary: std::ptr::null_mut(),
            release: None,
            private_data: std::ptr::null_mut(),
        };
        // SAFETY: a well-formed block, alive for the call.
        let json = unsafe { fixed_shape_tensor_json(&schema) }
            .unwrap()
            .unwrap();
        let t = parse_tensor_type(json).unwrap();
        assert_eq!((t.shape(), t.permutation()), (&[4, 3][..], &[1, 0][..]));
        let mut dims = Dims::new();
        dims.push(2).unwrap();
        dims.push(12).unwrap();
        dims.set_row_major_strides().unwrap();
        reshape(&mut dims, json).unwrap();
        assert_eq!(
            (dims.shape(), dims.strides()),
            (&[2, 3, 4][..], &[12, 1, 3][..])
        );
    }

    #[test]
    fn rejects_malformed_metadata_naming_the_problem() {
        for (json, needle) in [
            (
                &br#"{"shape":[2,3],"permutation":[0,0]}"#[..],
                "not a permutation",
            ),
            (br#"{"shape":[2,3],"permutation":[0]}"#, "not a permutation"),
            (
                br#"{"shape":[2,3],"permutation":[0,2]}"#,
                "not a permutation",
            ),
            (
                br#"{"shape":[2,3],"dim_names":["a"]}"#,
                "1 dim_names for 2 dimensions",
            ),
            (br#"{"shape":[-1]}"#, "non-negative integers"),
            (br#"{"shape":[1.5]}"#, "non-negative integers"),
            (br#"{"shape":[99999999999,99999999999]}"#, "overflows"),
            (br#"{"shape":[99999999999999999999]}"#, "overflows"),
            // The whole product is 0, but a stride overflows.
            (br#"{"shape":[0,99999999999,99999999999]}"#, "overflows"),
            (br#"{"dim_names":[]}"#, "no \"shape\""),
            (br#"{"shape":[2]"#, "not valid JSON"),
            (br#"{"shape":[2]} x"#, "trailing"),
            (br#"{"shape":[2],"x":"\q"}"#, "bad escape"),
            (b"", "not valid JSON"),
        ] {
            let e = parse_tensor_type(json).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARROW, "{e}");
            assert!(
                e.message().contains(needle),
                "{:?}: {e}",
                String::from_utf8_lossy(json)
            );
        }
        let deep = format!(
            r#"{{"shape":[1],"x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(
            parse_tensor_type(deep.as_bytes())
                .unwrap_err()
                .message()
                .contains("nested too deeply")
        );
        let many = format!(r#"{{"shape":[{}]}}"#, vec!["1"; 64].join(","));
        assert_eq!(
            parse_tensor_type(many.as_bytes()).unwrap_err().status(),
            Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT
        );
    }
}
