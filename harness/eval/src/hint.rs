//! Refusals that say what would get past them. The engine knows settings, not flags: a hint
//! names each setting it concerns as `{field}`, a field of the engine's configuration
//! (`RunConfig`, `MergeConfig`, `ModelConfig`), and whoever shows the error words the fields as
//! its user knows them; the binary as its flags (`{run_id}` is `--run-id` there).

use std::fmt;

/// An error with a hint that names settings as `{field}`.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl Hinted {
    /// The one-line message with the hint in parentheses after it, each `{field}` of the hint
    /// written by `setting`.
    pub fn render(&self, setting: impl Fn(&str) -> String) -> String {
        format!("{} (hint: {})", self.message, fill(&self.hint, setting))
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(|field| format!("`{field}`")))
    }
}

impl std::error::Error for Hinted {}

/// An error of `message` with `hint`, whose settings are written `{field}`.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> crate::error::EvalError {
    crate::error::EvalError::Hinted(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// `text` with each `{field}` (lowercase letters and underscores) written by `setting`; any
/// other brace is kept as it is.
fn fill(text: &str, setting: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close)
                if close > 0
                    && after[..close]
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                out.push_str(&setting(&after[..close]));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_worded_by_the_caller_and_other_braces_kept() {
        let e = Hinted {
            message: "run `x` already exists".into(),
            hint: "{resume} to continue it, or another {run_id}; {0} and {} stay".into(),
        };
        assert_eq!(
            e.render(|f| format!("--{}", f.replace('_', "-"))),
            "run `x` already exists (hint: --resume to continue it, or another --run-id; {0} and {} stay)"
        );
        assert_eq!(
            e.to_string(),
            "run `x` already exists (hint: `resume` to continue it, or another `run_id`; {0} and {} stay)"
        );
    }
}
