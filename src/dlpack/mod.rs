//! DLPack tensors read: [`read`](mod@read), the only reader of untrusted tensors.

pub mod read;
