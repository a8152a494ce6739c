//! What to quantize to and how: the bits, group size and symmetry of a format, the method, and
//! the technique names `effbench run` accepts (`int4`, `int2-gptq-g32-sym`, ...).

use std::fmt;

use candle_core::quantized::GgmlDType;
use effbench_kernels::PackedFormat;

use crate::error::{QuantError, Result};

/// A group-wise integer format: `bits` per weight, one f16 scale (and f16 offset when
/// asymmetric) per `group` consecutive weights of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantSpec {
    pub bits: u32,
    pub group: usize,
    pub sym: bool,
}

impl QuantSpec {
    /// Group sizes offered per bit width (the grid; others are refused, not guessed).
    pub fn allowed_groups(bits: u32) -> &'static [usize] {
        match bits {
            4 => &[32, 64, 128],
            2 => &[16, 32, 64],
            _ => &[],
        }
    }

    pub fn new(bits: u32, group: usize, sym: bool) -> Result<Self> {
        if bits != 4 && bits != 2 {
            return Err(QuantError::Invalid(format!(
                "{bits}-bit weights are not supported (hint: 4 or 2 bits)"
            )));
        }
        let allowed = Self::allowed_groups(bits);
        if !allowed.contains(&group) {
            return Err(QuantError::Invalid(format!(
                "group size {group} is not offered for int{bits} (hint: one of {allowed:?})"
            )));
        }
        Ok(Self { bits, group, sym })
    }

    /// Largest quant value, `2^bits - 1`.
    pub fn qmax(self) -> u32 {
        (1 << self.bits) - 1
    }

    /// The GGML type that stores this format bit for bit, if there is one: int4 g32 symmetric
    /// is Q4_0 (`d * (q - 8)`), int4 g32 asymmetric is Q4_1 (`d * q + m`).
    pub fn ggml_type(self) -> Option<GgmlDType> {
        match (self.bits, self.group, self.sym) {
            (4, 32, true) => Some(GgmlDType::Q4_0),
            (4, 32, false) => Some(GgmlDType::Q4_1),
            _ => None,
        }
    }

    pub fn packed_format(self) -> PackedFormat {
        PackedFormat::new(self.bits, self.group, !self.sym).expect("QuantSpec::new validated it")
    }

    /// Bits per weight including scales, for a row length that the group divides.
    pub fn nominal_bits_per_weight(self) -> f64 {
        let per_group = if self.sym { 16.0 } else { 32.0 };
        self.bits as f64 + per_group / self.group as f64
    }
}

impl fmt::Display for QuantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "int{}-g{}-{}",
            self.bits,
            self.group,
            if self.sym { "sym" } else { "asym" }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Round to nearest, group by group.
    Rtn,
    /// GPTQ (Frantar et al. 2022): column by column with Hessian-based error feedback.
    Gptq,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rtn" => Ok(Self::Rtn),
            "gptq" => Ok(Self::Gptq),
            other => Err(QuantError::Invalid(format!(
                "unknown quantization method `{other}` (hint: rtn or gptq)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rtn => "rtn",
            Self::Gptq => "gptq",
        }
    }
}

/// A complete recipe: method, format, and whether the output head stays f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Recipe {
    pub method: Method,
    pub spec: QuantSpec,
    /// Keep the output head in f16 as well as the embeddings (which always stay f16: a lookup
    /// table costs memory but no compute, and only GGML types could hold it quantized).
    pub f16_head: bool,
}

/// Default group per width: int4 g128 (the usual GPTQ setting, and not the grid of a Q4_1
/// source, which g32 asymmetric would reproduce almost exactly) and int2 g32.
pub fn default_group(bits: u32) -> usize {
    if bits == 4 {
        128
    } else {
        32
    }
}

/// The grammar, for `--help` and error messages.
pub const GRAMMAR: effbench_core::technique::TechniqueGrammar =
    effbench_core::technique::TechniqueGrammar {
        kind: effbench_core::technique::TechniqueKind::Weights,
        syntax: "int4|int2[-gptq][-gG][-sym|-asym][-f16head]",
        help: TECHNIQUE_HELP,
    };

pub const TECHNIQUE_HELP: &str = "int4 | int2, then optionally -gptq (default: round to nearest), \
-g<group> (int4: 32/64/128, default 128; int2: 16/32/64, default 32), -sym or -asym (default \
asym), -f16head (keep the output head in f16); e.g. int4, int2-gptq, int4-g32-sym (= GGML \
Q4_0), int2-gptq-g16-f16head";

impl Recipe {
    /// Parses a technique name; `Ok(None)` when it is not a quantization technique at all.
    pub fn parse_technique(name: &str) -> Result<Option<Self>> {
        let mut parts = name.split('-');
        let bits = match parts.next() {
            Some("int4") => 4,
            Some("int2") => 2,
            _ => return Ok(None),
        };
        let bad = |part: &str| {
            QuantError::Invalid(format!(
                "technique `{name}`: unknown part `{part}` (grammar: {TECHNIQUE_HELP})"
            ))
        };
        let (mut method, mut group, mut sym, mut f16_head) =
            (Method::Rtn, default_group(bits), false, false);
        for part in parts {
            match part {
                "gptq" => method = Method::Gptq,
                "rtn" => method = Method::Rtn,
                "sym" => sym = true,
                "asym" => sym = false,
                "f16head" => f16_head = true,
                g if g.starts_with('g') => {
                    group = g[1..].parse().map_err(|_| bad(part))?;
                }
                other => return Err(bad(other)),
            }
        }
        let spec = QuantSpec::new(bits, group, sym)
            .map_err(|e| QuantError::Invalid(format!("technique `{name}`: {e}")))?;
        Ok(Some(Self {
            method,
            spec,
            f16_head,
        }))
    }

    /// The canonical technique name, every choice spelled out: cache keys and labels.
    pub fn canonical(&self) -> String {
        format!(
            "{}-{}{}",
            self.spec,
            self.method.name(),
            if self.f16_head { "-f16head" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_names_parse_with_defaults() {
        let r = Recipe::parse_technique("int4").unwrap().unwrap();
        assert_eq!(r.spec, QuantSpec::new(4, 128, false).unwrap());
        assert_eq!(r.method, Method::Rtn);
        let r = Recipe::parse_technique("int2-gptq-g16-sym-f16head")
            .unwrap()
            .unwrap();
        assert_eq!(r.canonical(), "int2-g16-sym-gptq-f16head");
        assert_eq!(
            Recipe::parse_technique("int4-g32-sym")
                .unwrap()
                .unwrap()
                .spec
                .ggml_type(),
            Some(GgmlDType::Q4_0)
        );
        assert!(Recipe::parse_technique("f16").unwrap().is_none());
    }

    #[test]
    fn bad_names_are_one_line_errors() {
        for bad in ["int4-g48", "int2-g128", "int4-awq", "int4-gx"] {
            let e = Recipe::parse_technique(bad).unwrap_err().to_string();
            assert!(!e.contains('\n') && e.contains(bad), "{e}");
        }
        assert!(QuantSpec::new(3, 32, true).is_err());
    }

    #[test]
    fn nominal_bits_per_weight() {
        assert_eq!(
            QuantSpec::new(4, 32, false)
                .unwrap()
                .nominal_bits_per_weight(),
            5.0
        );
        assert_eq!(
            QuantSpec::new(2, 32, false)
                .unwrap()
                .nominal_bits_per_weight(),
            3.0
        );
        assert_eq!(
            QuantSpec::new(4, 32, true)
                .unwrap()
                .nominal_bits_per_weight(),
            4.5
        );
    }
}
