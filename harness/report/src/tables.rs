//! The tables people publish: one row per technique with the baseline first, each closed by a
//! "Data takeaway" sentence generated from the numbers. A takeaway names the best trade-off and
//! every statistically significant loss, and says "not significant" rather than "no change":
//! it never claims what the data do not show.

use serde::{Deserialize, Serialize};
use tabled::{builder::Builder, settings::Style};

use crate::cost::{cost, Cost, Price};
use crate::schema::{Energy, Quality, RunReport, Speed, TechniqueReport};

/// A run with prices applied: what `report --json` prints and the tables are drawn from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportView {
    pub run_id: String,
    pub suite: String,
    pub model: String,
    pub hardware: String,
    pub price: Price,
    pub rows: Vec<Row>,
    pub technique_takeaway: String,
    pub cost_takeaway: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub technique: String,
    pub label: String,
    pub is_baseline: bool,
    /// Accuracy % or perplexity.
    pub quality: f64,
    pub quality_impact: String,
    /// A statistically significant change for the worse.
    pub significant_loss: bool,
    pub weight_bytes: usize,
    pub bits_per_weight: Option<f64>,
    /// Baseline weight bytes / this technique's.
    pub memory_reduction: Option<f64>,
    pub prefill_tok_per_s: Option<f64>,
    pub decode_tok_per_s: Option<f64>,
    pub cost: Option<Cost>,
    /// 1 - this request cost / the baseline's.
    pub cost_reduction: Option<f64>,
    /// This technique's $/1M output tokens over the baseline's.
    pub output_cost_ratio: Option<f64>,
    pub energy: String,
    /// Output tokens per second serving the run's request trace, when the run served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_tok_per_s: Option<f64>,
    /// The serving figures in words: throughput, TTFT and TPOT p50/p99, peak concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<String>,
    /// $/1M output tokens at the served throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_usd_per_million_output: Option<f64>,
    /// A cascade's routing in words: which model answered how many items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
}

/// The first 12 characters of a hash or commit, as git abbreviates. Characters, not bytes: the
/// string comes from a file and need not be hex.
pub fn short_hash(hash: &str) -> &str {
    hash.char_indices()
        .nth(12)
        .map_or(hash, |(end, _)| &hash[..end])
}

pub fn hardware_summary(hw: &effbench_hw::HardwareInfo, device: &str, threads: usize) -> String {
    match (&hw.gpus, device.starts_with("cuda")) {
        (effbench_hw::GpuReport::Nvidia { devices, .. }, true) if !devices.is_empty() => {
            format!("{} ({})", devices[0].name, device)
        }
        _ => format!("{}, {threads} threads", hw.cpu.brand),
    }
}

fn quality_impact(q: &Quality) -> (String, bool) {
    match q {
        Quality::Accuracy { vs_baseline, .. } => match vs_baseline {
            None => ("baseline".into(), false),
            Some(d) => (d.verdict.clone(), d.significant && d.delta < 0.0),
        },
        Quality::Perplexity { vs_baseline, .. } => match vs_baseline {
            None => ("baseline".into(), false),
            Some(d) => {
                let pct = 100.0 * (d.ratio - 1.0);
                let se = 100.0 * d.ratio * d.ln_ratio_stderr;
                let sig = if d.significant() { "" } else { ", n.s." };
                (
                    format!(
                        "{pct:+.2}% ppl (±{se:.2}%{sig}), KL {:.4}, top-1 {:.1}%",
                        d.kl_mean,
                        100.0 * d.top1_agreement
                    ),
                    d.significant() && d.ratio > 1.0,
                )
            }
        },
    }
}

fn energy_text(e: &Energy) -> String {
    match e {
        Energy::Measured {
            joules_per_output_token,
            source,
        } => format!("{joules_per_output_token:.3} J/token ({source})"),
        Energy::NotMeasured { reason } => format!("not measured: {reason}"),
    }
}

fn row(t: &TechniqueReport, base: &TechniqueReport, is_baseline: bool, price: &Price) -> Row {
    let (quality_impact, significant_loss) = quality_impact(&t.quality);
    // Every row is priced on the baseline's request shape: a decoding technique is timed on
    // real prompts of other lengths, and a request must be the same request to compare.
    let c = t.speed.as_ref().map(|s| match &base.speed {
        Some(b) => cost(
            &Speed {
                prompt_tokens: b.prompt_tokens,
                generated_tokens: b.generated_tokens,
                ..s.clone()
            },
            price,
        ),
        None => cost(s, price),
    });
    let base_cost = base.speed.as_ref().map(|s| cost(s, price));
    // A cascade runs no speed test of its own: it costs its measured share of the baseline's
    // machine time on the suite's items.
    let routed = t.routing.as_ref().and_then(|r| r.cost_ratio_vs_baseline);
    let c = match (routed, base_cost) {
        (Some(ratio), Some(b)) => Some(Cost {
            usd_per_million_input: b.usd_per_million_input * ratio,
            usd_per_million_output: b.usd_per_million_output * ratio,
            usd_per_request: b.usd_per_request * ratio,
        }),
        _ => c,
    };
    let (cost_reduction, output_cost_ratio) = match (c, base_cost) {
        (Some(c), Some(b)) => (
            Some(1.0 - c.usd_per_request / b.usd_per_request),
            Some(c.usd_per_million_output / b.usd_per_million_output),
        ),
        _ => (None, None),
    };
    let memory_reduction = (t.memory.weight_bytes > 0 && base.memory.weight_bytes > 0)
        .then(|| base.memory.weight_bytes as f64 / t.memory.weight_bytes as f64);
    Row {
        technique: t.technique.clone(),
        label: t.label.clone(),
        is_baseline,
        quality: t.quality.headline(),
        quality_impact,
        significant_loss,
        weight_bytes: t.memory.weight_bytes,
        bits_per_weight: t.memory.bits_per_weight,
        memory_reduction,
        prefill_tok_per_s: t.speed.as_ref().map(|s| s.prefill_tok_per_s),
        decode_tok_per_s: t.speed.as_ref().map(|s| s.decode_tok_per_s),
        cost: c,
        cost_reduction,
        output_cost_ratio,
        energy: energy_text(&t.energy),
        served_tok_per_s: t.serving.as_ref().map(|s| s.output_tok_per_s),
        served: t.serving.as_ref().map(served_text),
        served_usd_per_million_output: t
            .serving
            .as_ref()
            .filter(|s| s.output_tok_per_s > 0.0)
            .map(|s| crate::cost::usd_per_token(s.output_tok_per_s, price) * 1e6),
        routing: t.routing.as_ref().map(routing_text),
    }
}

fn routing_text(r: &crate::schema::RoutingReport) -> String {
    format!(
        "cascade: {} alone on {:.0}% of items ({} >= {:.2}), {} on the rest",
        r.cheap,
        100.0 * r.cheap_served as f64 / r.items.max(1) as f64,
        r.signal,
        r.threshold,
        r.base
    )
}

fn served_text(s: &crate::schema::ServingReport) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut text = format!(
        "{:.1} tok/s, TTFT p50/p99 {}/{} ms, TPOT p50/p99 {}/{} ms, peak {} seqs",
        s.output_tok_per_s,
        ms(s.ttft_ms_p50),
        ms(s.ttft_ms_p99),
        ms(s.tpot_ms_p50),
        ms(s.tpot_ms_p99),
        s.peak_running
    );
    if s.refused > 0 {
        text.push_str(&format!(", {} refused", s.refused));
    }
    text
}

/// Applies a price to a run. The baseline row comes first whatever order the run used.
pub fn view(report: &RunReport, price: &Price) -> ReportView {
    let base = report
        .baseline()
        .or(report.techniques.first())
        .expect("a run has at least one technique");
    let mut rows = vec![row(base, base, true, price)];
    for t in &report.techniques {
        if t.technique != base.technique {
            rows.push(row(t, base, false, price));
        }
    }
    let hardware = hardware_summary(
        &report.provenance.hardware,
        &report.provenance.device,
        report.provenance.threads,
    );
    let technique_takeaway = technique_takeaway(report, &rows);
    let cost_takeaway = cost_takeaway(&rows, price);
    ReportView {
        run_id: report.run_id.clone(),
        suite: report.suite.name.clone(),
        model: report.model.name.clone(),
        hardware,
        price: price.clone(),
        rows,
        technique_takeaway,
        cost_takeaway,
    }
}

fn name(r: &Row) -> String {
    format!("{} ({})", r.technique, r.label)
}

fn technique_takeaway(report: &RunReport, rows: &[Row]) -> String {
    let base = &rows[0];
    let others = &rows[1..];
    if others.is_empty() {
        return format!(
            "Data takeaway: only the baseline, {}, was measured, so there is nothing to compare.",
            name(base)
        );
    }
    let losses: Vec<String> = others
        .iter()
        .filter(|r| r.significant_loss)
        .map(|r| format!("{} ({})", r.technique, r.quality_impact))
        .collect();
    let loss_clause = if losses.is_empty() {
        let resolution = match &report.techniques.iter().find_map(|t| match &t.quality {
            Quality::Accuracy {
                vs_baseline: Some(d),
                ..
            } => Some(d.resolution.clone()),
            _ => None,
        }) {
            Some(r) => format!(" ({r})"),
            None => String::new(),
        };
        format!(
            "no technique's quality change against {} is statistically significant at 5%{resolution}",
            base.technique
        )
    } else {
        format!(
            "statistically significant quality losses: {}",
            losses.join("; ")
        )
    };
    let best = others
        .iter()
        .filter(|r| !r.significant_loss)
        .filter_map(|r| r.cost_reduction.map(|c| (r, c)))
        .filter(|(_, c)| *c > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let trade = match best {
        Some((r, c)) => format!(
            "the best trade-off is {}, {:.0}% cheaper per request than {} with no significant quality loss",
            name(r),
            100.0 * c,
            base.technique
        ),
        None if others.iter().all(|r| r.cost_reduction.is_none()) => {
            "speed was not measured, so no cost trade-off can be named".to_string()
        }
        None => format!(
            "no technique is cheaper per request than {} without a significant quality loss",
            base.technique
        ),
    };
    format!("Data takeaway: {trade}; {loss_clause}.")
}

fn cost_takeaway(rows: &[Row], price: &Price) -> String {
    let base = &rows[0];
    let cheapest = rows
        .iter()
        .filter_map(|r| r.cost.map(|c| (r, c)))
        .min_by(|a, b| {
            a.1.usd_per_million_output
                .total_cmp(&b.1.usd_per_million_output)
        });
    match (cheapest, base.cost) {
        (Some((r, c)), Some(b)) if !r.is_baseline => format!(
            "Data takeaway: at {} (${:.4}/h), {} gives the cheapest output tokens, ${:.2} per 1M, {:.2}x the baseline's ${:.2}.",
            price.basis,
            price.usd_per_hour,
            name(r),
            c.usd_per_million_output,
            c.usd_per_million_output / b.usd_per_million_output,
            b.usd_per_million_output
        ),
        (Some((r, c)), _) => format!(
            "Data takeaway: at {} (${:.4}/h), the baseline {} stays the cheapest per output token, ${:.2} per 1M.",
            price.basis,
            price.usd_per_hour,
            r.technique,
            c.usd_per_million_output
        ),
        (None, _) => "Data takeaway: speed was not measured in this run, so it has no cost figures.".to_string(),
    }
}

pub(crate) fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn dollars(x: f64) -> String {
    if x >= 100.0 {
        format!("${x:.0}")
    } else if x >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

/// `effbench hw`'s tables: the machine, field by field (with `extra` rows after), and each
/// calibrated roofline with the decode ceiling it implies.
pub fn hardware_markdown(
    info: &effbench_hw::HardwareInfo,
    extra: Vec<(String, String)>,
    roofline: &[effbench_hw::roofline::Roofline],
) -> String {
    let rows = info
        .rows()
        .into_iter()
        .chain(extra)
        .map(|(k, v)| vec![k, v]);
    let mut out = markdown_table(&["field", "value"], rows.collect());
    let Some(first) = roofline.first() else {
        return out;
    };
    let rows = roofline.iter().map(|r| {
        vec![
            r.threads.to_string(),
            format!("{:.1}", r.triad_gb_per_s),
            format!("{:.1}", r.read_gb_per_s),
            format!("{:.1}", r.gemm_f32_gflop_per_s),
        ]
    });
    out.push_str("\n\n");
    out.push_str(&markdown_table(
        &["threads", "triad GB/s", "read GB/s", "f32 GEMM GFLOP/s"],
        rows.collect(),
    ));
    out.push_str(&format!(
        "\n\nDecode ceiling: a model that reads 1 GB per token decodes at most {:.0} tok/s at {} thread(s) (triad bandwidth / bytes per token).",
        first.decode_tok_per_s(1e9),
        first.threads
    ));
    out
}

/// A markdown table of `rows` under `header`, as every table effbench prints is laid out.
pub fn markdown_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut b = Builder::default();
    b.push_record(header.iter().map(|s| s.to_string()));
    for r in rows {
        b.push_record(r);
    }
    b.build().with(Style::markdown()).to_string()
}

/// The technique table in the shape of the seed article, with its takeaway.
pub fn technique_table(v: &ReportView) -> String {
    let served = v.rows.iter().any(|r| r.served.is_some());
    let rows = v
        .rows
        .iter()
        .map(|r| {
            let cost = match (r.is_baseline, r.cost_reduction) {
                (true, _) => "baseline".to_string(),
                (false, Some(c)) if c >= 0.0 => format!("{:.0}%", 100.0 * c),
                (false, Some(c)) => format!("{:.0}% dearer", -100.0 * c),
                (false, None) => "not measured".to_string(),
            };
            let memory = match (r.memory_reduction, r.bits_per_weight) {
                _ if r.weight_bytes == 0 => "not recorded".to_string(),
                (Some(m), Some(b)) if !r.is_baseline => {
                    format!("{} ({m:.2}x less), {b:.2} bpw", mib(r.weight_bytes))
                }
                (_, Some(b)) => format!("{}, {b:.2} bpw", mib(r.weight_bytes)),
                (_, None) => mib(r.weight_bytes),
            };
            let latency = match (r.decode_tok_per_s, r.prefill_tok_per_s, &r.routing) {
                (Some(tg), Some(pp), _) => {
                    format!("{:.1} ms/token decode, {pp:.0} tok/s prefill", 1000.0 / tg)
                }
                (_, _, Some(routing)) => routing.clone(),
                _ => "not measured".to_string(),
            };
            let mut row = vec![
                format!("{}: {}", r.technique, r.label),
                cost,
                r.quality_impact.clone(),
                memory,
                latency,
            ];
            if served {
                row.push(r.served.clone().unwrap_or_else(|| "not served".into()));
            }
            row
        })
        .collect();
    let mut header = vec![
        "Technique",
        "Cost reduction",
        "Quality impact",
        "Memory",
        "Latency",
    ];
    if served {
        header.push("Served throughput");
    }
    format!(
        "{}\n\n{}\n",
        markdown_table(&header, rows),
        v.technique_takeaway
    )
}

/// Provider-style prices per million tokens, with its takeaway.
pub fn cost_table(v: &ReportView) -> String {
    let served = v.rows.iter().any(|r| r.served.is_some());
    let rows = v
        .rows
        .iter()
        .map(|r| {
            let (input, output) = match r.cost {
                Some(c) => (
                    dollars(c.usd_per_million_input),
                    dollars(c.usd_per_million_output),
                ),
                None => ("not measured".into(), "not measured".into()),
            };
            let ratio = match (r.is_baseline, r.output_cost_ratio) {
                (true, _) => "1.00x (baseline)".to_string(),
                (false, Some(x)) => format!("{x:.2}x"),
                (false, None) => "-".to_string(),
            };
            let mut row = vec![format!("{} / {}", v.model, r.label), input, output, ratio];
            if served {
                row.push(r.served_usd_per_million_output.map_or("-".into(), dollars));
            }
            row.push(r.energy.clone());
            row
        })
        .collect();
    let mut header = vec![
        "Model / variant",
        "$/1M input tokens",
        "$/1M output tokens",
        "Output cost ratio to baseline",
    ];
    if served {
        header.push("$/1M output tokens, served");
    }
    header.push("Energy");
    format!("{}\n\n{}\n", markdown_table(&header, rows), v.cost_takeaway)
}

/// The whole report as markdown: heading, provenance line, both tables and their notes.
pub fn markdown(report: &RunReport, v: &ReportView) -> String {
    let mut md = String::new();
    md.push_str(&format!("## {} on {}: {}\n\n", v.suite, v.model, v.run_id));
    md.push_str(&format!(
        "{} ({}-shot, {} {}, manifest {}) on {}; effbench {} ({}), started {}{}.\n\n",
        v.suite,
        report.suite.shots,
        report.suite.size,
        match report.suite.kind {
            crate::schema::SuiteKind::MultipleChoice => "items",
            crate::schema::SuiteKind::Generation => "problems",
            crate::schema::SuiteKind::Perplexity => "scored tokens",
        },
        short_hash(&report.suite.manifest_hash),
        v.hardware,
        report.provenance.effbench_version,
        match report.provenance.git_dirty {
            Some(true) => format!(
                "{}, built from a dirty tree",
                short_hash(&report.provenance.git_commit)
            ),
            _ => short_hash(&report.provenance.git_commit).to_string(),
        },
        report.provenance.started,
        report
            .provenance
            .finished
            .as_ref()
            .map_or(String::new(), |f| format!(", finished {f}"))
    ));
    if let Some(n) = report.provenance.flags.get("shards") {
        md.push_str(&format!(
            "Merged from {n} shards ({}).\n\n",
            report
                .provenance
                .flags
                .get("shard_hardware")
                .map_or("hardware not recorded", String::as_str)
        ));
    }
    let machines: std::collections::BTreeSet<&str> = report
        .techniques
        .iter()
        .filter_map(|t| t.params.get("measured_on"))
        .map(|m| m.split(" (shard").next().unwrap_or(m))
        .collect();
    if machines.len() > 1 {
        md.push_str(&format!(
            "Speeds were measured on different machines ({}): each technique's latency and cost are its own node's, so differences between techniques here mix machine and technique.\n\n",
            machines.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    md.push_str("### Techniques\n\n");
    md.push_str(&technique_table(v));
    md.push_str(
        "\nCost reduction: machine time per request of the measured shape (prompt in, tokens out) against the baseline, from the measured prefill and decode speeds. Quality impact: paired comparison with the baseline on the same items or tokens; n.s. = not significant at 5%. Memory: weights in memory; bpw over the blocks' linear layers, scales included.\n",
    );
    if let Some(s) = report.techniques.iter().find_map(|t| t.serving.as_ref()) {
        md.push_str(&format!(
            "\nServed throughput: each row served the same request trace ({}) under continuous batching in a {} KV budget, with its own weights and KV cache; output tokens per second from the first arrival to the last token.\n",
            s.trace,
            mib(s.kv_budget_bytes)
        ));
    }
    let stacks = stack_savings(v);
    if !stacks.is_empty() {
        md.push_str("\nStacked techniques, measured against the product of their parts' savings (cost per request, baseline = 1.00x):\n\n");
        for line in stacks {
            md.push_str(&format!("- {line}\n"));
        }
    }
    md.push_str(&serving_table(report));
    md.push_str(&decoding_table(report));
    md.push_str(&decoding_kinds_table(report));
    md.push_str("\n### Cost per million tokens\n\n");
    md.push_str(&cost_table(v));
    md.push_str(&format!(
        "\nPrice: ${:.4}/h ({}; {}). Input tokens are priced at the measured prefill speed, output tokens at the measured decode speed, one stream at a time.\n",
        v.price.usd_per_hour, v.price.basis, v.price.source
    ));
    if let Some(cmd) =
        (!report.provenance.command.is_empty()).then(|| report.provenance.command.join(" "))
    {
        md.push_str(&format!("\nCommand: `{cmd}`\n"));
    }
    md
}

/// The decoding techniques against plain decoding with the same weights on the same prompts;
/// empty when the run has none.
pub fn decoding_table(report: &RunReport) -> String {
    let rows: Vec<Vec<String>> = report
        .techniques
        .iter()
        .filter_map(|t| {
            let d = t.decoding.as_ref()?;
            Some(vec![
                t.technique.clone(),
                d.draft.clone(),
                d.k.clone(),
                d.acceptance_rate.map_or("-".into(), |a| format!("{a:.2}")),
                d.accepted_per_step
                    .map_or("-".into(), |a| format!("{a:.2}")),
                format!("{:.1}", d.plain_tok_per_s),
                format!("{:.1}", d.spec_tok_per_s),
                format!("{:.2}x", d.speedup),
                if d.mismatched.is_empty() {
                    format!("{}/{}", d.identical, d.compared)
                } else {
                    format!(
                        "{}/{} (differs: {})",
                        d.identical,
                        d.compared,
                        d.mismatched.join(", ")
                    )
                },
                d.quality_from
                    .clone()
                    .unwrap_or_else(|| "scored in this row".into()),
            ])
        })
        .collect();
    let Some(first) = report.techniques.iter().find_map(|t| t.decoding.as_ref()) else {
        return String::new();
    };
    let checks: String = report
        .techniques
        .iter()
        .filter_map(|t| {
            let c = t.decoding.as_ref()?.suite_check.as_ref()?;
            let differs = if c.mismatched.is_empty() {
                String::new()
            } else {
                format!(" (differs: {})", c.mismatched.join(", "))
            };
            Some(format!(
                "- `{}` on {}'s first {} problems: speculative output identical to plain decoding on {}/{}{differs}; plain single-stream output equal to the scored answer on {}/{}; {:.1} against {:.1} tok/s plain ({:.2}x), acceptance {}.\n",
                t.technique,
                c.suite,
                c.compared,
                c.identical,
                c.compared,
                c.same_as_scored,
                c.compared,
                c.spec_tok_per_s,
                c.plain_tok_per_s,
                c.spec_tok_per_s / c.plain_tok_per_s.max(1e-9),
                c.acceptance_rate.map_or("-".into(), |a| format!("{a:.2}"))
            ))
        })
        .collect();
    let checks = if checks.is_empty() {
        checks
    } else {
        format!("\nA decoding row answers a generative suite as its base row did; these problems were generated again, one stream each, as long as the scored answer:\n\n{checks}")
    };
    format!(
        "\n### Decoding\n\n{}\nEach decoding technique generated {} new tokens {} on real prompts ({}), and the same weights and KV cache decoded the same prompts plainly, before and after it. Its row's decode speed above is the speculative figure; acceptance is the share of drafted tokens the model kept. Greedy speculative decoding must give exactly the plain output: \"same output\" counts the prompts where it did.\n{checks}",
        markdown_table(
            &[
                "Technique",
                "Draft",
                "k",
                "Acceptance",
                "Accepted/step",
                "Plain tok/s",
                "Speculative tok/s",
                "Speedup",
                "Same output",
                "Quality from",
            ],
            rows
        ),
        first.max_tokens,
        first
            .sampling
            .as_ref()
            .map_or("greedily".to_string(), |s| format!("sampling ({s})")),
        first.prompts
    )
}

/// The serving rows' KV figures: what each cache wasted of the budget and how many sequences
/// it held, beside throughput and latency percentiles, and whether its outputs equal the first
/// serving row's; empty when the run did not serve, or its report predates these figures.
pub fn serving_table(report: &RunReport) -> String {
    let served: Vec<(&TechniqueReport, &crate::schema::ServingReport)> = report
        .techniques
        .iter()
        .filter_map(|t| Some((t, t.serving.as_ref()?)))
        .filter(|(_, s)| s.waste_pct.is_some())
        .collect();
    let Some((_, first)) = served.first() else {
        return String::new();
    };
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let ms = |a: Option<f64>, b: Option<f64>, c: Option<f64>| match (a, b, c) {
        (Some(a), Some(b), Some(c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
        _ => "-".into(),
    };
    let rows = served
        .iter()
        .map(|(t, s)| {
            vec![
                t.technique.clone(),
                s.cache.clone(),
                pct(s.waste_pct),
                pct(s.internal_fragmentation_pct),
                pct(s.budget_used_pct),
                s.peak_running.to_string(),
                format!("{:.1}", s.mean_running),
                s.preemptions.to_string(),
                format!("{:.1}", s.output_tok_per_s),
                ms(s.ttft_ms_p50, s.ttft_ms_p95, s.ttft_ms_p99),
                ms(s.tpot_ms_p50, s.tpot_ms_p95, s.tpot_ms_p99),
                format!("{}/{}", s.completed, s.requests),
                same_outputs(&first.output_hashes, &s.output_hashes),
            ]
        })
        .collect();
    let mut md = format!(
        "\n### Serving\n\n{}\n\nEvery row served the same trace ({}) in a {} KV budget{}. Waste: reserved KV bytes not holding K/V, averaged over the run weighted by step time. Internal fragmentation: the share of a finished sequence's reservation it never filled. Same output: requests whose tokens equal the first row's, of those both completed; weights whose kernels quantize activations can flip a near-tie between caches, dense weights must not.\n",
        markdown_table(
            &[
                "Technique",
                "KV cache",
                "Waste %",
                "Internal frag. %",
                "Budget holding K/V %",
                "Peak seqs",
                "Mean seqs",
                "Preemptions",
                "Output tok/s",
                "TTFT p50/p95/p99 ms",
                "TPOT p50/p95/p99 ms",
                "Completed",
                "Same output",
            ],
            rows
        ),
        first.trace,
        mib(first.kv_budget_bytes),
        first
            .scheduler
            .as_ref()
            .map_or(String::new(), |s| format!(", scheduler {s}"))
    );
    for (t, s) in &served {
        for r in &s.refusals {
            md.push_str(&format!("\n- {} refused request {r}", t.technique));
        }
    }
    if served.iter().any(|(_, s)| !s.refusals.is_empty()) {
        md.push('\n');
    }
    md
}

/// Requests whose output hashes agree, of those both rows completed.
fn same_outputs(first: &[String], these: &[String]) -> String {
    if first.is_empty() || first.len() != these.len() {
        return "-".into();
    }
    let both: Vec<(&String, &String)> = first
        .iter()
        .zip(these)
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect();
    format!(
        "{}/{}",
        both.iter().filter(|(a, b)| a == b).count(),
        both.len()
    )
}

/// The decoding techniques per prompt type, with the cost figures that explain their speedup
/// and Leviathan et al.'s expectation beside it, then the cost of verifying k drafts in one
/// pass; empty for reports that predate these figures.
pub fn decoding_kinds_table(report: &RunReport) -> String {
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let times = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
    let mut rows = Vec::new();
    for t in &report.techniques {
        let Some(d) = &t.decoding else { continue };
        for k in &d.per_kind {
            rows.push(vec![
                t.technique.clone(),
                k.kind.clone(),
                k.prompts.to_string(),
                opt(k.acceptance_rate, 2),
                opt(k.tokens_per_step, 2),
                opt(k.cost_ratio, 3),
                opt(k.verify_ratio, 2),
                format!("{:.1}", k.plain_tok_per_s),
                format!("{:.1}", k.spec_tok_per_s),
                format!("{:.2}x", k.speedup),
                times(k.theoretical_speedup),
                times(k.theory_with_measured_verify),
                format!("{}/{}", k.identical, k.prompts),
            ]);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let sampling = report
        .techniques
        .iter()
        .find_map(|t| t.decoding.as_ref()?.sampling.clone());
    let mut md = format!(
        "\n#### By prompt type\n\n{}\n\nc: drafting time per drafted token over plain decoding time per token. Verify: one verification pass over one plain decoding step. Theory: Leviathan et al.'s expected speedup (1 - a^(k+1)) / ((1 - a)(k c + 1)) at the measured acceptance a and c; with measured verify, the verification pass costs what was measured instead of one step.{}\n",
        markdown_table(
            &[
                "Technique",
                "Prompts",
                "n",
                "Acceptance",
                "Tokens/step",
                "c (draft/target)",
                "Verify/target",
                "Plain tok/s",
                "Speculative tok/s",
                "Speedup",
                "Theory",
                "Theory (measured verify)",
                "Same output",
            ],
            rows
        ),
        sampling.map_or(String::new(), |s| format!(
            " Tokens were sampled ({s}), so outputs may differ from plain decoding's by design."
        ))
    );
    // The curve belongs to the weights, so one per distinct model label.
    let mut seen = std::collections::BTreeSet::new();
    for t in &report.techniques {
        let Some(d) = &t.decoding else { continue };
        if d.verify_cost_ms.is_empty() || !seen.insert(t.label.clone()) {
            continue;
        }
        let one = d.verify_cost_ms[0].1;
        let rows = d
            .verify_cost_ms
            .iter()
            .map(|(m, ms)| {
                vec![
                    m.to_string(),
                    format!("{ms:.1}"),
                    format!("{:.2}", ms / one.max(1e-12)),
                ]
            })
            .collect();
        md.push_str(&format!(
            "\nCost of one forward pass of the model ({}) by tokens scored (verifying k drafts scores k + 1):\n\n{}\n",
            t.label,
            markdown_table(&["Tokens per pass", "ms (median of 5)", "x one token"], rows)
        ));
    }
    md
}

/// For each stacked row (`a+b+c`) whose parts were measured on their own in the run, its
/// measured cost per request next to the product of the parts' savings: `a` against the
/// baseline, and each further part `q` as a row `x+q` against the row `x`.
pub fn stack_savings(v: &ReportView) -> Vec<String> {
    let cost = |name: &str| -> Option<f64> {
        v.rows
            .iter()
            .find(|r| r.technique == name)?
            .cost
            .map(|c| c.usd_per_request)
    };
    let Some(base) = v.rows.iter().find(|r| r.is_baseline).and_then(|r| r.cost) else {
        return Vec::new();
    };
    let base = base.usd_per_request;
    let mut lines = Vec::new();
    for r in &v.rows {
        let parts: Vec<&str> = r.technique.split('+').collect();
        if parts.len() < 2 || r.is_baseline {
            continue;
        }
        let (Some(measured), Some(first)) = (cost(&r.technique), cost(parts[0])) else {
            continue;
        };
        let mut product = first / base;
        let mut explained = vec![format!("{} {:.2}x", parts[0], first / base)];
        let mut complete = true;
        for q in &parts[1..] {
            let alone = v.rows.iter().find_map(|x| {
                let without = x.technique.strip_suffix(&format!("+{q}"))?;
                (x.technique != r.technique)
                    .then(|| {
                        Some((
                            x.technique.clone(),
                            without.to_string(),
                            cost(&x.technique)? / cost(without)?,
                        ))
                    })
                    .flatten()
            });
            match alone {
                Some((with, without, ratio)) => {
                    product *= ratio;
                    explained.push(format!("{q} {ratio:.2}x, from {with} over {without}"));
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            lines.push(format!(
                "`{}`: measured {:.2}x; its parts multiply to {product:.2}x ({})",
                r.technique,
                measured / base,
                explained.join("; ")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(technique: &str, usd_per_request: f64) -> Row {
        Row {
            technique: technique.into(),
            label: String::new(),
            is_baseline: technique == "f16",
            quality: 0.0,
            quality_impact: String::new(),
            significant_loss: false,
            weight_bytes: 1,
            bits_per_weight: None,
            memory_reduction: None,
            prefill_tok_per_s: None,
            decode_tok_per_s: None,
            cost: Some(Cost {
                usd_per_million_input: 0.0,
                usd_per_million_output: 0.0,
                usd_per_request,
            }),
            cost_reduction: None,
            output_cost_ratio: None,
            energy: String::new(),
            served_tok_per_s: None,
            served: None,
            served_usd_per_million_output: None,
            routing: None,
        }
    }

    fn view(rows: Vec<Row>) -> ReportView {
        ReportView {
            run_id: String::new(),
            suite: String::new(),
            model: String::new(),
            hardware: String::new(),
            price: Price::per_hour(1.0),
            rows,
            technique_takeaway: String::new(),
            cost_takeaway: String::new(),
        }
    }

    #[test]
    fn a_stack_is_set_beside_the_product_of_its_measured_parts() {
        let v = view(vec![
            row("f16", 10.0),
            row("as-stored", 5.0),
            row("int4", 4.0),
            row("as-stored+spec:ngram", 4.0),
            row("as-stored+kv:paged", 5.0),
            row("int4+spec:ngram+kv:paged", 3.0),
        ]);
        let lines = stack_savings(&v);
        assert_eq!(lines.len(), 1, "{lines:?}");
        // int4 0.40x, spec:ngram 4/5 = 0.80x, kv:paged 5/5 = 1.00x: 0.32x; measured 0.30x.
        assert_eq!(
            lines[0],
            "`int4+spec:ngram+kv:paged`: measured 0.30x; its parts multiply to 0.32x (int4 0.40x; spec:ngram 0.80x, from as-stored+spec:ngram over as-stored; kv:paged 1.00x, from as-stored+kv:paged over as-stored)"
        );
    }

    #[test]
    fn a_stack_whose_parts_were_not_measured_alone_gets_no_line() {
        let v = view(vec![
            row("f16", 10.0),
            row("as-stored", 5.0),
            row("as-stored+spec:ngram", 4.0),
            row("int4+spec:ngram+kv:paged", 3.0),
        ]);
        assert!(stack_savings(&v).is_empty());
    }
}
