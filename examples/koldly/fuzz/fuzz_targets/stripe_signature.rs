#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| koldly::fuzzing::stripe_signature(data));
