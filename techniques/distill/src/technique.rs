//! The distillation technique's name: `student:M`, another (smaller) model scored on the same
//! items as the teacher.

use effbench_core::technique::{TechniqueGrammar, TechniqueKind};

pub const GRAMMAR: TechniqueGrammar = TechniqueGrammar {
    kind: TechniqueKind::Weights,
    syntax: "student:M",
    help: "another model in place of the teacher, e.g. a student from `effbench distill` \
           (a known name or a path), evaluated on the same items",
};

/// Parses a `student:` name into the student's model name or path; `None` when `name` is not
/// a student.
pub fn parse_student(name: &str) -> Option<Result<String, String>> {
    let model = name.strip_prefix("student:")?;
    Some(if model.is_empty() {
        Err(
            "`student:` needs a model (e.g. student:qwen2.5-coder-0.5b-instruct or student:PATH)"
                .into(),
        )
    } else {
        Ok(model.to_string())
    })
}
