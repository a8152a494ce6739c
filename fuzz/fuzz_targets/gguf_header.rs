#![no_main]
//! A GGUF file as `GgufSource::open` reads it: the bounded header walk, then, for a header it
//! accepts, candle's reader, the tensor data extent and the model shape from the metadata.
//! Whatever the walk accepts candle must read, and nothing may panic or allocate past
//! libFuzzer's -malloc_limit_mb.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{Content, Value};
use effbench_core::gguf_header::GgufHeader;
use effbench_core::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = GgufHeader::from_bytes(data) else {
        return;
    };
    let content = Content::read(&mut Cursor::new(data))
        .unwrap_or_else(|e| panic!("the walk accepted a header candle refuses: {e}"));
    assert_eq!(content.tensor_data_offset, header.tensor_data_offset);
    assert!(content.tensor_infos.len() as u64 <= header.tensor_count);
    if header.check_tensor_data().is_ok() {
        let mut reader = Cursor::new(data);
        for name in content.tensor_infos.keys() {
            // candle loads only some types (not Q8_1, Q8K) and no scalars; those are errors.
            let _ = content.tensor(&mut reader, name, &candle_core::Device::Cpu);
        }
    }
    let vocab = match content.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(t)) => t.len(),
        _ => 32,
    };
    let _ = ModelConfig::from_gguf_metadata(&content.metadata, vocab);
});
