//! Gemma-3-270M's Q8_0 matrices (the tied output head, 262,144 x 640, and the attention value
//! projection of half the layers) on the hidden states a forward pass gives them, every kernel
//! variant against the scalar reference on the same quantized activations.
//!
//! The kernels' random-weight tests (`runtime/kernels/tests`) draw activations unlike Gemma's:
//! its norm weights reach 300 on a few channels, so a normalized row has a few entries in the
//! hundreds beside many near one, and rows differ from token to token. So the activations here
//! are the real ones, captured block by block ([`effbench_core::Model::run_block`]) over the
//! start of WikiText-2.
//!
//! This is the kernel check that `real_models::gemma3_perplexity_matches_llama_cpp` cannot be:
//! one of its windows moves by about 1% when every matmul output is changed by one part in
//! 10^7, about an f32 rounding, so perplexity there cannot tell a kernel's bias from chance.
//!
//! Reads the model and WikiText-2 from effbench's cache (`scripts/fetch-test-assets.sh`).
//! Without them the test skips, unless EFFBENCH_REQUIRE_ASSETS=1 (as in `scripts/test.sh` and
//! CI), where it fails.

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use effbench_core::{AsStored, LogitsFor, SeqChunk};
use effbench_kernels::{dequantize, matmul_with, reference, Isa, Scratch, WeightFormat};

const NAME: &str = "gemma-3-270m";
/// Tokens of WikiText-2 whose hidden states are multiplied: enough rows for full 8-row
/// activation tiles and a partial one, few enough for the scalar reference.
const TOKENS: usize = 61;
/// Output-head rows checked per range: the head has 262,144, too many for the reference.
const HEAD_ROWS: usize = 1024;

/// One Q8_0 matrix, or a range of its rows, and the activations the model multiplies it with.
struct Case {
    what: String,
    weights: Vec<u8>,
    n: usize,
    k: usize,
    x: Vec<f32>,
}

fn rows_of(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The cases, from the model's own forward pass over the start of WikiText-2.
fn cases() -> Option<Vec<Case>> {
    if !effbench_assets::cached_or_skip(&[NAME, "wikitext-2"]) {
        return None;
    }
    let path = effbench_assets::cached_path(NAME).unwrap();
    let dev = Device::Cpu;
    let m = effbench_core::load(&path, &AsStored, &dev).expect("load Gemma-3-270M");
    let cfg = m.model.config().clone();
    let wiki = effbench_assets::cached_path("wikitext-2").unwrap();
    let text = std::fs::read_to_string(wiki).unwrap().replace("\r\n", "\n");
    let mut end = 4096;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let tokens = m.encode(&text[..end]).unwrap();
    assert!(tokens.len() >= TOKENS);
    let batch = [SeqChunk::new(0, tokens[..TOKENS].to_vec(), LogitsFor::None)];

    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let q8 = |file: &mut std::fs::File, name: &str| {
        let qt = content.tensor(file, name, &dev).unwrap();
        (qt.dtype() == GgmlDType::Q8_0).then(|| {
            let (n, k) = qt.shape().dims2().unwrap();
            (qt.data().unwrap().into_owned(), n, k)
        })
    };

    let mut cases = Vec::new();
    let mut x = m.model.embed_sequences(&batch).unwrap();
    for layer in 0..cfg.num_layers {
        if let Some((weights, n, k)) = q8(&mut file, &format!("blk.{layer}.attn_v.weight")) {
            // The block's own first step: its input normalized by its attention norm.
            let norm = content
                .tensor(&mut file, &format!("blk.{layer}.attn_norm.weight"), &dev)
                .unwrap()
                .dequantize(&dev)
                .unwrap();
            let h = candle_nn::ops::rms_norm(&x, &norm, cfg.rms_norm_eps as f32).unwrap();
            cases.push(Case {
                what: format!("blk.{layer}.attn_v"),
                weights,
                n,
                k,
                x: rows_of(&h),
            });
        }
        x = m.model.run_block(layer, &batch, &x).unwrap();
    }
    let head = rows_of(&m.model.head_input(&x).unwrap());
    let (weights, n, k) =
        q8(&mut file, "token_embd.weight").expect("Gemma's tied head is Q8_0 here");
    let row_bytes = WeightFormat::Q8_0.matrix_bytes(1, k);
    // Rows from the start, the middle and the end of the vocabulary.
    for r0 in [0, n / 2, n - HEAD_ROWS] {
        cases.push(Case {
            what: format!("output head rows {r0}..{}", r0 + HEAD_ROWS),
            weights: weights[r0 * row_bytes..(r0 + HEAD_ROWS) * row_bytes].to_vec(),
            n: HEAD_ROWS,
            k,
            x: head.clone(),
        });
    }
    assert!(
        cases.len() >= 4,
        "expected Q8_0 attn_v layers besides the head: {} cases",
        cases.len()
    );
    Some(cases)
}

/// Every kernel variant is within f32 summation noise of the scalar reference, which sums
/// `d_w * d_x * (integer block dot product)` in block order as ggml does: at most `REL` of the
/// output's magnitude `sum_i |w_i x_i|` (the dequantized weights against the same activations).
/// A few dozen f32 additions stay below that (the AVX2 kernels reach 0.1-0.4 of it on these
/// matrices); a zero point of 128 removed in f32 after the scales reached 2.9 times it on
/// blk.13.attn_v (the AVX-512 tiles before they took it out in integers), and a misread
/// block, a wrong scale or a lost block is orders of magnitude over.
const REL: f64 = 6e-7;

#[test]
fn gemma3_q8_0_matrices_on_real_hidden_states_match_the_reference() {
    let Some(cases) = cases() else { return };
    let format = WeightFormat::Q8_0;
    for case in &cases {
        let (n, k) = (case.n, case.k);
        let m = case.x.len() / k;
        let wf = dequantize(format, &case.weights, n, k).unwrap();
        let mut want = vec![0f32; m * n];
        reference::matmul(format, &case.weights, n, k, &case.x, m, &mut want).unwrap();
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; m * n];
            let mut scratch = Scratch::new();
            matmul_with(
                isa,
                format,
                &case.weights,
                n,
                k,
                &case.x,
                m,
                &mut got,
                &mut scratch,
            )
            .unwrap();
            let mut worst = (0f64, 0usize);
            for c in 0..m {
                let x = &case.x[c * k..(c + 1) * k];
                for r in 0..n {
                    let i = c * n + r;
                    let w = &wf[r * k..(r + 1) * k];
                    let mag: f64 = w
                        .iter()
                        .zip(x)
                        .map(|(&w, &x)| (w as f64 * x as f64).abs())
                        .sum();
                    let ratio = (got[i] as f64 - want[i] as f64).abs() / (REL * mag).max(1e-30);
                    // A NaN output is the worst of all.
                    if ratio > worst.0 || ratio.is_nan() {
                        worst = (ratio, i);
                    }
                }
            }
            let (ratio, i) = worst;
            eprintln!(
                "{isa:?} {} (n={n}, k={k}, m={m}): worst error / bound {ratio:.3} at out[{i}] \
                 ({} vs reference {})",
                case.what, got[i], want[i]
            );
            assert!(
                ratio <= 1.0,
                "{isa:?} {}: out[{i}] = {} vs reference {} ({ratio:.1} x the f32 bound)",
                case.what,
                got[i],
                want[i]
            );
        }
    }
}
