//! The cost model: an hourly price and measured throughput give dollars per million tokens.
//! Prefill and decode are priced separately, as providers price input and output tokens,
//! because a machine processes them at very different rates.

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};
use crate::schema::Speed;

const DEFAULT_PRICES: &str = include_str!("../prices.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriceTable {
    pub instance: Vec<InstancePrice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstancePrice {
    pub name: String,
    #[serde(default)]
    pub gpu_names: Vec<String>,
    pub cpu_vendor: Option<String>,
    pub usd_per_hour: Option<f64>,
    pub usd_per_vcpu_hour: Option<f64>,
    pub source: String,
}

/// The price a report used, and why: printed under every cost table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Price {
    pub usd_per_hour: f64,
    /// e.g. "aws-c7a x 2 vCPU", "--price-per-hour".
    pub basis: String,
    pub source: String,
}

impl PriceTable {
    pub fn shipped() -> Self {
        Self::parse(DEFAULT_PRICES).expect("the shipped price table parses")
    }

    pub fn parse(text: &str) -> Result<Self> {
        let table: Self = toml::from_str(text).map_err(|e| ReportError::Prices(e.to_string()))?;
        for i in &table.instance {
            match (i.usd_per_hour, i.usd_per_vcpu_hour) {
                (Some(p), None) | (None, Some(p)) if p > 0.0 && p.is_finite() => {}
                _ => {
                    return Err(ReportError::Prices(format!(
                    "instance `{}` needs exactly one positive usd_per_hour or usd_per_vcpu_hour",
                    i.name
                )))
                }
            }
        }
        Ok(table)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn get(&self, name: &str) -> Result<&InstancePrice> {
        self.instance
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.instance.iter().map(|i| i.name.as_str()).collect();
                ReportError::Prices(format!(
                    "unknown instance `{name}` (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// The entry for the hardware a run used: the GPU by name when one ran it, else the CPU
    /// vendor's entry priced per thread used.
    pub fn for_hardware(
        &self,
        hw: &effbench_hw::HardwareInfo,
        device: &str,
        threads: usize,
    ) -> Result<Price> {
        if device.starts_with("cuda") {
            if let effbench_hw::GpuReport::Nvidia { devices, .. } = &hw.gpus {
                let index: u32 = device
                    .strip_prefix("cuda:")
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                if let Some(gpu) = devices.iter().find(|d| d.index == index) {
                    if let Some(entry) = self
                        .instance
                        .iter()
                        .find(|i| i.gpu_names.iter().any(|n| gpu.name.contains(n.as_str())))
                    {
                        return self.price(entry, threads);
                    }
                    return Err(ReportError::Prices(format!(
                        "no price for GPU `{}` in the price table",
                        gpu.name
                    )));
                }
            }
        }
        let vendor = if hw.cpu.arch.starts_with("aarch64") || hw.cpu.arch.starts_with("arm") {
            "ARM"
        } else {
            hw.cpu.vendor.as_str()
        };
        let entry = self
            .instance
            .iter()
            .find(|i| i.cpu_vendor.as_deref() == Some(vendor))
            .ok_or_else(|| {
                ReportError::Prices(format!(
                    "no price for CPU vendor `{vendor}` in the price table"
                ))
            })?;
        self.price(entry, threads)
    }

    pub fn price(&self, entry: &InstancePrice, threads: usize) -> Result<Price> {
        Ok(match (entry.usd_per_hour, entry.usd_per_vcpu_hour) {
            (Some(h), _) => Price {
                usd_per_hour: h,
                basis: entry.name.clone(),
                source: entry.source.clone(),
            },
            (None, Some(v)) => {
                let vcpus = threads.max(1);
                Price {
                    usd_per_hour: v * vcpus as f64,
                    basis: format!("{} x {vcpus} vCPU", entry.name),
                    source: entry.source.clone(),
                }
            }
            (None, None) => {
                return Err(ReportError::Prices(format!(
                    "instance `{}` has no price",
                    entry.name
                )))
            }
        })
    }
}

impl Price {
    pub fn per_hour(usd_per_hour: f64) -> Self {
        Self {
            usd_per_hour,
            basis: "price per hour given".into(),
            source: "given on the command line".into(),
        }
    }
}

/// What a technique costs at a price, from its measured throughput.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    pub usd_per_million_input: f64,
    pub usd_per_million_output: f64,
    /// A request of the measured shape (prompt tokens in, generated tokens out), in dollars.
    pub usd_per_request: f64,
}

/// Dollars per token at a throughput: one machine-hour costs `usd_per_hour` whatever it
/// processes, so $/token = price per second / tokens per second.
pub fn usd_per_token(tok_per_s: f64, price: &Price) -> f64 {
    price.usd_per_hour / 3600.0 / tok_per_s
}

/// Seconds of machine time per token, priced (see [`usd_per_token`]).
pub fn cost(speed: &Speed, price: &Price) -> Cost {
    let input = usd_per_token(speed.prefill_tok_per_s, price);
    let output = usd_per_token(speed.decode_tok_per_s, price);
    Cost {
        usd_per_million_input: input * 1e6,
        usd_per_million_output: output * 1e6,
        usd_per_request: input * speed.prompt_tokens as f64
            + output * speed.generated_tokens as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speed(pp: f64, tg: f64) -> Speed {
        Speed {
            prefill_tok_per_s: pp,
            decode_tok_per_s: tg,
            prompt_tokens: 512,
            generated_tokens: 128,
            prefill_samples: vec![pp],
            decode_samples: vec![tg],
        }
    }

    #[test]
    fn cost_matches_hand_arithmetic() {
        // $3.60/h is $0.001/s. At 1000 tok/s prefill a token costs $1e-6: $1 per 1M input.
        // At 50 tok/s decode a token costs $2e-5: $20 per 1M output.
        // A 512-in/128-out request: 512e-6 + 128 * 2e-5 = 0.000512 + 0.00256 = $0.003072.
        let c = cost(&speed(1000.0, 50.0), &Price::per_hour(3.6));
        assert!((c.usd_per_million_input - 1.0).abs() < 1e-9);
        assert!((c.usd_per_million_output - 20.0).abs() < 1e-9);
        assert!((c.usd_per_request - 0.003072).abs() < 1e-12);
    }

    #[test]
    fn h100_at_seed_price() {
        // The seed's example: $2.50/h and 100 output tok/s gives $6.94 per 1M output tokens.
        let table = PriceTable::shipped();
        let p = table.price(table.get("h100-80gb").unwrap(), 1).unwrap();
        let c = cost(&speed(10_000.0, 100.0), &p);
        assert!((c.usd_per_million_output - 2.5 / 3600.0 / 100.0 * 1e6).abs() < 1e-9);
        assert!((c.usd_per_million_output - 6.944444).abs() < 1e-5);
    }

    #[test]
    fn per_vcpu_prices_scale_with_threads() {
        let table = PriceTable::shipped();
        let p = table.price(table.get("aws-c7a").unwrap(), 2).unwrap();
        assert!((p.usd_per_hour - 0.10264).abs() < 1e-9);
        assert_eq!(p.basis, "aws-c7a x 2 vCPU");
    }

    #[test]
    fn a_price_table_without_a_price_is_refused() {
        let err = PriceTable::parse("[[instance]]\nname = \"x\"\nsource = \"s\"\n").unwrap_err();
        assert!(err.to_string().contains("needs exactly one"), "{err}");
        assert!(PriceTable::parse("not toml [").is_err());
    }
}
