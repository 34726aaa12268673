#![no_main]
//! libFuzzer entry point; the body is [`concoord_fuzz::frame_decoder::run`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| concoord_fuzz::frame_decoder::run(data));
