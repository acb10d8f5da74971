//! The batcher behind `arrow_dlpack.batches`, through C streams: batches
//! inside one chunk share it (addresses), batches across chunks are one
//! copy, stack groups and padded lists, and each chunk and the stream
//! released exactly once whatever happens: read to the end, abandoned,
//! failing midway, or refused at the start. Run under Miri and ASan too.

mod common;

use std::ffi::CStr;

use arrow_dlpack::__internal::{BatchOptions, Batches, Lists, Output, Pad, Side, Term};
use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use common::{Raw, Seen, take};

fn options(batch_size: i64) -> BatchOptions {
    BatchOptions::new(batch_size).unwrap().threads(1)
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

const NAMES: [&CStr; 3] = [c"a", c"b", c"ids"];

/// A record batch of `n` rows: `a` float64 from `first`, `b` int32, `ids`
/// a list<int32> of row `i % 3` elements.
fn chunk(n: usize, first: usize) -> Raw {
    let a: Vec<f64> = (first..first + n).map(|i| i as f64).collect();
    let b: Vec<i32> = (first..first + n).map(|i| i as i32 * 10).collect();
    let mut offsets = vec![0i64];
    for i in 0..n {
        offsets.push(offsets.last().unwrap() + ((first + i) % 3) as i64);
    }
    let values: Vec<i32> = (0..*offsets.last().unwrap() as i32).collect();
    let ids = Raw::list(&offsets, false, Raw::primitive("i", &values));
    Raw::struct_of(
        n as i64,
        vec![Raw::primitive("g", &a), Raw::primitive("i", &b), ids],
        &NAMES,
    )
}

/// The chunks as a producer, and the schema its copies point into (kept
/// alive with it).
fn producer(chunks: &mut [Raw]) -> (Raw, arrow_dlpack_testkit::Stream) {
    let schema = chunk(0, 0);
    let stream = common::producer(&schema, chunks);
    (schema, stream)
}

fn open(
    stream: &mut ArrowArrayStream,
    o: BatchOptions,
) -> Result<Batches, Box<arrow_dlpack::Error>> {
    // SAFETY: a live stream of the producer.
    unsafe { Batches::from_stream(stream, o) }.map_err(Box::new)
}

fn tensor(o: Output) -> Seen {
    match o {
        Output::Tensor(t) => take(t.as_ptr()),
        _ => panic!("a tensor"),
    }
}

fn f64s(seen: &Seen) -> Vec<f64> {
    seen.bytes
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn batches_inside_a_chunk_share_it_and_spanning_ones_copy() {
    let mut chunks = vec![chunk(5, 0), chunk(4, 5)];
    let a0 = chunks[0].child(0).buffers[1] as usize;
    let (_schema, mut p) = producer(&mut chunks);
    let mut s = p.c_stream();
    let mut b = open(&mut s, options(3).columns(Some(names(&["a"]))).unwrap()).unwrap();
    assert!(s.release.is_none(), "the stream moved in");
    let mut seen = Vec::new();
    while let Some((rows, mut outputs)) = b.next_batch().unwrap() {
        let t = tensor(outputs.remove(0));
        assert_eq!(t.shape, vec![rows as i64]);
        seen.push(t);
    }
    let rows: Vec<Vec<f64>> = seen.iter().map(f64s).collect();
    assert_eq!(
        rows,
        vec![
            vec![0.0, 1.0, 2.0],
            vec![3.0, 4.0, 5.0],
            vec![6.0, 7.0, 8.0]
        ]
    );
    assert_eq!(seen[0].data, a0, "rows 0-2 shared in chunk 0");
    assert_eq!(seen[0].flags, DLPACK_FLAG_BITMASK_READ_ONLY);
    assert_eq!(
        seen[1].flags, DLPACK_FLAG_BITMASK_IS_COPIED,
        "rows 3-5 span both chunks"
    );
    assert_eq!(seen[2].flags, DLPACK_FLAG_BITMASK_READ_ONLY);
    drop(b);
    assert!(p.released, "the stream released with the batcher");
    assert_eq!(
        chunks.iter().map(Raw::release_count).collect::<Vec<_>>(),
        vec![1, 1]
    );
}

#[test]
fn a_stack_group_and_padded_lists() {
    let mut chunks = vec![chunk(4, 0)];
    let (_schema, mut p) = producer(&mut chunks);
    let mut s = p.c_stream();
    let o = options(4)
        .stack(vec![("ab".into(), names(&["a", "b"]))])
        .unwrap();
    let mut b = open(&mut s, o).unwrap();
    assert_eq!(b.names().collect::<Vec<_>>(), vec!["ids", "ab"]);
    let (_, mut outputs) = b.next_batch().unwrap().unwrap();
    let ab = tensor(outputs.pop().unwrap());
    // int32 and float64 promote to float64, row-major.
    assert_eq!(ab.shape, vec![4, 2]);
    assert_eq!(f64s(&ab), vec![0.0, 0.0, 1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    let Output::Padded { values, mask } = outputs.pop().unwrap() else {
        panic!("padded")
    };
    let (values, mask) = (take(values.as_ptr()), take(mask.as_ptr()));
    // Rows of 0, 1, 2, 0 elements: [4, 2].
    assert_eq!(values.shape, vec![4, 2]);
    let ints: Vec<i32> = values
        .bytes
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ints, vec![0, 0, 0, 0, 1, 2, 0, 0]);
    assert_eq!(mask.bytes, vec![0, 0, 1, 0, 1, 1, 0, 0]);
    assert!(b.next_batch().unwrap().is_none());
    drop(b);
    assert_eq!(chunks[0].release_count(), 1);
}

#[test]
fn abandoned_half_way_everything_is_released_once_and_tensors_stay_valid() {
    let mut chunks = vec![chunk(3, 0), chunk(3, 3), chunk(3, 6)];
    let (_schema, mut p) = producer(&mut chunks);
    let mut s = p.c_stream();
    let mut b = open(&mut s, options(2).columns(Some(names(&["a"]))).unwrap()).unwrap();
    let (_, mut outputs) = b.next_batch().unwrap().unwrap();
    let Output::Tensor(kept) = outputs.remove(0) else {
        panic!()
    };
    drop(b);
    assert!(p.released);
    assert_eq!(p.next, 1, "only the chunk the batch needed was read");
    // The tensor still holds its chunk.
    assert_eq!(chunks[0].release_count(), 0);
    assert_eq!(f64s(&take(kept.as_ptr())), vec![0.0, 1.0]);
    assert_eq!(chunks[0].release_count(), 1);
    drop(p); // the producer releases the chunks never read
    assert_eq!(
        chunks.iter().map(Raw::release_count).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}

#[test]
fn a_stream_failing_midway_is_an_error_and_what_was_read_is_released() {
    let mut chunks = vec![chunk(3, 0), chunk(3, 3), chunk(3, 6)];
    let (_schema, mut p) = producer(&mut chunks);
    p.fail_at = Some(1);
    let mut s = p.c_stream();
    let mut b = open(&mut s, options(2).columns(Some(names(&["b"]))).unwrap()).unwrap();
    let (_, first) = b.next_batch().unwrap().unwrap();
    first.into_iter().for_each(Output::delete);
    let e = b.next_batch().map(|_| ()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(
        e.message().contains("chunk 1") && e.message().contains("the producer broke"),
        "{}",
        e.message()
    );
    assert!(
        b.next_batch().unwrap().is_none(),
        "closed after the failure"
    );
    assert!(p.released, "the stream released at the failure");
    assert_eq!(chunks[0].release_count(), 1);
    drop(b);
    drop(p);
    assert_eq!(
        chunks.iter().map(Raw::release_count).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}

#[test]
fn option_values_are_refused_when_built_naming_the_field() {
    let refused = |made: Result<BatchOptions, arrow_dlpack::Error>, needle: &str| {
        let e = made.map(|_| ()).unwrap_err();
        assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARGUMENT);
        assert!(e.message().contains(needle), "{}", e.message());
    };
    refused(
        BatchOptions::new(0),
        "options.batch_size must be positive, not 0",
    );
    refused(
        BatchOptions::new(-3),
        "options.batch_size must be positive, not -3",
    );
    refused(
        options(2).columns(Some(names(&["a", "b", "a"]))),
        "options.columns names \"a\" twice",
    );
    refused(
        options(2).stack(vec![
            ("g".into(), names(&["a"])),
            ("g".into(), names(&["b"])),
        ]),
        "options.stack names group \"g\" twice",
    );
    refused(
        options(2).stack(vec![("g".into(), Vec::new())]),
        "stack group \"g\" has no columns",
    );
    let e = Lists::named("ragged").unwrap_err();
    assert!(
        e.message()
            .contains("options.lists must be 'padded' or 'jagged', not \"ragged\"")
    );
    let e = Lists::numbered(2).unwrap_err();
    assert!(
        e.message().contains("options.lists 2 is unknown"),
        "{}",
        e.message()
    );
    let e = Side::named("up", Term::BatchPadSide).unwrap_err();
    assert!(
        e.message()
            .contains("options.pad_side must be 'right' or 'left', not \"up\"")
    );
    for length in [0, -1] {
        let e = Pad::new(Some(length), Side::Right, 0.0, Term::BatchPadLength).unwrap_err();
        assert!(
            e.message().contains(&format!("options.pad_length must be a positive number of elements, or none for the longest row; got {length}")),
            "{}",
            e.message()
        );
    }
    assert_eq!(
        Pad::new(None, Side::Left, 1.0, Term::BatchPadLength)
            .unwrap()
            .length(),
        None
    );
    assert_eq!(Lists::numbered(1).unwrap(), Lists::Jagged);
}

#[test]
fn bad_options_release_the_stream_and_name_what_is_wrong() {
    for (o, needle) in [
        (
            options(2).columns(Some(names(&["zz"]))).unwrap(),
            "\"zz\" is not a column of the source (its columns: a, b, ids)",
        ),
        (
            options(2)
                .stack(vec![("g".into(), names(&["a", "ids"]))])
                .unwrap(),
            "column \"ids\" of stack group \"g\" is a list or string column",
        ),
        (
            options(2)
                .columns(Some(names(&["a"])))
                .unwrap()
                .stack(vec![("g".into(), names(&["a"]))])
                .unwrap(),
            "column \"a\" is in two places: stack group \"g\" and columns",
        ),
    ] {
        let mut chunks = vec![chunk(3, 0)];
        let (_schema, mut p) = producer(&mut chunks);
        let mut s = p.c_stream();
        let e = open(&mut s, o).map(|_| ()).unwrap_err();
        assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARGUMENT);
        assert!(e.message().contains(needle), "{}", e.message());
        assert!(!p.released, "the stream left with the caller");
        assert!(s.release.is_some());
        assert_eq!(p.next, 0, "no chunk read");
        // SAFETY: the caller's stream, still live.
        unsafe { s.release.unwrap()(&mut s) };
        assert!(p.released);
    }
}

#[test]
fn a_bad_chunk_is_named_and_released() {
    let mut chunks = vec![chunk(3, 0), chunk(3, 3)];
    // Chunk 1's column `b` claims more rows than its buffer... its child
    // shorter than the struct.
    chunks[1].child(1).array.length = 1;
    let (_schema, mut p) = producer(&mut chunks);
    let mut s = p.c_stream();
    let mut b = open(&mut s, options(4)).unwrap();
    let e = b.next_batch().map(|_| ()).unwrap_err();
    assert!(
        e.message().contains("chunk 1") && e.message().contains("column 1 'b'"),
        "{}",
        e.message()
    );
    drop(b);
    assert_eq!(
        chunks.iter().map(Raw::release_count).collect::<Vec<_>>(),
        vec![1, 1]
    );
}
