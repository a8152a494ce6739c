#![no_main]
//! A safetensors checkpoint as `SafetensorsSource::open` checks it: `config.json` and the
//! `.safetensors` file, split at the input's first 0 byte (never in valid JSON). A file whose
//! header passes the check is then parsed by the safetensors crate as the loader would.

use std::path::Path;

use effbench_core::source::check_safetensors_bytes;
use effbench_core::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (config, weights) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(cfg) = ModelConfig::from_hf_config_bytes(config, Path::new("config.json")) {
        // What the loader multiplies out: a sane config keeps these far from overflow.
        let _ = cfg.kv_bytes_per_token(4);
        let _ = cfg.q_dim();
    }
    if check_safetensors_bytes(weights).is_ok() {
        if let Ok(st) = safetensors::SafeTensors::deserialize(weights) {
            for (_, view) in st.tensors() {
                let _ = view.data().len();
            }
        }
    }
});
