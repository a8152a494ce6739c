//! Hugging Face rows of the standard tasks, as the datasets hub exports them to JSON or JSONL:
//! `ai2_arc`, `hellaswag`, `piqa`, `winogrande`, `openbookqa`, `boolq` (super_glue's or
//! google's), `commonsense_qa`, `social_i_qa` and `sciq`. Each row is rendered as
//! lm-evaluation-harness's task template renders it (cloze: the log-likelihood of each answer
//! text after the prompt), so a user's own copy scores like `--suite <task>`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::text;
use crate::item::{Rendered, ScoreNorm};

/// Which task's row layout a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HfTask {
    Arc,
    Hellaswag,
    Piqa,
    Winogrande,
    OpenbookQa,
    Boolq,
    CommonsenseQa,
    SocialIqa,
    Sciq,
}

/// A row rendered: what the item's fields become.
pub(crate) struct RenderedRow {
    pub question: String,
    pub choices: Vec<String>,
    pub answer: usize,
    pub id: Option<String>,
    pub rendered: Rendered,
}

type Row = std::result::Result<RenderedRow, String>;

/// As in the other layouts: one answer letter each.
const MAX_CHOICES: usize = 26;

impl HfTask {
    /// The subject its items get: lm-eval's task name (ARC rows do not say which of the two
    /// ARC sets they come from).
    pub fn name(self) -> &'static str {
        match self {
            HfTask::Arc => "arc",
            HfTask::Hellaswag => "hellaswag",
            HfTask::Piqa => "piqa",
            HfTask::Winogrande => "winogrande",
            HfTask::OpenbookQa => "openbookqa",
            HfTask::Boolq => "boolq",
            HfTask::CommonsenseQa => "commonsense_qa",
            HfTask::SocialIqa => "social_iqa",
            HfTask::Sciq => "sciq",
        }
    }

    /// The metric that picks each answer: OLMES' primary metric for the task's 0-shot cloze
    /// form (ARC as ARC-Easy's), so a file scores as `--suite <task>` does.
    pub fn norm(self) -> ScoreNorm {
        match self {
            HfTask::Arc | HfTask::Winogrande | HfTask::Boolq | HfTask::Sciq => ScoreNorm::Raw,
            HfTask::Hellaswag
            | HfTask::Piqa
            | HfTask::OpenbookQa
            | HfTask::CommonsenseQa
            | HfTask::SocialIqa => ScoreNorm::PerChar,
        }
    }

    /// The task a record's fields identify, if any.
    pub(crate) fn sniff(obj: &Map<String, Value>) -> Option<HfTask> {
        let has = |keys: &[&str]| keys.iter().all(|k| obj.contains_key(*k));
        let lettered = obj.get("choices").is_some_and(Value::is_object) && has(&["answerKey"]);
        Some(if lettered && has(&["question_stem"]) {
            HfTask::OpenbookQa
        } else if lettered && has(&["question", "question_concept"]) {
            HfTask::CommonsenseQa
        } else if lettered && has(&["question"]) {
            HfTask::Arc
        } else if has(&["ctx", "endings", "label"]) {
            HfTask::Hellaswag
        } else if has(&["goal", "sol1", "sol2"]) {
            HfTask::Piqa
        } else if has(&["sentence", "option1", "option2", "answer"]) {
            HfTask::Winogrande
        } else if has(&["passage", "question"]) && (has(&["label"]) || has(&["answer"])) {
            HfTask::Boolq
        } else if has(&["context", "question", "answerA", "answerB", "label"]) {
            HfTask::SocialIqa
        } else if has(&["question", "correct_answer", "distractor1"]) {
            HfTask::Sciq
        } else {
            return None;
        })
    }

    pub(crate) fn render(self, obj: &Map<String, Value>) -> Row {
        match self {
            HfTask::Arc | HfTask::CommonsenseQa => {
                let question = text(obj, "question")?;
                lettered(
                    obj,
                    format!("Question: {question}\nAnswer:"),
                    question,
                    self.norm(),
                )
            }
            HfTask::OpenbookQa => {
                let stem = text(obj, "question_stem")?;
                lettered(obj, stem.clone(), stem, self.norm())
            }
            HfTask::Hellaswag => {
                let ctx_b = text(obj, "ctx_b").unwrap_or_default();
                let query = preprocess(&format!(
                    "{}: {} {}",
                    text(obj, "activity_label")?,
                    text(obj, "ctx_a")?,
                    py_capitalize(&ctx_b)
                ));
                let endings = texts(obj.get("endings"), "endings")?;
                let choices: Vec<String> = endings.iter().map(|e| preprocess(e)).collect();
                let answer = index(obj.get("label"), "label", choices.len(), 0)?;
                Ok(cloze(query, choices, answer, id(obj, "ind"), self.norm()))
            }
            HfTask::Piqa => {
                let goal = text(obj, "goal")?;
                let choices = vec![text(obj, "sol1")?, text(obj, "sol2")?];
                let answer = index(obj.get("label"), "label", 2, 0)?;
                Ok(cloze(
                    format!("Question: {goal}\nAnswer:"),
                    choices,
                    answer,
                    None,
                    self.norm(),
                ))
            }
            HfTask::Winogrande => {
                let sentence = text(obj, "sentence")?;
                let blank = sentence
                    .find('_')
                    .ok_or("field `sentence` has no `_` blank")?;
                let options = vec![text(obj, "option1")?, text(obj, "option2")?];
                let answer = index(obj.get("answer"), "answer", 2, 1)?;
                let rest = format!(" {}", sentence[blank + 1..].trim());
                let contexts = options
                    .iter()
                    .map(|o| format!("{}{o}", &sentence[..blank]))
                    .collect();
                Ok(RenderedRow {
                    question: sentence,
                    answer,
                    id: None,
                    rendered: Rendered {
                        contexts,
                        continuations: vec![rest.clone(), rest],
                        norm: self.norm(),
                    },
                    choices: options,
                })
            }
            HfTask::Boolq => {
                let passage = text(obj, "passage")?;
                let question = text(obj, "question")?;
                // super_glue's `label` is 0 (no) / 1 (yes); google/boolq's `answer` is a bool.
                let answer = match (obj.get("label"), obj.get("answer")) {
                    (Some(l), _) if !l.is_null() => index(Some(l), "label", 2, 0)?,
                    (_, Some(Value::Bool(b))) => usize::from(*b),
                    _ => return Err("missing field `label` (or boolean `answer`)".into()),
                };
                Ok(cloze(
                    format!("{passage}\nQuestion: {question}?\nAnswer:"),
                    vec!["no".into(), "yes".into()],
                    answer,
                    id(obj, "idx"),
                    self.norm(),
                ))
            }
            HfTask::SocialIqa => {
                let query = format!(
                    "Q: {} {}\nA:",
                    text(obj, "context")?,
                    text(obj, "question")?
                );
                let choices = ["answerA", "answerB", "answerC"]
                    .iter()
                    .map(|k| text(obj, k))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let answer = index(obj.get("label"), "label", 3, 1)?;
                Ok(cloze(query, choices, answer, None, self.norm()))
            }
            HfTask::Sciq => {
                let support = text(obj, "support").unwrap_or_default();
                let question = text(obj, "question")?;
                let choices = [
                    "distractor1",
                    "distractor2",
                    "distractor3",
                    "correct_answer",
                ]
                .iter()
                .map(|k| text(obj, k))
                .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(cloze(
                    format!("{}\nQuestion: {question}\nAnswer:", support.trim_start()),
                    choices,
                    3,
                    None,
                    self.norm(),
                ))
            }
        }
        .and_then(|row| {
            if !(2..=MAX_CHOICES).contains(&row.choices.len()) {
                return Err(format!(
                    "expected 2 to {MAX_CHOICES} choices, found {}",
                    row.choices.len()
                ));
            }
            Ok(row)
        })
    }
}

/// `Question: ...` with the choices as `{"text": [...], "label": [...]}` and the gold as
/// `answerKey` (a label, `A` or `1`), as ARC, OpenBookQA and CommonsenseQA publish them.
fn lettered(obj: &Map<String, Value>, context: String, question: String, norm: ScoreNorm) -> Row {
    let choices_obj = obj
        .get("choices")
        .and_then(Value::as_object)
        .ok_or("field `choices` is not an object of `text` and `label` lists")?;
    let choices = texts(choices_obj.get("text"), "choices.text")?;
    let labels = texts(choices_obj.get("label"), "choices.label")?;
    if labels.len() != choices.len() {
        return Err(format!(
            "{} choices but {} labels",
            choices.len(),
            labels.len()
        ));
    }
    let key = text(obj, "answerKey")?;
    let answer = labels
        .iter()
        .position(|l| l.trim() == key.trim())
        .ok_or_else(|| format!("answerKey `{key}` is not one of the labels {labels:?}"))?;
    let mut row = cloze(context, choices, answer, id(obj, "id"), norm);
    row.question = question;
    Ok(row)
}

fn cloze(
    context: String,
    choices: Vec<String>,
    answer: usize,
    id: Option<String>,
    norm: ScoreNorm,
) -> RenderedRow {
    RenderedRow {
        question: context.clone(),
        answer,
        id,
        rendered: Rendered {
            contexts: vec![context],
            continuations: choices.iter().map(|c| format!(" {c}")).collect(),
            norm,
        },
        choices,
    }
}

fn texts(v: Option<&Value>, key: &str) -> std::result::Result<Vec<String>, String> {
    let arr = v
        .and_then(Value::as_array)
        .ok_or_else(|| format!("field `{key}` is not a list"))?;
    arr.iter()
        .map(|x| match x {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("an element of `{key}` is not text")),
        })
        .collect()
}

/// A 0- or 1-based index (`base`) given as a number or a digit string, checked against `n`.
fn index(
    v: Option<&Value>,
    key: &str,
    n: usize,
    base: usize,
) -> std::result::Result<usize, String> {
    let raw = match v {
        Some(Value::Number(x)) => x.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        None | Some(Value::Null) => return Err(format!("missing field `{key}`")),
        Some(_) => None,
    };
    match raw.and_then(|r| (r as usize).checked_sub(base)) {
        Some(i) if i < n => Ok(i),
        _ => Err(format!(
            "field `{key}` is not an answer among {n} choices ({}-based)",
            base
        )),
    }
}

fn id(obj: &Map<String, Value>, key: &str) -> Option<String> {
    text(obj, key).ok()
}

/// lm-eval's HellaSwag clean-up: strip, ` [title]` becomes `. `, other `[...]` tags go, and
/// double spaces become single.
fn preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// Python's `str.capitalize()`: the first character upper-cased, the rest lower-cased.
fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn arc_rows_render_as_lm_eval_and_find_their_answer_by_label() {
        let row = obj(
            r#"{"id":"Mercury_7","question":"Which is a gas?","choices":{"text":["ice","steam","rock"],"label":["1","2","3"]},"answerKey":"2"}"#,
        );
        assert_eq!(HfTask::sniff(&row), Some(HfTask::Arc));
        let r = HfTask::Arc.render(&row).unwrap();
        assert_eq!(r.answer, 1);
        assert_eq!(r.id.as_deref(), Some("Mercury_7"));
        assert_eq!(r.rendered.contexts, ["Question: Which is a gas?\nAnswer:"]);
        assert_eq!(r.rendered.continuations, [" ice", " steam", " rock"]);
    }

    #[test]
    fn hellaswag_is_cleaned_as_lm_eval_cleans_it() {
        let row = obj(
            r#"{"ind":24,"activity_label":"Roof shingle removal","ctx_a":"A man is sitting on a roof.","ctx_b":"he","ctx":"x","endings":["is using wrap [header] to wrap.","starts  pulling up roofing."],"label":"1"}"#,
        );
        assert_eq!(HfTask::sniff(&row), Some(HfTask::Hellaswag));
        let r = HfTask::Hellaswag.render(&row).unwrap();
        assert_eq!(
            r.rendered.contexts,
            ["Roof shingle removal: A man is sitting on a roof. He"]
        );
        assert_eq!(
            r.rendered.continuations,
            [" is using wrap to wrap.", " starts pulling up roofing."]
        );
        assert_eq!(r.answer, 1);
        assert_eq!(r.rendered.norm, ScoreNorm::PerChar);
        assert_eq!(py_capitalize("hE sAid"), "He said");
        assert_eq!(preprocess("A [title] B"), "A. B");
    }

    #[test]
    fn winogrande_fills_the_blank_with_each_option() {
        let row = obj(
            r#"{"sentence":"Sarah was better than Maria so _ got the easy cases.","option1":"Sarah","option2":"Maria","answer":"2"}"#,
        );
        assert_eq!(HfTask::sniff(&row), Some(HfTask::Winogrande));
        let r = HfTask::Winogrande.render(&row).unwrap();
        assert_eq!(
            r.rendered.contexts,
            [
                "Sarah was better than Maria so Sarah",
                "Sarah was better than Maria so Maria"
            ]
        );
        assert_eq!(r.rendered.continuations, [" got the easy cases."; 2]);
        assert_eq!(r.answer, 1);
    }

    #[test]
    fn the_other_layouts_are_told_apart_and_bad_answers_are_reasons() {
        let cases = [
            (
                r#"{"goal":"g","sol1":"a","sol2":"b","label":1}"#,
                HfTask::Piqa,
            ),
            (
                r#"{"id":"7","question_stem":"s","choices":{"text":["a","b"],"label":["A","B"]},"answerKey":"B"}"#,
                HfTask::OpenbookQa,
            ),
            (
                r#"{"id":"q","question":"s","question_concept":"c","choices":{"text":["a","b"],"label":["A","B"]},"answerKey":"A"}"#,
                HfTask::CommonsenseQa,
            ),
            (
                r#"{"passage":"p","question":"is it","label":1,"idx":3}"#,
                HfTask::Boolq,
            ),
            (
                r#"{"passage":"p","question":"is it","answer":true}"#,
                HfTask::Boolq,
            ),
            (
                r#"{"context":"c","question":"q","answerA":"a","answerB":"b","answerC":"c","label":"3"}"#,
                HfTask::SocialIqa,
            ),
            (
                r#"{"question":"q","distractor1":"a","distractor2":"b","distractor3":"c","correct_answer":"d","support":" s"}"#,
                HfTask::Sciq,
            ),
        ];
        for (json, task) in cases {
            let row = obj(json);
            assert_eq!(HfTask::sniff(&row), Some(task), "{json}");
            let r = task.render(&row).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert!(r.answer < r.choices.len());
        }
        let boolq = HfTask::Boolq
            .render(&obj(r#"{"passage":"p","question":"is it","answer":true}"#))
            .unwrap();
        assert_eq!(boolq.rendered.contexts, ["p\nQuestion: is it?\nAnswer:"]);
        assert_eq!(boolq.answer, 1);
        let siqa = HfTask::SocialIqa.render(&obj(cases[5].0)).unwrap();
        assert_eq!(siqa.answer, 2);
        assert_eq!(siqa.rendered.contexts, ["Q: c q\nA:"]);
        let sciq = HfTask::Sciq.render(&obj(cases[6].0)).unwrap();
        assert_eq!(sciq.rendered.contexts, ["s\nQuestion: q\nAnswer:"]);

        let bad = obj(r#"{"question":"q","choices":{"text":["a"],"label":["A"]},"answerKey":"C"}"#);
        let err = HfTask::Arc.render(&bad).err().unwrap();
        assert!(err.contains("answerKey `C`"), "{err}");
        let bad = obj(r#"{"goal":"g","sol1":"a","sol2":"b","label":2}"#);
        assert!(HfTask::Piqa.render(&bad).is_err());
        let bad = obj(r#"{"sentence":"no blank","option1":"a","option2":"b","answer":"1"}"#);
        assert!(HfTask::Winogrande
            .render(&bad)
            .err()
            .unwrap()
            .contains("blank"));
    }
}
