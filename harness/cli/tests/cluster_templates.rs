//! The Slurm and Kubernetes templates, run for real: the sbatch scripts execute as an array
//! task would (Slurm's variables set by hand), the Indexed Job's container script runs as each
//! pod would, and the merge steps join the shards. The manifests are parsed and checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ready() -> bool {
    effbench_assets::cached_or_skip(&["smollm2-135m-instruct", "mmlu"])
}

const RUN_ARGS: &str =
    "--suite mmlu-lite --subjects anatomy --items-per-subject 3 --techniques as-stored --no-speed";

fn records(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("items-as-stored.jsonl")).map_or(0, |t| t.lines().count())
}

fn assert_merged(run: &Path) {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["provenance"]["flags"]["shards"], "2");
    assert_eq!(report["techniques"][0]["quality"]["n"], 3);
    assert_eq!(records(run), 3);
}

#[test]
fn slurm_array_tasks_and_the_merge_job_run_as_sbatch_would() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let slurm = repo().join("scripts/slurm");
    let task = |index: usize| {
        let out = Command::new("bash")
            .arg(slurm.join("effbench-array.sbatch"))
            .env("SLURM_ARRAY_TASK_ID", index.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_CPUS_PER_TASK", "2")
            .env("EFFBENCH_BIN", env!("CARGO_BIN_EXE_effbench"))
            .env("EFFBENCH_RESULTS", tmp.path())
            .env("EFFBENCH_RUN_ID", "slurm-run")
            .env("EFFBENCH_ARGS", RUN_ARGS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    task(0);
    task(1);
    let shard1 = tmp.path().join("slurm-run/shard-1-of-2");
    let before = records(&shard1);
    // A requeued task continues its shard (--resume) and repeats nothing.
    task(1);
    assert_eq!(records(&shard1), before);

    let out = Command::new("bash")
        .arg(slurm.join("effbench-merge.sbatch"))
        .env("EFFBENCH_BIN", env!("CARGO_BIN_EXE_effbench"))
        .env("EFFBENCH_RESULTS", tmp.path())
        .env("EFFBENCH_RUN_ID", "slurm-run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_merged(&tmp.path().join("slurm-run"));

    let submit = std::fs::read_to_string(slurm.join("submit.sh")).unwrap();
    assert!(submit.contains("--dependency=\"afterok:"));
    let syntax = Command::new("bash")
        .args(["-n"])
        .arg(slurm.join("submit.sh"))
        .status()
        .unwrap();
    assert!(syntax.success());
}

fn load(name: &str) -> Yaml {
    let text = std::fs::read_to_string(repo().join("scripts/k8s").join(name)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn env_value(container: &Yaml, name: &str) -> String {
    container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("env {name} missing"))
        .to_string()
}

fn mounts(container: &Yaml) -> Vec<String> {
    container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubernetes_indexed_job_is_well_formed_and_its_pods_and_merge_run() {
    let job = load("effbench-shards.yaml");
    assert_eq!(job["kind"].as_str(), Some("Job"));
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap();
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let container = &pod["containers"][0];
    assert_eq!(
        env_value(container, "SHARDS"),
        completions.to_string(),
        "SHARDS must equal completions"
    );
    assert_eq!(env_value(container, "EFFBENCH_CACHE"), "/cache");
    let m = mounts(container);
    assert!(m.contains(&"/cache".to_string()) && m.contains(&"/results".to_string()));
    let claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap()
        .to_string();
    let script = container["args"][0].as_str().unwrap().to_string();
    assert!(
        script.contains("--shard \"$JOB_COMPLETION_INDEX/$SHARDS\""),
        "{script}"
    );

    let merge = load("effbench-merge.yaml");
    let merge_pod = &merge["spec"]["template"]["spec"];
    let merge_container = &merge_pod["containers"][0];
    assert_eq!(
        env_value(merge_container, "RUN_ID"),
        env_value(container, "RUN_ID")
    );
    assert_eq!(
        merge_pod["volumes"][0]["persistentVolumeClaim"]["claimName"].as_str(),
        Some(claim.as_str())
    );
    let merge_script = merge_container["args"][0].as_str().unwrap().to_string();
    assert!(merge_script.contains("merge \"/results/$RUN_ID\""));

    if !ready() {
        return;
    }
    // Run each pod's script as Kubernetes would, with /results mapped to a scratch directory.
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let local = |s: &str| s.replace("/results", results.to_str().unwrap());
    for index in 0..2 {
        let out = Command::new("sh")
            .args(["-c", &local(&script)])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("SHARDS", "2")
            .env("RUN_ID", "k8s-run")
            .env("EFFBENCH_ARGS", format!("{RUN_ARGS} --threads 2"))
            .env("EFFBENCH_BIN", env!("CARGO_BIN_EXE_effbench"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("sh")
        .args(["-c", &local(&merge_script)])
        .env("RUN_ID", "k8s-run")
        .env("EFFBENCH_BIN", env!("CARGO_BIN_EXE_effbench"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_merged(&results.join("k8s-run"));
}
