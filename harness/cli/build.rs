//! Records the git commit in the binary, and whether the tree it was built from differed from
//! that commit, for the provenance of every result it writes.
fn main() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Tracked files of the whole repository (a build script runs in its package's directory,
    // hence `:/`), leaving out results/, which a run under way writes.
    let dirty = match git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":(top,exclude)results",
    ]) {
        Some(s) => (!s.is_empty()).to_string(),
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=EFFBENCH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=EFFBENCH_GIT_DIRTY={dirty}");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
    println!("cargo:rerun-if-changed=../../.git/index");
    // Any source edit can change the answer; cargo watches these trees by modification time.
    for tree in [
        "../../harness",
        "../../techniques",
        "../../datasets",
        "../../runtime",
    ] {
        println!("cargo:rerun-if-changed={tree}");
    }
    println!("cargo:rerun-if-changed=../../Cargo.toml");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
}
