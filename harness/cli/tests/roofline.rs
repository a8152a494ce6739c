//! `effbench hw --calibrate` measures the roofs, and `effbench bench` reports the bytes and
//! flops per token that turn them into a decode and a prefill ceiling.

use std::process::Command;

fn effbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .expect("run effbench")
}

#[test]
fn calibrate_reports_each_thread_count() {
    let o = effbench(&[
        "hw",
        "--json",
        "--calibrate",
        "-t",
        "1,2",
        "--array-mib",
        "16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let roofs = v["roofline"].as_array().expect("a roofline array");
    assert_eq!(roofs.len(), 2);
    for (r, threads) in roofs.iter().zip([1, 2]) {
        assert_eq!(r["threads"], threads);
        for key in ["triad_gb_per_s", "read_gb_per_s", "gemm_f32_gflop_per_s"] {
            let x = r[key].as_f64().unwrap();
            assert!(x.is_finite() && x > 0.0, "{key} = {x}");
        }
    }
    // Without --calibrate nothing is measured, and the report is the plain hardware one.
    let o = effbench(&["hw", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("roofline").is_none());
    let o = effbench(&["hw", "--calibrate", "-t", "0"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("thread counts must be positive"));
}

#[test]
fn bench_reports_bytes_and_flops_per_token() {
    let Some(_) = effbench_assets::cached_path_or_skip("smollm2-135m-instruct") else {
        return;
    };
    let o = effbench(&[
        "bench",
        "-m",
        "smollm2-135m-instruct",
        "-t",
        "1",
        "-p",
        "4",
        "-n",
        "3",
        "-r",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let weights = v["weight_bytes"].as_f64().unwrap();
    let bytes = v["decode_bytes_per_token"].as_f64().unwrap();
    // SmolLM2's head is its embedding table, so a step reads about every stored byte once.
    assert!(
        bytes > 0.95 * weights && bytes < 1.05 * weights,
        "{bytes} vs {weights}"
    );
    // 2 flops per weight: SmolLM2 has ~134.5M weights in its blocks and head.
    let flops = v["prefill_flops_per_token"].as_f64().unwrap();
    assert!((flops / 2.0 - 134.5e6).abs() < 1e6, "{flops}");
}
