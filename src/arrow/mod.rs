//! Arrow C Data Interface structs: [`read`](mod@read), the only reader of
//! untrusted arrays and schemas; [`stream`](mod@stream), the reader of C
//! streams, chunk by chunk; [`write`](mod@write), the builder of the
//! arrays and schemas that imports hand out; and [`release`](mod@release),
//! the one way a struct handed over is released.

pub mod read;
pub mod release;
pub mod stream;
pub mod write;
