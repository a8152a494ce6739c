//! `results/README.md`: every published run with the command that reproduces it.

use std::path::Path;

use crate::error::{ReportError, Result};
use crate::schema::RunReport;

/// Writes the index of `results` to its README.md, atomically; returns that path.
pub fn write_index(results: &Path) -> Result<std::path::PathBuf> {
    let path = results.join("README.md");
    crate::write_atomic(&path, index_markdown(results)?.as_bytes())?;
    Ok(path)
}

/// The index of a results directory: runs effbench recorded (with their command), then any
/// other published directory with the first heading of its markdown.
pub fn index_markdown(results: &Path) -> Result<String> {
    let mut dirs: Vec<_> = std::fs::read_dir(results)
        .map_err(|source| ReportError::Io {
            path: results.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut runs = String::new();
    let mut others = String::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().to_string());
        match RunReport::load_dir(&dir) {
            Ok(r) => {
                let page = ["report.md", "summary.md"]
                    .into_iter()
                    .find(|f| dir.join(f).exists())
                    .unwrap_or("report.json");
                let techniques: Vec<String> = r
                    .techniques
                    .iter()
                    .map(|t| format!("{} ({})", t.technique, t.label))
                    .collect();
                runs.push_str(&format!(
                    "### [{name}]({name}/{page})\n\n{} on {}, {}-shot: {}. Started {}.\n\n```sh\n{}\n```\n\n",
                    r.suite.name,
                    r.model.name,
                    r.suite.shots,
                    techniques.join(", "),
                    r.provenance.started,
                    reproduce_command(&r.provenance.command)
                ));
            }
            Err(ReportError::NotARun(_)) => {
                let page = ["README.md", "results.md"]
                    .into_iter()
                    .find(|f| dir.join(f).exists());
                let Some(page) = page else { continue };
                let text = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
                let title = text
                    .lines()
                    .find(|l| l.starts_with('#'))
                    .map_or(name.clone(), |l| {
                        l.trim_start_matches('#').trim().to_string()
                    });
                others.push_str(&format!(
                    "- [{name}]({name}/{page}): {title} (the command is in the page)\n"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let mut md = String::from(
        "# Published results\n\nEvery run here was measured by effbench on the machine its page names; each entry gives the command that reproduces it. `scripts/publish` regenerates this page and every run's report.\n\n## Runs\n\n",
    );
    md.push_str(&runs);
    if !others.is_empty() {
        md.push_str("## Other measurements\n\n");
        md.push_str(&others);
    }
    Ok(md)
}

/// The recorded argv with the binary path shortened to what a user types.
fn reproduce_command(argv: &[String]) -> String {
    let mut parts: Vec<String> = argv.to_vec();
    if let Some(first) = parts.first_mut() {
        *first = "effbench".into();
    }
    parts
        .iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
