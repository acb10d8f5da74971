//! Files the loader reads itself: paths resolved (a file, a directory, a
//! glob), each told apart by its magic bytes; Arrow IPC files (the file
//! format) memory-mapped, their record batches shared straight out of the
//! map; the columns asked for checked to be the same in every file. What
//! comes out is what every other loader source is: a schema and its
//! chunks (`loader::Loader::new` reads them as it reads any).
//!
//! Parquet files are recognised and refused for now: decoding row groups
//! out of core needs the loader to fetch chunks lazily, which it does not
//! yet (docs/epochs.md says so).

use std::ffi::c_void;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StructArray};
use arrow_buffer::Buffer;
use arrow_data::ffi::FFI_ArrowArray;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Field, Fields};

use crate::abi::{ArrowArray, ArrowSchema};
use crate::error::{Error, err};

/// Why paths did not resolve: one names nothing (Python's
/// `FileNotFoundError`), or another refusal.
// As large as the crate's every `Result<_, Error>`: made once per loader.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PathError {
    Missing(String),
    Refused(Error),
}

impl From<Error> for PathError {
    fn from(e: Error) -> PathError {
        PathError::Refused(e)
    }
}

/// The files `paths` name, in read order: a file as it is; a directory's
/// files (not recursively), byte-sorted, skipping names that start with
/// `.` or `_` (Spark's `_SUCCESS`, as `pyarrow.dataset` skips them); a
/// path that names nothing but holds `*`, `?` or `[` is a glob, expanded
/// and sorted (a string naming an existing path is never a glob).
pub fn resolve(paths: &[String]) -> Result<Vec<PathBuf>, PathError> {
    if paths.is_empty() {
        return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "no path given").into());
    }
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut files = Vec::new();
                let entries = fs::read_dir(path).map_err(|e| io(p, &e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| io(p, &e))?;
                    let name = entry.file_name();
                    if name
                        .as_bytes()
                        .first()
                        .is_some_and(|b| *b == b'.' || *b == b'_')
                    {
                        continue;
                    }
                    let full = entry.path();
                    if fs::metadata(&full).is_ok_and(|m| m.is_file()) {
                        files.push(full);
                    }
                }
                if files.is_empty() {
                    return Err(err!(
                        ARROW_DLPACK_INVALID_ARGUMENT,
                        "directory {p:?} holds no file (names starting with '.' or '_' are skipped)"
                    )
                    .into());
                }
                files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
                out.extend(files);
            }
            Ok(_) => out.push(path.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !p.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                    return Err(PathError::Missing(p.clone()));
                }
                let found = glob(p)?;
                if found.is_empty() {
                    return Err(PathError::Missing(p.clone()));
                }
                out.extend(found);
            }
            Err(e) => return Err(io(p, &e).into()),
        }
    }
    Ok(out)
}

fn io(path: &str, e: &std::io::Error) -> Error {
    err!(ARROW_DLPACK_INVALID_ARGUMENT, "path {path:?}: {e}")
}

/// The files a glob names, sorted: `*`, `?` and `[...]` within one
/// component; a wildcard never matches a leading `.`.
fn glob(pattern: &str) -> Result<Vec<PathBuf>, Error> {
    let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let mut current = vec![if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for (k, part) in parts.iter().enumerate() {
        let last = k + 1 == parts.len();
        let wanted =
            |p: &Path| fs::metadata(p).is_ok_and(|m| if last { m.is_file() } else { m.is_dir() });
        let mut next = Vec::new();
        for base in &current {
            if !part.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                let p = base.join(part);
                if wanted(&p) {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.as_bytes();
                if name.first() == Some(&b'.') && !part.starts_with('.') {
                    continue;
                }
                if matches_glob(part.as_bytes(), name) {
                    let p = base.join(entry.file_name());
                    if wanted(&p) {
                        next.push(p);
                    }
                }
            }
        }
        current = next;
    }
    current.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(current)
}

/// Whether `name` matches the glob component `pattern` (`*`, `?`,
/// `[abc]`, `[a-z]`, `[!a]` / `[^a]`).
fn matches_glob(pattern: &[u8], name: &[u8]) -> bool {
    // Backtracking over the last `*`: linear in practice, never recursive.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, end)) = class(&pattern[p..], name[n]) {
                        if hit {
                            p += end;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `pattern`: whether `c` is in it, and
/// the class's length; `None` when it is not closed (a literal `[`).
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            hit |= pattern[i] <= c && c <= pattern[i + 2];
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    None
}

/// A file mapped read-only into memory; unmapped when the last buffer
/// pointing into it is dropped.
struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the map is read-only and never moved; any thread may read it or
// unmap it (once, in `Drop`).
unsafe impl Send for Map {}
// SAFETY: as above.
unsafe impl Sync for Map {}
impl std::panic::RefUnwindSafe for Map {}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping `Map::open` made, unmapped
        // once (this drop).
        unsafe { libc::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
    }
}

impl Map {
    /// `path` mapped whole, read-only (a file under 12 bytes is refused:
    /// no Arrow or Parquet file is that short).
    fn open(path: &Path) -> Result<Map, Error> {
        let name = path.display();
        let file = fs::File::open(path)
            .map_err(|e| err!(ARROW_DLPACK_INVALID_ARGUMENT, "file {name:?}: {e}"))?;
        let len = file
            .metadata()
            .map_err(|e| err!(ARROW_DLPACK_INVALID_ARGUMENT, "file {name:?}: {e}"))?
            .len();
        let len = usize::try_from(len).map_err(|_| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "file {name:?} is {len} bytes, more than this machine can map"
            )
        })?;
        if len < 12 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "file {name:?} is {len} bytes: too short to be an Arrow IPC or Parquet file"
            ));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only private mapping of an open file's `len`
        // bytes; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "file {name:?}: cannot map it: {e}"
            ));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap never gives NULL on success");
        Ok(Map { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `ptr`, mapped while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// What a file is, by its magic bytes.
enum Format {
    IpcFile,
    Parquet,
}

fn format_of(path: &Path, bytes: &[u8]) -> Result<Format, Error> {
    let name = path.display();
    if bytes.starts_with(b"ARROW1") && bytes.ends_with(b"ARROW1") {
        return Ok(Format::IpcFile);
    }
    if bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    if bytes.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "file {name:?} is an Arrow IPC stream, not the IPC file format (write it with \
             pyarrow.ipc.new_file, or Feather v2)"
        ));
    }
    Err(err!(
        ARROW_DLPACK_INVALID_ARROW,
        "file {name:?} is neither an Arrow IPC file nor a Parquet file (its magic bytes are neither \
         'ARROW1' nor 'PAR1')"
    ))
}

/// A file's schema and record batches, shared out of its map.
fn read_ipc(path: &Path, map: Map) -> Result<(arrow_schema::Schema, Vec<RecordBatch>), Error> {
    let name = path.display();
    let bad =
        |what: std::fmt::Arguments<'_>| err!(ARROW_DLPACK_INVALID_ARROW, "file {name:?}: {what}");
    let owner: Arc<Map> = Arc::new(map);
    let bytes = owner.bytes();
    let len = bytes.len();
    let trailer: [u8; 10] = bytes[len - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| bad(format_args!("{e}")))?;
    let end = len - 10;
    let start = end
        .checked_sub(footer_len)
        .filter(|&s| s >= 8)
        .ok_or_else(|| {
            bad(format_args!(
                "its footer ({footer_len} bytes) does not fit in it"
            ))
        })?;
    let footer = arrow_ipc::root_as_footer(&bytes[start..end])
        .map_err(|e| bad(format_args!("its footer is malformed: {e}")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| bad(format_args!("its footer has no schema")))?;
    let schema = try_fb_to_schema(fb_schema).map_err(|e| bad(format_args!("its schema: {e}")))?;
    let mut decoder =
        FileDecoder::new(Arc::new(schema.clone()), footer.version()).with_require_alignment(true);
    // SAFETY: the map's `len` bytes stay mapped while `owner` (held by the
    // buffer and every slice of it) lives.
    let buffer = unsafe { Buffer::from_custom_allocation(owner.ptr, owner.len, owner.clone()) };
    let block_of = |b: &arrow_ipc::Block| -> Result<Buffer, Error> {
        let offset = usize::try_from(b.offset()).ok();
        let meta = usize::try_from(b.metaDataLength()).ok();
        let body = usize::try_from(b.bodyLength()).ok();
        let range = offset.zip(meta).zip(body).and_then(|((o, m), b)| {
            let size = m.checked_add(b)?;
            (o.checked_add(size)? <= len).then_some((o, size))
        });
        let (offset, size) = range.ok_or_else(|| {
            bad(format_args!(
                "a block at offset {} ({} + {} bytes) lies outside its {len} bytes",
                b.offset(),
                b.metaDataLength(),
                b.bodyLength()
            ))
        })?;
        let meta = b.metaDataLength() as usize;
        check_message(&bytes[offset..offset + size], offset, meta)
            .map_err(|what| bad(format_args!("the message at offset {offset}: {what}")))?;
        Ok(buffer.slice_with_length(offset, size))
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder
            .read_dictionary(block, &block_of(block)?)
            .map_err(|e| bad(format_args!("a dictionary: {e}")))?;
    }
    let mut batches = Vec::new();
    for (i, block) in footer.recordBatches().iter().flatten().enumerate() {
        match decoder.read_record_batch(block, &block_of(block)?) {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => {}
            Err(e) => return Err(bad(format_args!("record batch {i}: {e}"))),
        }
    }
    Ok((schema, batches))
}

/// Checks what arrow-ipc's decoder trusts in a message (a block at file
/// offset `at`: `meta` bytes of metadata, then its body): the metadata
/// parses, the body is not compressed, and every buffer lies inside the
/// body, 8-byte aligned in the file (as the format requires; the map is
/// page-aligned, so in memory too). The decoder slices the body by these
/// numbers unchecked, and its validation reads offsets assuming their
/// alignment: past either it panics.
fn check_message(block: &[u8], at: usize, meta: usize) -> Result<(), String> {
    if meta < 8 || meta > block.len() {
        return Err(format!("{meta} bytes of metadata"));
    }
    let inner = match block[..4] == [0xFF; 4] {
        true => &block[8..],
        false => &block[4..],
    };
    let message =
        arrow_ipc::root_as_message(inner).map_err(|e| format!("its metadata is malformed: {e}"))?;
    let body = (block.len() - meta) as u64;
    let (buffers, compression) = match message.header_type() {
        arrow_ipc::MessageHeader::RecordBatch => match message.header_as_record_batch() {
            Some(batch) => (batch.buffers(), batch.compression()),
            None => return Err("a record batch header without its table".into()),
        },
        arrow_ipc::MessageHeader::DictionaryBatch => {
            match message.header_as_dictionary_batch().and_then(|d| d.data()) {
                Some(batch) => (batch.buffers(), batch.compression()),
                None => return Err("a dictionary batch without its data".into()),
            }
        }
        _ => return Ok(()),
    };
    if let Some(c) = compression {
        return Err(format!(
            "its buffers are compressed ({}), which this version does not read: write the file \
             uncompressed",
            format!("{:?}", c.codec()).to_lowercase()
        ));
    }
    for (i, b) in buffers.iter().flatten().enumerate() {
        let end = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.length()).ok())
            .and_then(|(o, l)| o.checked_add(l));
        if end.is_none_or(|end| end > body) {
            return Err(format!(
                "buffer {i} ({} bytes at {}) lies outside its body of {body} bytes",
                b.length(),
                b.offset()
            ));
        }
        // In the file: the block's offset, its metadata, the buffer's
        // offset (each below the file's length: no overflow).
        let start = at as u64 + meta as u64 + b.offset() as u64;
        if b.length() > 0 && start % 8 != 0 {
            return Err(format!(
                "buffer {i} starts at byte {start} of the file, not a multiple of 8 as the IPC format requires"
            ));
        }
    }
    Ok(())
}

/// The columns the loader reads from files, as the first file has them.
struct Wanted {
    /// Names and types, in the first file's order.
    fields: Vec<Arc<Field>>,
}

/// `files` read as one source: the schema of the columns asked for
/// (`None`: every column of the first file; names the first file lacks
/// are left for the loader to refuse, listing the columns there are) and
/// every record batch of every file, in order, each a struct array of
/// those columns sharing the file's map. A file of another format, or
/// whose columns differ from the first's (missing, or of another type):
/// an error naming the file and the column.
pub fn read(
    files: &[PathBuf],
    columns: Option<&[String]>,
) -> Result<(ArrowSchema, Vec<ArrowArray>), Error> {
    let mut wanted: Option<Wanted> = None;
    let mut chunks: Vec<FFI_ArrowArray> = Vec::new();
    for path in files {
        let name = path.display();
        let map = Map::open(path)?;
        match format_of(path, map.bytes())? {
            Format::IpcFile => {}
            Format::Parquet => {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_TYPE,
                    "file {name:?} is Parquet, which the loader does not read yet: convert it to Arrow \
                     IPC (pyarrow.feather.write_feather(table, path, compression='uncompressed')), or \
                     pass pyarrow.parquet.read_table(path)"
                ));
            }
        }
        let (schema, batches) = read_ipc(path, map)?;
        let wanted = wanted.get_or_insert_with(|| Wanted {
            fields: schema
                .fields()
                .iter()
                .filter(|f| columns.is_none_or(|c| c.iter().any(|n| n == f.name())))
                .cloned()
                .collect(),
        });
        let mut picks = Vec::with_capacity(wanted.fields.len());
        let mut fields = Vec::with_capacity(wanted.fields.len());
        for want in &wanted.fields {
            let Some((j, have)) = schema.column_with_name(want.name()) else {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "file {name:?} has no column {:?} (the first file has it)",
                    want.name()
                ));
            };
            if !have.data_type().equals_datatype(want.data_type()) {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "file {name:?}: column {:?} is {}, {} in the first file",
                    want.name(),
                    have.data_type(),
                    want.data_type()
                ));
            }
            picks.push(j);
            // This file's own type (nested names may differ), nullable:
            // the loader checks nulls itself.
            fields.push(Field::new(want.name(), have.data_type().clone(), true));
        }
        let fields = Fields::from(fields);
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let columns = picks.iter().map(|&j| batch.column(j).clone()).collect();
            let array =
                StructArray::try_new_with_length(fields.clone(), columns, None, batch.num_rows())
                    .map_err(|e| err!(ARROW_DLPACK_INVALID_ARROW, "file {name:?}: {e}"))?;
            chunks.push(FFI_ArrowArray::new(&array.to_data()));
        }
    }
    let wanted = wanted.expect("at least one file (resolve refuses none)");
    let fields: Vec<Field> = wanted
        .fields
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let schema = FFI_ArrowSchema::try_from(DataType::Struct(Fields::from(fields)))
        .map_err(|e| err!(ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}"))?;
    // SAFETY: arrow-rs's FFI structs have the C Data Interface's layout
    // (asserted in `tensor`); each is moved out whole (bitwise), and
    // arrow-rs's `Drop` (which would release it) does not run on the
    // moved-from value.
    let schema = unsafe { std::mem::transmute::<FFI_ArrowSchema, ArrowSchema>(schema) };
    let chunks = chunks
        .into_iter()
        // SAFETY: as above.
        .map(|c| unsafe { std::mem::transmute::<FFI_ArrowArray, ArrowArray>(c) })
        .collect();
    Ok((schema, chunks))
}

#[cfg(test)]
mod tests {
    use super::matches_glob;

    #[test]
    fn globs_match_as_the_shell_does() {
        let yes = [
            ("*.arrow", "a.arrow"),
            ("part-?.arrow", "part-1.arrow"),
            ("part-[0-9].arrow", "part-7.arrow"),
            ("part-[!a].arrow", "part-b.arrow"),
            ("*", ""),
            ("a*b*c", "axxbyyc"),
            ("[", "["),
        ];
        let no = [
            ("*.arrow", "a.parquet"),
            ("part-?.arrow", "part-10.arrow"),
            ("part-[0-9].arrow", "part-x.arrow"),
            ("part-[!a].arrow", "part-a.arrow"),
            ("a*b*c", "axxbyy"),
        ];
        for (p, n) in yes {
            assert!(matches_glob(p.as_bytes(), n.as_bytes()), "{p} {n}");
        }
        for (p, n) in no {
            assert!(!matches_glob(p.as_bytes(), n.as_bytes()), "{p} {n}");
        }
    }
}
