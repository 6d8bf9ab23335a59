#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rstscope_fuzz::capture_reader(data));
