//! Fuzzes what a loader takes from outside: a saved state's JSON text
//! (`load_state_dict`, `arrow_dlpack_loader_restore`) and the numbers of
//! its order and split (rows, seed, window, batch size, world size, rank).
//!
//! Checks: a state either parses or is refused with a message naming what
//! is wrong (never a panic or an overflow: overflow checks are on), and a
//! parsed state writes back to the same state; an order and split either
//! are refused or, over every rank and step of an epoch, hand out each row
//! below `n` once (the padding repeating rows from the epoch's start), with
//! the same number of batches of the same sizes on every rank.
#![no_main]

use arrow_dlpack::__internal::{Order, Shuffle, Split, State, batch_rows, group_windows};
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        match State::from_json(&text) {
            Ok(state) => {
                let again =
                    State::from_json(&state.to_json()).expect("a state written back parses");
                assert_eq!(again, state);
                state.matches(&state).expect("a state matches itself");
            }
            Err(e) => assert!(
                e.message().starts_with("malformed state: "),
                "{}",
                e.message()
            ),
        }
        return;
    }
    // Small epochs, every number otherwise as the input says.
    let n = word(rest, 0) % 600;
    let seed = word(rest, 8);
    let window = word(rest, 16) % 80;
    let shuffle = match word(rest, 24) % 4 {
        0 => Shuffle::Off,
        1 => Shuffle::Global,
        2 => Shuffle::Windows(window),
        _ => {
            // Groups (a file's record batches) of the sizes the input's
            // tail gives, cut to `n` rows; windows of whole groups.
            let mut sizes = Vec::new();
            let mut left = n;
            for &b in rest.get(64..).unwrap_or(&[]) {
                let size = (u64::from(b) % 50).min(left);
                sizes.push(size);
                left -= size;
            }
            if left > 0 {
                sizes.push(left);
            }
            Shuffle::Groups(group_windows(&sizes, window.max(1)))
        }
    };
    let (batch, world) = (word(rest, 32) % 40, word(rest, 40) % 6);
    let drop_last = word(rest, 48) % 2 == 1;
    let epoch = word(rest, 56);
    let Ok(order) = Order::new(n, seed, shuffle) else {
        return;
    };
    let e = order.epoch(epoch);
    let Ok(first) = Split::new(batch, world, 0, drop_last) else {
        return;
    };
    let steps = first.steps(n);
    let mut seen = vec![0u32; n as usize];
    let mut total = 0u64;
    for step in 0..steps {
        let mut size = None;
        for rank in 0..world {
            let split =
                Split::new(batch, world, rank, drop_last).expect("a rank below the world size");
            assert_eq!(split.steps(n), steps, "every rank the same count");
            let mut rows = Vec::new();
            batch_rows(&e, &split, step, &mut rows);
            assert!(
                size.is_none_or(|s| s == rows.len()),
                "every rank the same size"
            );
            size = Some(rows.len());
            for r in rows {
                assert!(r < n);
                seen[r as usize] += 1;
                total += 1;
            }
        }
    }
    match drop_last {
        false => {
            // Every row once, and the padding: `(-n) mod world` more.
            assert_eq!(total, n.div_ceil(world) * world);
            assert!(seen.iter().all(|&c| c >= 1));
            let repeats: u64 = seen.iter().map(|&c| u64::from(c) - 1).sum();
            assert_eq!(repeats, (world - n % world) % world);
        }
        true => {
            assert_eq!(total, n / (batch * world) * batch * world);
            assert!(seen.iter().all(|&c| c <= 1));
        }
    }
});
