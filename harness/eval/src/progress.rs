//! Progress bars on long work, in one style: a bar of 30, counts, rate and ETA.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps drawn by indicatif's `template` (its `{bar:30}`, `{pos}`, `{len}`,
/// `{msg}`, `{eta}` placeholders).
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|e| panic!("progress template `{template}` is malformed: {e}")),
    );
    bar
}

/// A bar of `len` items of `unit`, `pos` of them already done, labelled `prefix`.
pub fn counted(len: u64, pos: u64, prefix: String, unit: &str) -> ProgressBar {
    let bar = bar(
        len,
        &format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"),
    );
    bar.set_position(pos);
    bar.set_prefix(prefix);
    bar
}
