//! config.yaml comes from the researcher, but also from whatever an agent wrote: the
//! parser must answer every input with a config or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = expcluster_core::ExperimentConfig::parse(text, std::path::Path::new("config.yaml"));
    }
});
