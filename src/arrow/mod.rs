//! Arrow C Data Interface structs: [`read`](mod@read), the only reader of
//! untrusted arrays and schemas; [`stream`](mod@stream), the reader of C
//! streams, chunk by chunk; and [`write`](mod@write), the builder of the
//! arrays and schemas that imports hand out.

pub mod read;
pub mod stream;
pub mod write;
