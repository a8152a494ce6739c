//! A quantized file of a Phi-3 source: written in llama.cpp's phi3 layout (q/k/v fused into
//! `attn_qkv`, gate/up into an `ffn_up` of 2 * n_ff rows), with no stale copy of the source's
//! fused matrices, and read back by effbench to the logits of the model quantized in memory.

use std::collections::BTreeMap;

use candle_core::quantized::gguf_file;
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use effbench_core::source::GgufSource;
use effbench_core::testing::{prefill_logits, tiny_config, write_gguf_checkpoint};
use effbench_core::{
    Architecture, AsStored, LinearWeight, Model, SourceTensor, WeightPolicy, WeightRole,
};
use effbench_quant::pipeline::weight_values;
use effbench_quant::{rtn, QuantPolicy, Recipe};

/// The file's matrices as stored, with embeddings in f16 as the quantizing policy keeps them.
#[derive(Debug)]
struct AsStoredF16Embeddings;

impl WeightPolicy for AsStoredF16Embeddings {
    fn build(
        &self,
        name: &str,
        role: WeightRole,
        source: SourceTensor,
    ) -> effbench_core::Result<std::sync::Arc<dyn LinearWeight>> {
        AsStored.build(name, role, source)
    }
    fn embedding_dtype(&self) -> Option<candle_core::DType> {
        Some(candle_core::DType::F16)
    }
    fn describe(&self, source_format: &str) -> String {
        AsStored.describe(source_format)
    }
}

#[test]
fn a_phi3_quantized_file_is_in_llama_cpp_layout_and_reads_back() {
    let cfg = tiny_config(Architecture::Phi3);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("phi3.gguf");
    write_gguf_checkpoint(&src, &cfg, 42, GgmlDType::F32);
    let dev = Device::Cpu;
    let recipe = Recipe::parse_technique("int4-g32-sym").unwrap().unwrap();
    let source_model =
        Model::load(&mut GgufSource::open(&src, &dev).unwrap(), &AsStored, &dev).unwrap();
    let matrices: BTreeMap<_, _> = source_model
        .linear_weights()
        .into_iter()
        .map(|(name, w)| {
            let (n, k) = (w.out_features(), w.in_features());
            // Quantized from f16, as the pipeline and QuantPolicy quantize.
            let f16 = Tensor::new(weight_values(w.as_ref()).unwrap(), &Device::Cpu)
                .and_then(|t| t.to_dtype(candle_core::DType::F16))
                .and_then(|t| t.to_dtype(candle_core::DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap();
            (name, rtn(recipe.spec, &f16, n, k))
        })
        .collect();
    assert!(matrices.contains_key("blk.0.ffn_gate.weight"));
    let out = dir.path().join("phi3-int4.gguf");
    effbench_quant::file::write(&src, recipe, &matrices, &out).unwrap();
    assert!(!effbench_quant::file::sidecar_path(&out).exists());

    let content = gguf_file::Content::read(&mut std::fs::File::open(&out).unwrap()).unwrap();
    for i in 0..cfg.num_layers {
        let info = |s: &str| content.tensor_infos.get(&format!("blk.{i}.{s}.weight"));
        let qkv = info("attn_qkv").expect("attn_qkv");
        assert_eq!(qkv.ggml_dtype, GgmlDType::Q4_0);
        assert_eq!(
            qkv.shape.dims(),
            [cfg.q_dim() + 2 * cfg.kv_dim(), cfg.hidden_size]
        );
        let up = info("ffn_up").expect("ffn_up");
        assert_eq!(up.ggml_dtype, GgmlDType::Q4_0);
        assert_eq!(
            up.shape.dims(),
            [2 * cfg.intermediate_size, cfg.hidden_size]
        );
        for gone in ["attn_q", "attn_k", "attn_v", "ffn_gate"] {
            assert!(info(gone).is_none(), "blk.{i}.{gone} written separately");
        }
    }

    let seq: Vec<u32> = (0..11)
        .map(|i| (i * 37 + 11) % cfg.vocab_size as u32)
        .collect();
    let from_file = Model::load(
        &mut GgufSource::open(&out, &dev).unwrap(),
        &AsStoredF16Embeddings,
        &dev,
    )
    .unwrap();
    let in_memory = Model::load(
        &mut GgufSource::open(&src, &dev).unwrap(),
        &QuantPolicy::rtn(recipe, &dev),
        &dev,
    )
    .unwrap();
    let (a, b) = (
        prefill_logits(&from_file, &seq),
        prefill_logits(&in_memory, &seq),
    );
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        d < 1e-5,
        "the file's logits differ from the in-memory model's by {d}"
    );
}
