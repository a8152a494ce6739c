#![no_main]
//! Hugging Face rows of the standard tasks (ARC, HellaSwag, PIQA, WinoGrande, ...): the first
//! byte picks the task's layout, the rest is the file.

use effbench_datasets::{HfTask, Layout};
use libfuzzer_sys::fuzz_target;

mod checks;

const TASKS: [HfTask; 9] = [
    HfTask::Arc,
    HfTask::Hellaswag,
    HfTask::Piqa,
    HfTask::Winogrande,
    HfTask::OpenbookQa,
    HfTask::Boolq,
    HfTask::CommonsenseQa,
    HfTask::SocialIqa,
    HfTask::Sciq,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let task = TASKS[pick as usize % TASKS.len()];
    checks::load_both_ways("task.jsonl", file, Layout::HfTask(task));
});
