//! Fuzzes the loader's file reader (`arrow_dlpack_loader_open`): the
//! input's tail is written to a file and opened as an Arrow IPC file
//! (truncated, corrupted, hostile footers and metadata sizes included; the
//! seed corpus holds real files pyarrow wrote); its first bytes choose the
//! batch size and whether the epoch is shuffled.
//!
//! Checks: the file is either refused with a status and a message (never
//! INTERNAL_ERROR, which is a caught panic) or read; a loader read gives
//! an epoch whose `_row` numbers are each row once, `0..N` where N is the
//! rows its batches held, and the batches `arrow_dlpack_loader_len` said
//! (the first 2,048 batches only checked when an epoch is longer).
#![no_main]

use std::ffi::{CString, c_char};
use std::io::Write;

use arrow_dlpack::abi::DLManagedTensorVersioned;
use arrow_dlpack::capi::{
    ArrowDlpackBatch, ArrowDlpackLoaderOptions, arrow_dlpack_batch_release,
    arrow_dlpack_loader_free, arrow_dlpack_loader_len, arrow_dlpack_loader_next,
    arrow_dlpack_loader_open,
};
use arrow_dlpack::{ArrowDlpackError, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[batch, shuffle], file)) = data.split_first_chunk::<2>() else {
        return;
    };
    let path = std::env::temp_dir().join(format!("arrow-dlpack-fuzz-{}.arrow", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(file))
        .expect("a temporary file");
    let name = CString::new(path.to_str().expect("a UTF-8 path")).expect("no NUL");
    let names: [*const c_char; 1] = [name.as_ptr()];
    // SAFETY: all-zero options are valid; the fields set below too.
    let mut options: ArrowDlpackLoaderOptions = unsafe { std::mem::zeroed() };
    options.batch_size = i64::from(batch % 16) + 1;
    options.shuffle = i32::from(shuffle % 2);
    options.row_ids = 1;
    // SAFETY: zeroed is a valid error report.
    let mut error: ArrowDlpackError = unsafe { std::mem::zeroed() };
    // SAFETY: one NUL-terminated path, valid options and error.
    let loader = unsafe { arrow_dlpack_loader_open(names.as_ptr(), 1, &options, &mut error) };
    if loader.is_null() {
        assert_ne!(
            error.status,
            Status::ARROW_DLPACK_INTERNAL_ERROR,
            "a panic: {:?}",
            message(&error)
        );
        assert_ne!(error.status, Status::ARROW_DLPACK_OK);
        assert!(error.message[0] != 0, "a refusal says why");
        return;
    }
    // SAFETY: a live loader.
    let len = unsafe { arrow_dlpack_loader_len(loader) };
    let mut rows: Vec<i64> = Vec::new();
    let mut batches = 0;
    // A small file may hold many rows (of zero-width columns, `+w:0`):
    // the first batches checked, the rest of such an epoch left.
    let mut whole = true;
    loop {
        if batches == 2048 {
            whole = false;
            break;
        }
        // SAFETY: zeroed is an empty batch.
        let mut b: ArrowDlpackBatch = unsafe { std::mem::zeroed() };
        // SAFETY: a live loader, a writable batch and error.
        let status = unsafe { arrow_dlpack_loader_next(loader, &mut b, &mut error) };
        if status != Status::ARROW_DLPACK_OK {
            // Data the reader accepted and a batch refused (nulls, say):
            // named, never a panic.
            assert_ne!(
                status,
                Status::ARROW_DLPACK_INTERNAL_ERROR,
                "a panic: {:?}",
                message(&error)
            );
            break;
        }
        if b.n_outputs == 0 {
            assert_eq!(len, batches, "len() is the epoch's batches");
            break;
        }
        batches += 1;
        // SAFETY: the batch's `n_outputs` outputs; `_row` is the last,
        // one tensor.
        let t: &DLManagedTensorVersioned =
            unsafe { &*(*b.outputs.add(b.n_outputs as usize - 1)).tensors[0] };
        // SAFETY: a 1-D tensor: `shape` points at its length.
        assert_eq!(unsafe { *t.dl_tensor.shape }, b.rows);
        // SAFETY: an int64 tensor of `rows` elements (or NULL when empty).
        if b.rows > 0 {
            let r = unsafe {
                std::slice::from_raw_parts(t.dl_tensor.data.cast::<i64>(), b.rows as usize)
            };
            rows.extend_from_slice(r);
        }
        // SAFETY: the batch `next` wrote.
        unsafe { arrow_dlpack_batch_release(&mut b) };
    }
    // SAFETY: the loader made above, freed once.
    unsafe { arrow_dlpack_loader_free(loader) };
    if whole && error.status == Status::ARROW_DLPACK_OK {
        rows.sort_unstable();
        assert!(
            rows.iter().enumerate().all(|(i, &r)| r == i as i64),
            "every row once"
        );
    }
});

fn message(e: &ArrowDlpackError) -> String {
    let bytes: Vec<u8> = e
        .message
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
