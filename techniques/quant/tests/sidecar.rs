//! The packed-matrix sidecar read back from bytes: its recorded shapes must account for the
//! bytes it holds, and a corrupt one is an error, never a panic or a wrapped size.

use std::collections::HashMap;
use std::path::Path;

use effbench_quant::file::parse_sidecar;
use effbench_quant::QuantError;

fn sidecar(desc: &str, bytes: &[u8]) -> Vec<u8> {
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![bytes.len()], bytes)
            .unwrap();
    let info = HashMap::from([("blk.0.ffn_up.weight".to_string(), desc.to_string())]);
    safetensors::serialize([("blk.0.ffn_up.weight", view)], Some(info)).unwrap()
}

#[test]
fn a_sidecar_whose_shape_matches_its_bytes_reads_back() {
    // int4, groups of 32, symmetric: a 32-wide row is 16 quant bytes and one 2-byte scale.
    let file = sidecar("4,32,sym,2,32", &[7u8; 36]);
    let packed = parse_sidecar(Path::new("m.gguf.packed"), &file).unwrap();
    let m = &packed["blk.0.ffn_up.weight"];
    assert_eq!(m.bytes().len(), 36);
}

#[test]
fn recorded_dimensions_whose_product_overflows_are_refused_not_wrapped() {
    let huge = usize::MAX / 2 + 1;
    for desc in [
        format!("4,32,sym,{huge},32"),
        format!("4,32,sym,2,{huge}"),
        format!("2,16,asym,{huge},{huge}"),
        "4,32,sym,3,32".to_string(),
        "4,32,sym,2".to_string(),
        "9,32,sym,2,32".to_string(),
    ] {
        let err = parse_sidecar(Path::new("m.gguf.packed"), &sidecar(&desc, &[7u8; 36]))
            .expect_err(&desc);
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            matches!(err, QuantError::BadFile { .. } | QuantError::Kernel(_)),
            "{desc}: {msg}"
        );
    }
}
