//! Fuzz target: see `rookery_fuzz::connection` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rookery_fuzz::connection(data));
