//! Fuzz target: see `rookery_fuzz::frame_decoder` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rookery_fuzz::frame_decoder(data));
