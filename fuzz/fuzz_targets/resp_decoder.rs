//! Fuzz target: see `fuzz/src/resp.rs` for the input layout and the checks.
#![no_main]

#[path = "../src/resp.rs"]
mod resp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| resp::resp_decoder(data));
