#![no_main]
//! The packed int4/int2 sidecar that `effbench quantize` writes beside a GGUF: a safetensors
//! file whose metadata records each matrix's format and `(n, k)`.

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(matrices) = effbench_quant::file::parse_sidecar(Path::new("m.gguf.packed"), data) {
        for m in matrices.values() {
            let _ = m.bytes().len();
        }
    }
});
