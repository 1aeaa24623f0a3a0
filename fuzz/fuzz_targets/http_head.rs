//! Fuzz target: see `rookery_fuzz::http_head` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rookery_fuzz::http_head(data));
