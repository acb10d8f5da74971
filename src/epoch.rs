//! The order of a training epoch, knowing nothing of Arrow: which source
//! rows each rank's batch of each step holds, for any epoch, computed from
//! a handful of integers.
//!
//! - [`Order`]: `P_e`, a permutation of `[0, N)` that depends only on
//!   `(seed, epoch, N, shuffle, window)`. Shuffled without a window it is a
//!   keyed bijection ([`Bijection`]: a balanced Feistel network over the
//!   next power of four, cycle-walked into `[0, N)`), so no permutation of
//!   `N` integers is ever held: position `p`'s row is computed when asked.
//!   With a window `w` the rows are cut into consecutive windows of `w`
//!   rows (the last shorter), the windows' order is permuted and each
//!   window's rows are permuted inside it: reads stay local.
//! - [`Split`]: the epoch's sequence over ranks and workers. `S` is `P_e`
//!   padded by repeating it from its start to a multiple of the world size
//!   (`drop_last = false`, as `torch.utils.data.DistributedSampler` pads)
//!   or cut to a multiple of the global batch (`drop_last = true`); global
//!   step `s` is `S[s*G .. (s+1)*G]` (the last may be shorter, a multiple of
//!   the world size), and rank `r`'s batch is the `r`-th of `W` equal
//!   contiguous parts of it. Worker `k` of `K` takes steps `k, k+K, ...`.
//! - [`State`]: where an epoch stands, as the JSON object both faces read
//!   and write (constant size whatever `N`).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::{Error, err};

/// The largest number of rows an order takes: positions and their products
/// with small counts stay far from `u64::MAX`.
pub const MAX_ROWS: u64 = 1 << 62;

/// The state's format version: a state with a newer one is refused.
pub const STATE_VERSION: u64 = 1;

/// 64-bit finalizer of SplitMix64: a bijection of `u64` that mixes every
/// input bit into every output bit.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Domain separation of the keys one epoch derives.
#[derive(Clone, Copy)]
enum Purpose {
    /// The global permutation of the rows.
    Rows,
    /// The permutation of the windows.
    Windows,
    /// The permutation inside window `k`.
    Inside(u64),
}

/// The key of one permutation of an epoch.
fn key(seed: u64, epoch: u64, purpose: Purpose) -> u64 {
    let tag = match purpose {
        Purpose::Rows => 0x5EED_0001,
        Purpose::Windows => 0x5EED_0002,
        Purpose::Inside(k) => mix(0x5EED_0003 ^ mix(k)),
    };
    mix(mix(seed) ^ mix(epoch.wrapping_add(0x0E90_C400)) ^ tag)
}

/// Rounds of the Feistel network: 4 make a pseudorandom permutation
/// (Luby-Rackoff); 6 mix small domains too.
const ROUNDS: usize = 6;

/// A keyed bijection of `[0, n)`: a balanced Feistel network over the
/// smallest power of four that holds `n` values (at least 4), walked until
/// it lands below `n` (a permutation of the larger domain: the walk from
/// `x < n` returns below `n`, after fewer than 4 steps on average).
#[derive(Clone, Copy, Debug)]
pub struct Bijection {
    n: u64,
    half: u32,
    keys: [u64; ROUNDS],
}

impl Bijection {
    pub fn new(n: u64, key: u64) -> Bijection {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half = bits.div_ceil(2).max(1);
        let mut keys = [0; ROUNDS];
        for (i, k) in keys.iter_mut().enumerate() {
            *k = mix(key ^ mix(i as u64 + 1));
        }
        Bijection { n, half, keys }
    }

    /// The round function: one multiply of the half and the round's key,
    /// folded (the keys are mixed once, when the bijection is made).
    #[inline(always)]
    fn round(&self, k: u64, r: u64) -> u64 {
        let z = (r ^ k).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (z ^ (z >> 32)) & ((1 << self.half) - 1)
    }

    #[inline(always)]
    fn forward(&self, x: u64) -> u64 {
        let mask = (1 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for &k in &self.keys {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << self.half) | r
    }

    #[inline(always)]
    fn backward(&self, x: u64) -> u64 {
        let mask = (1 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for &k in self.keys.iter().rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << self.half) | r
    }

    /// The image of `x < n`.
    #[inline]
    pub fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.n);
        let mut y = self.forward(x);
        while y >= self.n {
            y = self.forward(y);
        }
        y
    }

    /// The `x` whose image is `y < n`.
    #[inline]
    pub fn invert(&self, y: u64) -> u64 {
        debug_assert!(y < self.n);
        let mut x = self.backward(y);
        while x >= self.n {
            x = self.backward(x);
        }
        x
    }
}

/// How an epoch's rows are ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shuffle {
    /// `0, 1, ..., N-1`.
    Off,
    /// One keyed permutation of all the rows.
    Global,
    /// Consecutive windows of this many rows (the last shorter), the
    /// windows' order permuted, and the rows inside each.
    Windows(u64),
    /// Windows of whole groups (a file's record batches or row groups):
    /// each window's end row, increasing, the last the row count (see
    /// [`group_windows`]); the windows' order permuted, and the rows
    /// inside each.
    Groups(Arc<[u64]>),
}

/// The windows of whole groups of `sizes` rows (in order): runs of
/// consecutive groups, each the fewest holding at least `w` rows, the
/// last holding what remains; their end rows.
pub fn group_windows(sizes: &[u64], w: u64) -> Arc<[u64]> {
    let mut ends = Vec::new();
    let (mut total, mut held) = (0u64, 0u64);
    for &size in sizes {
        total += size;
        held += size;
        if held >= w && held > 0 {
            ends.push(total);
            held = 0;
        }
    }
    if held > 0 {
        ends.push(total);
    }
    ends.into()
}

/// `P_e` for every epoch: the order of `n` rows under a seed.
#[derive(Clone, Debug)]
pub struct Order {
    n: u64,
    seed: u64,
    shuffle: Shuffle,
}

/// One epoch's `P_e`, its keys derived once.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    order: Order,
    epoch: u64,
    /// The rows' permutation (global), or the windows' (windows).
    outer: Bijection,
    /// Windows: where the short last window stands in the windows' order.
    short_at: u64,
    /// Windows of groups: the epoch position each window starts at, in
    /// the windows' order (and the row count last).
    starts: Vec<u64>,
}

impl Order {
    /// The order of `n` rows (at most `MAX_ROWS`); a window must be
    /// positive.
    pub fn new(n: u64, seed: u64, shuffle: Shuffle) -> Result<Order, Error> {
        if n > MAX_ROWS {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{n} rows: an epoch orders at most {MAX_ROWS}"
            ));
        }
        if shuffle == Shuffle::Windows(0) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "window must be positive, not 0"
            ));
        }
        if let Shuffle::Groups(ends) = &shuffle {
            let increasing = ends.windows(2).all(|e| e[0] < e[1]);
            if !increasing || ends.first() == Some(&0) || ends.last().copied().unwrap_or(0) != n {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "windows of groups must end at increasing rows, the last at {n}"
                ));
            }
        }
        Ok(Order { n, seed, shuffle })
    }

    pub fn rows(&self) -> u64 {
        self.n
    }

    pub fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }

    /// Epoch `epoch`'s permutation.
    pub fn epoch(&self, epoch: u64) -> EpochOrder {
        let mut starts = Vec::new();
        let (outer, short_at) = match &self.shuffle {
            Shuffle::Off => (Bijection::new(0, 0), 0),
            Shuffle::Global => (
                Bijection::new(self.n, key(self.seed, epoch, Purpose::Rows)),
                0,
            ),
            Shuffle::Windows(w) => {
                let windows = self.n.div_ceil(*w);
                let b = Bijection::new(windows, key(self.seed, epoch, Purpose::Windows));
                // The last window, the only one that may be short: where
                // the windows' order puts it.
                let short_at = match windows {
                    0 => 0,
                    k => b.invert(k - 1),
                };
                (b, short_at)
            }
            Shuffle::Groups(ends) => {
                let k = ends.len() as u64;
                let b = Bijection::new(k, key(self.seed, epoch, Purpose::Windows));
                starts.reserve(ends.len() + 1);
                let mut at = 0;
                for j in 0..k {
                    starts.push(at);
                    let window = b.apply(j) as usize;
                    let begin = if window == 0 { 0 } else { ends[window - 1] };
                    at += ends[window] - begin;
                }
                starts.push(at);
                (b, 0)
            }
        };
        EpochOrder {
            order: self.clone(),
            epoch,
            outer,
            short_at,
            starts,
        }
    }
}

impl EpochOrder {
    /// `P_e[position]`: the source row at `position < N` of the epoch.
    #[inline]
    pub fn row(&self, position: u64) -> u64 {
        let n = self.order.n;
        debug_assert!(position < n);
        match &self.order.shuffle {
            Shuffle::Off => position,
            Shuffle::Global => self.outer.apply(position),
            Shuffle::Groups(ends) => {
                let j = self.starts.partition_point(|&s| s <= position) - 1;
                let offset = position - self.starts[j];
                let window = self.outer.apply(j as u64);
                let begin = match window {
                    0 => 0,
                    k => ends[k as usize - 1],
                };
                let size = ends[window as usize] - begin;
                begin + self.inside(window, size, offset)
            }
            Shuffle::Windows(w) => {
                let w = *w;
                let last = n - (n.div_ceil(w) - 1) * w;
                // The windows before the short one are whole: position ->
                // (its place j in the windows' order, offset inside).
                let before = self.short_at * w;
                let (j, offset) = if position < before {
                    (position / w, position % w)
                } else if position < before + last {
                    (self.short_at, position - before)
                } else {
                    // Past the short window: `j - 1` whole ones before.
                    let q = position - last;
                    (q / w + 1, q % w)
                };
                let window = self.outer.apply(j);
                let size = if window == n.div_ceil(w) - 1 { last } else { w };
                window * w + self.inside(window, size, offset)
            }
        }
    }

    /// The row at `offset` inside window `window` of `size` rows.
    fn inside(&self, window: u64, size: u64, offset: u64) -> u64 {
        match size {
            1 => 0,
            s => {
                let key = key(self.order.seed, self.epoch, Purpose::Inside(window));
                Bijection::new(s, key).apply(offset)
            }
        }
    }

    /// The rows at positions `positions` of the epoch, appended to `out`.
    pub fn rows_into(&self, positions: std::ops::Range<u64>, out: &mut Vec<u64>) {
        out.reserve(positions.end.saturating_sub(positions.start) as usize);
        match self.order.shuffle {
            Shuffle::Off => out.extend(positions),
            Shuffle::Global => out.extend(positions.map(|p| self.outer.apply(p))),
            Shuffle::Windows(_) | Shuffle::Groups(_) => out.extend(positions.map(|p| self.row(p))),
        }
    }
}

/// How an epoch's sequence is cut: into global steps of `batch_size`
/// rows a rank, split over `world_size` ranks, and over DataLoader
/// workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub batch_size: u64,
    pub world_size: u64,
    pub rank: u64,
    pub drop_last: bool,
}

impl Split {
    /// Checks the split: positive sizes, a rank below the world size.
    pub fn new(
        batch_size: u64,
        world_size: u64,
        rank: u64,
        drop_last: bool,
    ) -> Result<Split, Error> {
        if batch_size == 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "batch_size must be positive, not 0"
            ));
        }
        if world_size == 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "world_size must be positive, not 0"
            ));
        }
        if rank >= world_size {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "rank {rank} is not in [0, world_size = {world_size})"
            ));
        }
        if batch_size
            .checked_mul(world_size)
            .is_none_or(|g| g > MAX_ROWS)
        {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "batch_size {batch_size} x world_size {world_size} is too large a global batch"
            ));
        }
        Ok(Split {
            batch_size,
            world_size,
            rank,
            drop_last,
        })
    }

    /// `G`: the rows of one global step.
    pub fn global_batch(&self) -> u64 {
        self.batch_size * self.world_size
    }

    /// The length of the epoch's sequence `S` over `n` rows: padded to a
    /// multiple of the world size, or cut to a multiple of `G`.
    pub fn sequence(&self, n: u64) -> u64 {
        match self.drop_last {
            false if n == 0 => 0,
            false => n.div_ceil(self.world_size) * self.world_size,
            true => n / self.global_batch() * self.global_batch(),
        }
    }

    /// Global steps of an epoch over `n` rows: every rank's batch count.
    pub fn steps(&self, n: u64) -> u64 {
        self.sequence(n).div_ceil(self.global_batch())
    }

    /// The positions of `S` that this rank's batch of global step `step`
    /// holds (empty past the epoch's end). Positions past `n` are the
    /// padding, read at `position % n` (S repeats `P_e` from its start).
    pub fn positions(&self, n: u64, step: u64) -> std::ops::Range<u64> {
        let len = self.sequence(n);
        let g = self.global_batch();
        let start = step.saturating_mul(g).min(len);
        let end = start.saturating_add(g).min(len);
        // A multiple of the world size: `len` is, and so is every `g`.
        let part = (end - start) / self.world_size;
        let first = start + self.rank * part;
        first..first + part
    }
}

/// Epoch `epoch`'s rows for this rank's batch of global step `step`,
/// appended to `out`: the source rows, the padding included (each
/// padding position `p >= n` is `P_e[p % n]`).
pub fn batch_rows(order: &EpochOrder, split: &Split, step: u64, out: &mut Vec<u64>) {
    let n = order.order.n;
    let positions = split.positions(n, step);
    if positions.end <= n {
        order.rows_into(positions, out);
    } else {
        out.extend(positions.map(|p| order.row(p % n)));
    }
}

/// The first step at or after `step` that worker `worker` of `workers`
/// takes (steps `worker, worker + workers, ...`).
pub fn worker_step(step: u64, worker: u64, workers: u64) -> u64 {
    let rem = step % workers;
    match rem <= worker {
        true => step - rem + worker,
        false => step - rem + workers + worker,
    }
}

/// Where an epoch stands: the object `state_dict()` and
/// `arrow_dlpack_loader_state` hand out and `load_state_dict` /
/// `arrow_dlpack_loader_restore` take, as JSON. Nothing in it is specific
/// to a rank: any rank's state resumes every rank, also under another
/// world size with the same global batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub version: u64,
    /// The epoch the next batch belongs to.
    pub epoch: u64,
    /// The global step of the next batch handed out.
    pub step: u64,
    /// `None`: unknown (a C stream read as it goes).
    pub num_rows: Option<u64>,
    /// A fingerprint of the columns read (names and types).
    pub schema: String,
    pub seed: u64,
    pub shuffle: bool,
    /// The resolved windows: their size (0: none, a global order), and a
    /// hash of the row groups' sizes where windows are whole row groups.
    pub window: Window,
    pub global_batch_size: u64,
}

/// The windows a state was taken under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub w: u64,
    pub groups: u64,
}

/// The keys of a state, in the order they are written.
const KEYS: [&str; 9] = [
    "version",
    "epoch",
    "step",
    "num_rows",
    "schema",
    "seed",
    "shuffle",
    "window",
    "global_batch_size",
];

impl State {
    /// The state as a JSON object, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(192);
        let rows = match self.num_rows {
            Some(n) => n.to_string(),
            None => "-1".to_string(),
        };
        let _ = write!(
            s,
            "{{\"version\": {}, \"epoch\": {}, \"step\": {}, \"num_rows\": {rows}, \"schema\": \"{}\", \
             \"seed\": {}, \"shuffle\": {}, \"window\": {{\"w\": {}, \"groups\": {}}}, \
             \"global_batch_size\": {}}}",
            self.version,
            self.epoch,
            self.step,
            self.schema,
            self.seed,
            self.shuffle,
            self.window.w,
            self.window.groups,
            self.global_batch_size
        );
        s
    }

    /// Parses a state written by [`State::to_json`] (by either face):
    /// every key present once, of its type, nothing else; a newer version
    /// refused first. Errors name the key.
    pub fn from_json(text: &str) -> Result<State, Error> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
        };
        let fields = p.object(0)?;
        p.space();
        if p.at != p.s.len() {
            return Err(bad_state(format_args!(
                "text after the object at byte {}",
                p.at
            )));
        }
        let get = |key: &str| -> Result<&Json, Error> {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| bad_state(format_args!("key {key:?} is missing")))
        };
        if let Some((k, _)) = fields.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
            return Err(bad_state(format_args!("unknown key {k:?}")));
        }
        for key in KEYS {
            if fields.iter().filter(|(k, _)| k == key).count() > 1 {
                return Err(bad_state(format_args!("key {key:?} appears twice")));
            }
        }
        let version = get("version")?.count("version")?;
        if version > STATE_VERSION {
            return Err(bad_state(format_args!(
                "version {version} is newer than this library's ({STATE_VERSION})"
            )));
        }
        if version == 0 {
            return Err(bad_state(format_args!("version 0 is not a state version")));
        }
        let num_rows = match get("num_rows")? {
            Json::Int(-1) => None,
            other => Some(other.count("num_rows")?),
        };
        let Json::Str(schema) = get("schema")? else {
            return Err(bad_state(format_args!("\"schema\" must be a string")));
        };
        let Json::Bool(shuffle) = get("shuffle")? else {
            return Err(bad_state(format_args!("\"shuffle\" must be true or false")));
        };
        let Json::Object(window) = get("window")? else {
            return Err(bad_state(format_args!(
                "\"window\" must be an object {{\"w\", \"groups\"}}"
            )));
        };
        let part = |key: &str| -> Result<u64, Error> {
            match window
                .iter()
                .filter(|(k, _)| k == key)
                .collect::<Vec<_>>()
                .as_slice()
            {
                [(_, v)] => v.count(&format!("window.{key}")),
                [] => Err(bad_state(format_args!("key \"window.{key}\" is missing"))),
                _ => Err(bad_state(format_args!(
                    "key \"window.{key}\" appears twice"
                ))),
            }
        };
        if let Some((k, _)) = window.iter().find(|(k, _)| k != "w" && k != "groups") {
            return Err(bad_state(format_args!("unknown key \"window.{k}\"")));
        }
        Ok(State {
            version,
            epoch: get("epoch")?.count("epoch")?,
            step: get("step")?.count("step")?,
            num_rows,
            schema: schema.clone(),
            seed: get("seed")?.count("seed")?,
            shuffle: *shuffle,
            window: Window {
                w: part("w")?,
                groups: part("groups")?,
            },
            global_batch_size: get("global_batch_size")?.count("global_batch_size")?,
        })
    }

    /// Checks that this state (loaded) was taken by a loader of the same
    /// source and options as `ours` (the loader's own state): the first
    /// key that differs is named, with both values.
    pub fn matches(&self, ours: &State) -> Result<(), Error> {
        let differ = |key: &str, theirs: &dyn std::fmt::Display, mine: &dyn std::fmt::Display| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "state key {key:?} is {theirs}, this loader's is {mine}: a state resumes only a loader of the same \
                 source and options"
            )
        };
        let rows = |n: Option<u64>| n.map_or("unknown".to_string(), |n| n.to_string());
        if self.num_rows != ours.num_rows {
            return Err(differ(
                "num_rows",
                &rows(self.num_rows),
                &rows(ours.num_rows),
            ));
        }
        if self.schema != ours.schema {
            return Err(differ("schema", &self.schema, &ours.schema));
        }
        if self.seed != ours.seed {
            return Err(differ("seed", &self.seed, &ours.seed));
        }
        if self.shuffle != ours.shuffle {
            return Err(differ("shuffle", &self.shuffle, &ours.shuffle));
        }
        if self.window != ours.window {
            let show = |w: Window| format!("{{w: {}, groups: {}}}", w.w, w.groups);
            return Err(differ("window", &show(self.window), &show(ours.window)));
        }
        if self.global_batch_size != ours.global_batch_size {
            return Err(differ(
                "global_batch_size",
                &self.global_batch_size,
                &ours.global_batch_size,
            ));
        }
        Ok(())
    }
}

#[cold]
fn bad_state(what: std::fmt::Arguments<'_>) -> Error {
    err!(ARROW_DLPACK_INVALID_ARGUMENT, "malformed state: {what}")
}

/// A JSON value of a state.
#[derive(Debug)]
enum Json {
    Int(i128),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// A non-negative integer that fits `u64`, or an error naming `key`.
    fn count(&self, key: &str) -> Result<u64, Error> {
        match self {
            Json::Int(n) => u64::try_from(*n).map_err(|_| {
                bad_state(format_args!(
                    "\"{key}\" is {n}: a count from 0 to 2^64 - 1 expected"
                ))
            }),
            _ => Err(bad_state(format_args!("\"{key}\" must be an integer"))),
        }
    }
}

/// A strict parser of the subset of JSON a state uses: objects (at most
/// two levels), integers, booleans, strings (escapes `\"` and `\\`).
/// Input sizes are bounded by what it reads; nothing is allocated beyond
/// the values themselves.
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

/// The longest state text read (a state is about 200 bytes).
const MAX_STATE: usize = 64 * 1024;

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Error> {
        self.space();
        match self.s.get(self.at) {
            Some(&x) if x == c => {
                self.at += 1;
                Ok(())
            }
            Some(&x) => Err(bad_state(format_args!(
                "expected '{}' at byte {}, found '{}'",
                c as char,
                self.at,
                x.escape_ascii()
            ))),
            None => Err(bad_state(format_args!(
                "expected '{}' at the end",
                c as char
            ))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Vec<(String, Json)>, Error> {
        if self.s.len() > MAX_STATE {
            return Err(bad_state(format_args!(
                "{} bytes: a state is at most {MAX_STATE}",
                self.s.len()
            )));
        }
        self.expect(b'{')?;
        let mut fields = Vec::new();
        self.space();
        if self.s.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(fields);
        }
        loop {
            self.space();
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value(depth)?;
            fields.push((key, value));
            self.space();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(fields);
                }
                _ => {
                    return Err(bad_state(format_args!(
                        "expected ',' or '}}' at byte {}",
                        self.at
                    )));
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        self.space();
        match self.s.get(self.at) {
            Some(b'{') if depth == 0 => Ok(Json::Object(self.object(depth + 1)?)),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Json::Bool(false))
            }
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => Err(bad_state(format_args!(
                "unexpected value at byte {}",
                self.at
            ))),
        }
    }

    fn integer(&mut self) -> Result<Json, Error> {
        let start = self.at;
        if self.s.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let n = self.at - digits;
        if n == 0 || n > 20 || (n > 1 && self.s[digits] == b'0') {
            return Err(bad_state(format_args!("malformed integer at byte {start}")));
        }
        if self
            .s
            .get(self.at)
            .is_some_and(|c| matches!(c, b'.' | b'e' | b'E'))
        {
            return Err(bad_state(format_args!(
                "the number at byte {start} is not an integer"
            )));
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).expect("ASCII");
        text.parse::<i128>()
            .map(Json::Int)
            .map_err(|_| bad_state(format_args!("malformed integer at byte {start}")))
    }

    fn string(&mut self) -> Result<String, Error> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.at) {
                None => return Err(bad_state(format_args!("unterminated string"))),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    match self.s.get(self.at + 1) {
                        Some(&c @ (b'"' | b'\\')) => out.push(c),
                        _ => {
                            return Err(bad_state(format_args!(
                                "unsupported escape at byte {}",
                                self.at
                            )));
                        }
                    }
                    self.at += 2;
                }
                Some(&c) if c < 0x20 => {
                    return Err(bad_state(format_args!(
                        "control character in a string at byte {}",
                        self.at
                    )));
                }
                Some(&c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| bad_state(format_args!("a string is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `n` up to a bound: the bijection hits each value once, and
    /// its inverse undoes it.
    #[test]
    fn bijection_is_a_permutation_of_every_small_domain() {
        let limit = if cfg!(miri) { 40 } else { 3000 };
        for n in 0..limit {
            let b = Bijection::new(n, mix(n));
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = b.apply(x);
                assert!(y < n, "n {n}: {x} -> {y}");
                assert!(!seen[y as usize], "n {n}: {y} twice");
                seen[y as usize] = true;
                assert_eq!(b.invert(y), x);
            }
        }
    }

    #[test]
    fn windows_permute_whole_windows() {
        for (n, w) in [
            (10, 3),
            (9, 3),
            (1, 5),
            (7, 1),
            (100, 7),
            (64, 64),
            (65, 64),
        ] {
            let order = Order::new(n, 3, Shuffle::Windows(w)).unwrap();
            let e = order.epoch(2);
            let rows: Vec<u64> = (0..n).map(|p| e.row(p)).collect();
            let mut sorted = rows.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n {n} w {w}");
            // Consecutive positions group by window: each window's rows
            // stand together.
            let windows: Vec<u64> = rows.iter().map(|r| r / w).collect();
            let mut runs = windows.clone();
            runs.dedup();
            assert_eq!(runs.len() as u64, n.div_ceil(w), "n {n} w {w}: {windows:?}");
        }
    }

    #[test]
    fn splits_cover_each_row_once_and_pad_from_the_start() {
        let order = Order::new(10, 1, Shuffle::Global).unwrap();
        let e = order.epoch(0);
        let split = |rank| Split::new(2, 3, rank, false).unwrap();
        assert_eq!(split(0).sequence(10), 12);
        assert_eq!(split(0).steps(10), 2);
        let mut all = Vec::new();
        for step in 0..2 {
            let mut sizes = Vec::new();
            for rank in 0..3 {
                let mut rows = Vec::new();
                batch_rows(&e, &split(rank), step, &mut rows);
                sizes.push(rows.len());
                all.extend(rows);
            }
            assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
        }
        let padding = [e.row(0), e.row(1)];
        assert_eq!(&all[10..], &padding);
        all.truncate(10);
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let cut = Split::new(2, 3, 0, true).unwrap();
        assert_eq!((cut.sequence(10), cut.steps(10)), (6, 1));
    }

    #[test]
    fn worker_steps_round_robin() {
        assert_eq!(worker_step(0, 1, 3), 1);
        assert_eq!(worker_step(4, 1, 3), 4);
        assert_eq!(worker_step(5, 1, 3), 7);
        assert_eq!(worker_step(6, 0, 3), 6);
    }

    #[test]
    fn state_round_trips_and_refusals_name_the_key() {
        let state = State {
            version: 1,
            epoch: 3,
            step: 17,
            num_rows: Some(1000),
            schema: "x:g".into(),
            seed: u64::MAX,
            shuffle: true,
            window: Window { w: 64, groups: 0 },
            global_batch_size: 32,
        };
        assert_eq!(State::from_json(&state.to_json()).unwrap(), state);
        let unknown = State {
            num_rows: None,
            ..state.clone()
        };
        assert_eq!(State::from_json(&unknown.to_json()).unwrap(), unknown);
        let text = state.to_json();
        for (bad, needle) in [
            (
                text.replace("\"version\": 1", "\"version\": 2"),
                "version 2 is newer",
            ),
            (
                text.replace("\"step\": 17", "\"step\": -3"),
                "\"step\" is -3",
            ),
            (
                text.replace("\"step\": 17", "\"step\": 1.5"),
                "not an integer",
            ),
            (text.replace("\"seed\"", "\"sead\""), "unknown key \"sead\""),
            (
                text.replace("\"shuffle\": true", "\"shuffle\": 1"),
                "\"shuffle\" must be true or false",
            ),
            (
                text.replace(", \"epoch\": 3", ""),
                "key \"epoch\" is missing",
            ),
            (
                text.replace("\"w\": 64", "\"w\": 64, \"w\": 3"),
                "\"window.w\" appears twice",
            ),
            (text[..text.len() - 1].to_string(), "expected ',' or '}'"),
            (format!("{text} x"), "text after the object"),
            ("[]".to_string(), "expected '{'"),
        ] {
            let e = State::from_json(&bad).unwrap_err();
            assert!(e.message().contains(needle), "{bad}: {}", e.message());
        }
    }

    /// Spearman's rank correlation of position and row, and the mean
    /// distance between the rows at adjacent positions over `n`.
    fn mixing(e: &EpochOrder, n: u64) -> (f64, f64) {
        let rows: Vec<f64> = (0..n).map(|p| e.row(p) as f64).collect();
        let mean = (n as f64 - 1.0) / 2.0;
        let (mut cov, mut var) = (0.0, 0.0);
        for (p, r) in rows.iter().enumerate() {
            cov += (p as f64 - mean) * (r - mean);
            var += (p as f64 - mean).powi(2);
        }
        let distance = rows.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (n as f64 - 1.0);
        (cov / var, distance)
    }

    #[test]
    fn global_orders_mix_and_differ_by_epoch_and_seed() {
        let n = if cfg!(miri) { 200 } else { 100_000 };
        let order = Order::new(n, 7, Shuffle::Global).unwrap();
        let (rho, distance) = mixing(&order.epoch(0), n);
        // Uncorrelated; adjacent rows about n/3 apart, as for a uniform
        // permutation: within four standard errors (about 1/sqrt(n)),
        // whatever n (Miri's is small).
        let tolerance = 4.0 / (n as f64).sqrt();
        assert!(rho.abs() < tolerance, "rank correlation {rho}");
        let expected = n as f64 / 3.0;
        assert!(
            (distance - expected).abs() < expected * tolerance,
            "distance {distance}"
        );
        let first: Vec<u64> = (0..50).map(|p| order.epoch(0).row(p)).collect();
        let next: Vec<u64> = (0..50).map(|p| order.epoch(1).row(p)).collect();
        let other = Order::new(n, 8, Shuffle::Global).unwrap();
        let seeded: Vec<u64> = (0..50).map(|p| other.epoch(0).row(p)).collect();
        assert_ne!(first, next);
        assert_ne!(first, seeded);
        let off = Order::new(n, 7, Shuffle::Off).unwrap();
        assert!((0..n).step_by(997).all(|p| off.epoch(3).row(p) == p));
    }

    /// Rows of the property tests' epochs (Miri interprets every step).
    const MAX_N: u64 = if cfg!(miri) { 60 } else { 3000 };

    proptest::proptest! {
        // No failure file: finding one asks for the working directory,
        // which Miri's isolation refuses.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: if cfg!(miri) { 4 } else { 256 },
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Windows of whole groups: each the fewest consecutive groups
        /// holding `w` rows (the last what remains), and every epoch a
        /// permutation of whole windows.
        #[test]
        fn group_windows_are_whole_groups_and_permuted_whole(
            sizes in proptest::collection::vec(0u64..30, 0..12),
            w in 1u64..60,
            seed: u64,
            epoch in 0u64..4,
        ) {
            let ends = group_windows(&sizes, w);
            let n: u64 = sizes.iter().sum();
            // The ends are group boundaries, each window the fewest groups
            // reaching `w`.
            let mut boundaries = vec![0u64];
            for s in &sizes {
                boundaries.push(boundaries.last().unwrap() + s);
            }
            let mut begin = 0;
            for (k, &end) in ends.iter().enumerate() {
                proptest::prop_assert!(boundaries.contains(&end) && end > begin);
                let last = k + 1 == ends.len();
                proptest::prop_assert!(last || end - begin >= w);
                // One group fewer would not reach `w`.
                let fewer = boundaries.iter().filter(|&&b| b > begin && b < end).max();
                if let Some(&f) = fewer {
                    proptest::prop_assert!(f - begin < w);
                }
                begin = end;
            }
            proptest::prop_assert_eq!(begin, n);
            let e = Order::new(n, seed, Shuffle::Groups(ends.clone())).unwrap().epoch(epoch);
            let window_of = |r: u64| ends.partition_point(|&end| end <= r);
            let mut seen = vec![false; n as usize];
            let mut runs = 0;
            let mut last = None;
            for p in 0..n {
                let r = e.row(p);
                proptest::prop_assert!(r < n && !seen[r as usize]);
                seen[r as usize] = true;
                if last != Some(window_of(r)) {
                    runs += 1;
                    last = Some(window_of(r));
                }
            }
            proptest::prop_assert_eq!(runs, ends.len());
        }

        /// Windows of any size over any count: a permutation of whole
        /// windows.
        #[test]
        fn windowed_orders_are_permutations(n in 0u64..MAX_N, w in 1u64..400, seed: u64, epoch in 0u64..5) {
            let e = Order::new(n, seed, Shuffle::Windows(w)).unwrap().epoch(epoch);
            let mut seen = vec![false; n as usize];
            let mut last_window = None;
            let mut windows = 0;
            for p in 0..n {
                let r = e.row(p);
                proptest::prop_assert!(r < n && !seen[r as usize]);
                seen[r as usize] = true;
                if last_window != Some(r / w) {
                    windows += 1;
                    last_window = Some(r / w);
                }
            }
            proptest::prop_assert_eq!(windows, n.div_ceil(w));
        }

        /// Every rank's batches of every step: equal counts and sizes, and
        /// the rows of the epoch each once (the padding repeating its
        /// start); the global sequence the same for any world size with
        /// the same global batch.
        #[test]
        fn splits_hold_every_row_once(n in 0u64..MAX_N / 6, g_parts in 1u64..6, world in 1u64..5, drop_last: bool, seed: u64) {
            let order = Order::new(n, seed, Shuffle::Global).unwrap().epoch(1);
            let global = |world: u64| {
                let splits: Vec<Split> = (0..world).map(|r| Split::new(g_parts, world, r, drop_last).unwrap()).collect();
                let steps = splits[0].steps(n);
                let mut sequence = Vec::new();
                for step in 0..steps {
                    let mut sizes = Vec::new();
                    for split in &splits {
                        proptest::prop_assert_eq!(split.steps(n), steps);
                        let before = sequence.len();
                        batch_rows(&order, split, step, &mut sequence);
                        sizes.push(sequence.len() - before);
                    }
                    proptest::prop_assert!(sizes.iter().all(|&s| s == sizes[0] && s > 0));
                }
                Ok(sequence)
            };
            let sequence = global(world)?;
            let g = g_parts * world;
            match drop_last {
                false => {
                    proptest::prop_assert_eq!(sequence.len() as u64, n.div_ceil(world) * world);
                    let mut rows = sequence[..n as usize].to_vec();
                    rows.sort();
                    proptest::prop_assert_eq!(rows, (0..n).collect::<Vec<_>>());
                    for (i, &r) in sequence[n as usize..].iter().enumerate() {
                        proptest::prop_assert_eq!(r, sequence[i % n as usize]);
                    }
                }
                true => {
                    proptest::prop_assert_eq!(sequence.len() as u64, n / g * g);
                    let mut rows = sequence.clone();
                    rows.sort();
                    rows.dedup();
                    proptest::prop_assert_eq!(rows.len(), sequence.len());
                }
            }
            // Elastic: one rank with the whole global batch reads the same
            // sequence (the padding aside).
            let alone: Vec<u64> = {
                let split = Split::new(g, 1, 0, drop_last).unwrap();
                let mut rows = Vec::new();
                for step in 0..split.steps(n) {
                    batch_rows(&order, &split, step, &mut rows);
                }
                rows
            };
            let real = (n as usize).min(sequence.len());
            proptest::prop_assert_eq!(&alone[..real.min(alone.len())], &sequence[..real.min(alone.len())]);
        }
    }
}
