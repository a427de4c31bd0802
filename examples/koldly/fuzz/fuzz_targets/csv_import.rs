#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| koldly::fuzzing::csv_import(data));
