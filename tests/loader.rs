//! The loader behind `arrow_dlpack.Loader`, over C structs: each epoch
//! holds every source row once (checked against the row numbers the data
//! carries, not the loader's own arithmetic), ranks get equal batch
//! counts, a state resumes exactly, shuffled batches are gathered and
//! unshuffled ones inside a chunk shared; every chunk released once. Run
//! under Miri and ASan too.

mod common;

use std::ffi::CStr;
use std::ptr;

use arrow_dlpack::__internal::{BatchOptions, EpochOptions, Loader, Output, Prefetching, State};
use common::{Raw, Seen, take};
use proptest::prelude::*;

const NAMES: [&CStr; 2] = [c"x", c"y"];

/// A record batch of `n` rows from row `first`: `x` float64 holds the
/// row's number, `y` int32 ten times it.
fn chunk(n: usize, first: usize) -> Raw {
    let x: Vec<f64> = (first..first + n).map(|i| i as f64).collect();
    let y: Vec<i32> = (first..first + n).map(|i| i as i32 * 10).collect();
    Raw::struct_of(
        n as i64,
        vec![Raw::primitive("g", &x), Raw::primitive("i", &y)],
        &NAMES,
    )
}

/// A source: the schema's owner first (an empty chunk), then chunks of
/// `sizes` rows, numbered across them.
fn chunks(sizes: &[usize]) -> Vec<Raw> {
    let mut first = 0;
    let mut raws = vec![chunk(0, 0)];
    raws.extend(sizes.iter().map(|&n| {
        first += n;
        chunk(n, first - n)
    }));
    raws
}

/// Moves the schema of `raws[0]` and the arrays of the rest out of them
/// (they keep the buffers, outlive the loader, and count the releases)
/// into a loader.
#[allow(clippy::result_large_err)] // the library's own error type
fn loader(
    raws: &mut [Raw],
    options: BatchOptions,
    epochs: EpochOptions,
) -> Result<Loader, arrow_dlpack::Error> {
    // SAFETY: a schema made by `Raw`, moved bitwise (the Raw's copy
    // disarmed); its strings live as long as `raws[0]`.
    let schema = unsafe { ptr::read(&*raws[0].schema) };
    raws[0].schema.release = None;
    let arrays = raws[1..]
        .iter_mut()
        .map(|r| {
            // SAFETY: as above, for each chunk's array.
            let a = unsafe { ptr::read(&*r.array) };
            r.array.release = None;
            a
        })
        .collect();
    // SAFETY: a valid schema and live struct arrays of it, moved in.
    unsafe { Loader::new(schema, arrays, options, epochs) }
}

fn epochs(
    shuffle: bool,
    window: Option<u64>,
    world: u64,
    rank: u64,
    drop_last: bool,
) -> EpochOptions {
    EpochOptions {
        shuffle,
        seed: 11,
        window,
        world_size: world,
        rank,
        worker: 0,
        workers: 1,
        drop_last,
        row_ids: true,
        chunk_windows: false,
    }
}

fn values(o: Output) -> Seen {
    match o {
        Output::Tensor(t) => take(t.as_ptr()),
        _ => panic!("a tensor"),
    }
}

/// Each batch of the loader's current epoch: `(x, _row)`, checked to agree
/// (each row's own number in its data).
fn epoch_batches(l: &mut Loader) -> Vec<Vec<i64>> {
    l.begin();
    let mut out = Vec::new();
    while let Some(batch) = l.next_batch().unwrap() {
        let rows = batch.rows;
        let mut outputs = batch.take();
        let ids = values(outputs.pop().unwrap());
        let x = values(outputs.remove(0));
        assert_eq!(ids.shape, vec![rows as i64]);
        let ids: Vec<i64> = ids
            .bytes
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let x: Vec<f64> = x
            .bytes
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            x,
            ids.iter().map(|&i| i as f64).collect::<Vec<_>>(),
            "the data's row numbers"
        );
        for o in outputs {
            o.delete();
        }
        out.push(ids);
    }
    out
}

fn options(batch: i64) -> BatchOptions {
    BatchOptions::new(batch)
        .unwrap()
        .columns(Some(vec!["x".into(), "y".into()]))
        .unwrap()
        .threads(1)
}

proptest! {
    // No failure file: finding one asks for the working directory,
    // which Miri's isolation refuses.
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 48 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_rank_every_row_once_an_epoch_and_resume_is_exact(
        sizes in proptest::collection::vec(0usize..40, 1..5),
        batch in 1i64..9,
        world in 1u64..4,
        shuffle: bool,
        window in proptest::option::of(1u64..30),
        drop_last: bool,
        stop in 0usize..20,
    ) {
        let n: usize = sizes.iter().sum();
        let window = window.filter(|_| shuffle);
        let mut per_rank = Vec::new();
        let mut raws = Vec::new();
        for rank in 0..world {
            let mut r = chunks(&sizes);
            let mut l = loader(&mut r, options(batch), epochs(shuffle, window, world, rank, drop_last)).unwrap();
            let first = epoch_batches(&mut l);
            prop_assert_eq!(first.len() as u64, l.len());
            let second = epoch_batches(&mut l);
            prop_assert_eq!(second.len(), first.len());
            per_rank.push((first, second));
            drop(l);
            raws.push(r);
        }
        for r in raws.iter().flat_map(|r| &r[1..]) {
            prop_assert_eq!(r.release_count(), 1, "every chunk released once");
        }
        // Every rank: the same number of batches of the same sizes.
        let sizes_of = |e: &Vec<Vec<i64>>| e.iter().map(Vec::len).collect::<Vec<_>>();
        for (first, _) in &per_rank {
            prop_assert_eq!(sizes_of(first), sizes_of(&per_rank[0].0));
        }
        // The epoch's rows: each once (the padding repeats rows).
        let mut rows: Vec<i64> = per_rank.iter().flat_map(|(f, _)| f.iter().flatten().copied()).collect();
        rows.sort();
        let g = batch as usize * world as usize;
        let kept = match drop_last { true => n / g * g, false => n };
        let mut unique = rows.clone();
        unique.dedup();
        prop_assert_eq!(unique.len(), kept);
        prop_assert!(unique.iter().all(|&r| (r as usize) < n));
        if !drop_last {
            prop_assert_eq!(rows.len(), n.div_ceil(world as usize) * world as usize);
        }
        if shuffle && per_rank[0].0.iter().map(Vec::len).sum::<usize>() > 8 {
            prop_assert_ne!(&per_rank[0].0, &per_rank[0].1, "epochs differ");
        }
        // Resume rank 0 after `stop` batches of its second epoch, through
        // the state's JSON: the rest is what the uninterrupted run gave.
        let mut r = chunks(&sizes);
        let mut l = loader(&mut r, options(batch), epochs(shuffle, window, world, 0, drop_last)).unwrap();
        epoch_batches(&mut l);
        l.begin();
        let stop = stop.min(per_rank[0].1.len());
        for _ in 0..stop {
            drop(l.next_batch().unwrap().unwrap());
        }
        let text = l.state().to_json();
        drop(l);
        let mut r2 = chunks(&sizes);
        let mut resumed = loader(&mut r2, options(batch), epochs(shuffle, window, world, 0, drop_last)).unwrap();
        resumed.restore(&State::from_json(&text).unwrap()).unwrap();
        let rest = epoch_batches(&mut resumed);
        match stop == per_rank[0].1.len() && stop > 0 {
            // A state after the epoch's last batch: the next epoch.
            true => prop_assert_eq!(rest.len(), per_rank[0].1.len()),
            false => prop_assert_eq!(&rest[..], &per_rank[0].1[stop..]),
        }
    }
}

#[test]
fn unshuffled_batches_inside_a_chunk_share_it() {
    let mut r = chunks(&[6, 4]);
    let x0 = r[1].child(0).buffers[1] as usize;
    let mut l = loader(&mut r, options(3), epochs(false, None, 1, 0, false)).unwrap();
    l.begin();
    let mut outputs = l.next_batch().unwrap().unwrap().take();
    let Output::Tensor(t) = outputs.remove(0) else {
        panic!()
    };
    // SAFETY: a live tensor, read then deleted.
    unsafe {
        assert_eq!(
            (*t.as_ptr()).dl_tensor.data as usize,
            x0,
            "shared, zero-copy"
        );
        ((*t.as_ptr()).deleter.unwrap())(t.as_ptr());
    }
    outputs.into_iter().for_each(Output::delete);
}

#[test]
fn refused_states_name_the_key_and_leave_the_loader() {
    let mut r = chunks(&[10]);
    let mut l = loader(&mut r, options(2), epochs(true, None, 1, 0, false)).unwrap();
    let mut state = l.state();
    state.seed += 1;
    let e = l.restore(&state).unwrap_err();
    assert!(
        e.message()
            .contains("state key \"seed\" is 12, this loader's is 11"),
        "{}",
        e.message()
    );
    state = l.state();
    state.global_batch_size = 3;
    assert!(
        l.restore(&state)
            .unwrap_err()
            .message()
            .contains("\"global_batch_size\"")
    );
    assert_eq!(l.state(), {
        let mut s = state.clone();
        s.global_batch_size = 2;
        s
    });
}

#[test]
fn a_column_named_row_is_refused() {
    let mut r = chunks(&[3]);
    let e = loader(
        &mut r,
        BatchOptions::new(2)
            .unwrap()
            .columns(Some(vec!["_row".into()]))
            .unwrap(),
        epochs(false, None, 1, 0, false),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.message()
            .contains("\"_row\" is the name of the row numbers"),
        "{}",
        e.message()
    );
    assert_eq!(r[1].release_count(), 1, "the chunk released");
}

const LIST_NAMES: [&CStr; 2] = [c"x", c"ids"];

/// `n` rows from `first`: `x` the row's number, `ids` a list<int64> of
/// `row % 4` copies of the row's number, row `row % 5 == 3` null.
fn list_chunk(n: usize, first: usize) -> Raw {
    let x: Vec<f64> = (first..first + n).map(|i| i as f64).collect();
    let mut offsets = vec![0i32];
    let mut values = Vec::new();
    for i in first..first + n {
        values.extend(std::iter::repeat_n(i as i64, i % 4));
        offsets.push(values.len() as i32);
    }
    let mut ids = Raw::list(
        &offsets.iter().map(|&o| o as i64).collect::<Vec<_>>(),
        false,
        Raw::primitive("l", &values),
    );
    let valid: Vec<bool> = (first..first + n).map(|i| i % 5 != 3).collect();
    let nulls = valid.iter().filter(|v| !**v).count() as i64;
    ids.set_validity(&valid, nulls);
    Raw::struct_of(n as i64, vec![Raw::primitive("g", &x), ids], &LIST_NAMES)
}

#[test]
fn shuffled_list_columns_are_gathered_padded_and_jagged() {
    for jagged in [false, true] {
        let mut raws = vec![list_chunk(0, 0), list_chunk(7, 0), list_chunk(9, 7)];
        let lists = match jagged {
            true => arrow_dlpack::__internal::Lists::Jagged,
            false => arrow_dlpack::__internal::Lists::Padded,
        };
        let pad = arrow_dlpack::__internal::Pad::default();
        let options = BatchOptions::new(5)
            .unwrap()
            .lists(lists, pad)
            .fill(Some(-1.0))
            .threads(1);
        let mut l = loader(&mut raws, options, epochs(true, None, 1, 0, false)).unwrap();
        l.begin();
        let mut seen = Vec::new();
        while let Some(batch) = l.next_batch().unwrap() {
            let rows = batch.rows;
            let mut outputs = batch.take();
            let ids = values(outputs.pop().unwrap());
            let ids: Vec<i64> = ids
                .bytes
                .chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(ids.len(), rows);
            let list = outputs.pop().unwrap();
            let x = values(outputs.pop().unwrap());
            let x: Vec<f64> = x
                .bytes
                .chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(x, ids.iter().map(|&i| i as f64).collect::<Vec<_>>());
            // Each row's elements: `row % 4` copies of its number (none
            // for a null row, filled: empty).
            let expect = |i: i64| match i % 5 == 3 {
                true => Vec::new(),
                false => vec![i; (i % 4) as usize],
            };
            match list {
                Output::Padded { values: v, mask } => {
                    let v = take(v.as_ptr());
                    let m = take(mask.as_ptr());
                    let width = v.shape[1] as usize;
                    assert_eq!(width, ids.iter().map(|&i| expect(i).len()).max().unwrap());
                    let v: Vec<i64> = v
                        .bytes
                        .chunks(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    for (k, &i) in ids.iter().enumerate() {
                        let row = &v[k * width..(k + 1) * width];
                        let real: Vec<i64> = row
                            .iter()
                            .zip(&m.bytes[k * width..])
                            .filter(|(_, m)| **m == 1)
                            .map(|(v, _)| *v)
                            .collect();
                        assert_eq!(real, expect(i), "row {i}");
                    }
                }
                Output::Jagged {
                    values: v,
                    offsets,
                    validity,
                } => {
                    let v = take(v.as_ptr());
                    let o = take(offsets.as_ptr());
                    let v: Vec<i64> = v
                        .bytes
                        .chunks(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    let o: Vec<usize> = o
                        .bytes
                        .chunks(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as usize)
                        .collect();
                    assert_eq!(o.len(), rows + 1);
                    for (k, &i) in ids.iter().enumerate() {
                        assert_eq!(v[o[k]..o[k + 1]].to_vec(), expect(i), "row {i}");
                    }
                    if let Some(valid) = validity {
                        let valid = take(valid.as_ptr());
                        for (k, &i) in ids.iter().enumerate() {
                            assert_eq!(valid.bytes[k] == 1, i % 5 != 3);
                        }
                    }
                }
                _ => panic!("a list output"),
            }
            seen.extend(ids);
        }
        seen.sort();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
        drop(l);
        assert!(raws[1..].iter().all(|r| r.release_count() == 1));
    }
}

/// The `_row` numbers of every batch a prefetching loader hands out in
/// its next epoch, stopping after `stop` batches when given.
fn prefetched_epoch(p: &mut Prefetching, stop: Option<usize>) -> Vec<Vec<i64>> {
    p.begin(0, 1).unwrap();
    let mut out = Vec::new();
    while stop.is_none_or(|s| out.len() < s) {
        let Some(batch) = p.next_batch().unwrap() else {
            break;
        };
        let mut outputs = batch.take();
        let ids = values(outputs.pop().unwrap());
        outputs.into_iter().for_each(Output::delete);
        out.push(
            ids.bytes
                .chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        );
    }
    out
}

#[test]
fn prefetching_hands_out_the_same_sequence_and_counts_only_what_it_handed() {
    let sizes = [13, 0, 29, 7];
    let mut reference = None;
    let depths: &[usize] = if cfg!(miri) { &[0, 2] } else { &[0, 1, 2, 5] };
    for &depth in depths {
        let mut r = chunks(&sizes);
        let l = loader(&mut r, options(4), epochs(true, Some(5), 2, 1, false)).unwrap();
        let mut p = Prefetching::new(l, depth);
        let epochs_read = [
            prefetched_epoch(&mut p, None),
            prefetched_epoch(&mut p, None),
        ];
        match &reference {
            None => reference = Some(epochs_read.clone()),
            Some(r) => assert_eq!(&epochs_read, r, "depth {depth}"),
        }
        // Stopped after 3 batches: the state says 3 were handed out,
        // whatever was made ahead; resuming gives the rest.
        let part = prefetched_epoch(&mut p, Some(3));
        let state = p.state();
        assert_eq!((state.epoch, state.step), (2, 3), "depth {depth}");
        let mut r2 = chunks(&sizes);
        let mut resumed = Prefetching::new(
            loader(&mut r2, options(4), epochs(true, Some(5), 2, 1, false)).unwrap(),
            depth,
        );
        resumed.restore(&state).unwrap();
        let rest = prefetched_epoch(&mut resumed, None);
        let whole = {
            let mut r3 = chunks(&sizes);
            let mut l3 = loader(&mut r3, options(4), epochs(true, Some(5), 2, 1, false)).unwrap();
            l3.set_epoch(2);
            let mut p3 = Prefetching::new(l3, 0);
            let e = prefetched_epoch(&mut p3, None);
            drop(p3);
            assert!(r3[1..].iter().all(|r| r.release_count() == 1));
            e
        };
        assert_eq!([part, rest].concat(), whole, "depth {depth}");
        // Dropped mid-epoch (the thread may be blocked on a full queue):
        // joined, and every chunk released once.
        prefetched_epoch(&mut p, Some(1));
        drop(p);
        drop(resumed);
        assert!(
            r[1..]
                .iter()
                .chain(&r2[1..])
                .all(|r| r.release_count() == 1)
        );
    }
}
