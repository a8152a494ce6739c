//! Where weights come from: a GGUF file or Hugging Face safetensors. Both answer requests by the
//! canonical (GGUF-style) tensor names the decoder uses, so the decoder never knows which it is.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{CoreError, Result};
use crate::gguf_header::GgufHeader;
use crate::linear::SourceTensor;

/// A checkpoint's tensors, looked up by canonical name (`blk.3.attn_q.weight`).
pub trait WeightSource {
    fn config(&self) -> &ModelConfig;
    fn has(&self, name: &str) -> bool;
    fn tensor(&mut self, name: &str) -> Result<SourceTensor>;
    /// The dominant storage format, for labels ("Q4_1", "bf16").
    fn format(&self) -> String;
    fn path(&self) -> &Path;
}

/// Tells formats apart by content, not by file name.
pub fn sniff(path: &Path) -> Result<ModelFormat> {
    if path.is_dir() {
        return if path.join("config.json").exists() {
            Ok(ModelFormat::SafetensorsDir)
        } else {
            Err(CoreError::UnknownFormat {
                path: path.to_path_buf(),
            })
        };
    }
    let mut file = File::open(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut head = [0u8; 8];
    let n = file.read(&mut head).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if n >= 4 && &head[..4] == b"GGUF" {
        return Ok(ModelFormat::Gguf);
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        return Err(CoreError::BadGguf {
            path: path.to_path_buf(),
            detail: format!("wrong magic {:02x?}, expected \"GGUF\"", &head[..n.min(4)]),
        });
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return Ok(ModelFormat::SafetensorsFile);
    }
    Err(CoreError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    SafetensorsFile,
    SafetensorsDir,
}

/// The GGUF tensor of llama3 RoPE frequency divisors.
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// Phi-3's long-context (longrope) RoPE factors as llama.cpp's converter writes them.
const PHI3_ROPE_FACTORS: [&str; 2] = ["rope_factors_long.weight", "rope_factors_short.weight"];

/// A matrix the checkpoint stores as a block of rows of a fused one: rows
/// `offset..offset + rows` of the tensor the source names `fused`.
#[derive(Debug, Clone)]
struct FusedPart {
    fused: String,
    offset: usize,
    rows: usize,
}

/// One fused matrix of a layer: its canonical name and its parts (canonical names and row
/// counts) in row order.
struct Fused {
    name: String,
    parts: Vec<(String, usize)>,
}

/// Phi-3's fused matrices of layer `layer`: `attn_qkv` (q, then k, then v rows) and the gate/up
/// matrix (gate rows, then up), named `gate_up` (GGUF's `ffn_up.weight`, effbench's
/// `ffn_gate_up.weight` for Hugging Face's `gate_up_proj`).
fn phi3_fused(config: &ModelConfig, layer: usize, gate_up: &str) -> [Fused; 2] {
    let p = format!("blk.{layer}");
    let (q, kv, ff) = (config.q_dim(), config.kv_dim(), config.intermediate_size);
    [
        Fused {
            name: format!("{p}.attn_qkv.weight"),
            parts: vec![
                (format!("{p}.attn_q.weight"), q),
                (format!("{p}.attn_k.weight"), kv),
                (format!("{p}.attn_v.weight"), kv),
            ],
        },
        Fused {
            name: format!("{p}.{gate_up}"),
            parts: vec![
                (format!("{p}.ffn_gate.weight"), ff),
                (format!("{p}.ffn_up.weight"), ff),
            ],
        },
    ]
}

/// Checks a fused tensor's shape (`dims`, as stored under `source_name`) against the config
/// before anything is sliced from it, and records its parts in `parts`.
fn add_fused_parts(
    fused: &Fused,
    source_name: &str,
    dims: &[usize],
    config: &ModelConfig,
    parts: &mut HashMap<String, FusedPart>,
) -> std::result::Result<(), String> {
    let total: usize = fused.parts.iter().map(|(_, rows)| rows).sum();
    if dims != [total, config.hidden_size] {
        let layout = fused
            .parts
            .iter()
            .map(|(name, rows)| {
                let short = name.rsplit('.').nth(1).unwrap_or(name);
                format!("{short} {rows}")
            })
            .collect::<Vec<_>>()
            .join(" + ");
        return Err(format!(
            "fused tensor `{source_name}` has shape {dims:?}; this {} config needs [{total}, {}] \
             ({layout} rows)",
            config.architecture.name(),
            config.hidden_size
        ));
    }
    let mut offset = 0;
    for (name, rows) in &fused.parts {
        parts.insert(
            name.clone(),
            FusedPart {
                fused: source_name.to_string(),
                offset,
                rows: *rows,
            },
        );
        offset += rows;
    }
    Ok(())
}

pub struct GgufSource {
    path: PathBuf,
    content: gguf_file::Content,
    reader: BufReader<File>,
    config: ModelConfig,
    device: Device,
    /// Matrices stored as rows of a fused one (Phi-3's), by canonical name.
    parts: HashMap<String, FusedPart>,
}

impl GgufSource {
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let bad = |detail: String| CoreError::BadGguf {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::open(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file_len = file
            .metadata()
            .map_err(|source| CoreError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut reader = BufReader::new(file);
        // candle sizes vectors from the header's counts, so a corrupt count would abort the
        // process inside it; the bounded walk refuses such a header first. A truncated download
        // would otherwise fail halfway through loading with a bare EOF.
        let header = GgufHeader::read(&mut reader).map_err(|e| bad(e.to_string()))?;
        header.check_tensor_data().map_err(|e| bad(e.to_string()))?;
        debug_assert_eq!(header.file_len, file_len);
        reader.rewind().map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut reader).map_err(|e| bad(one_line(&e)))?;
        let embedding_rows = content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|i| i.shape.dims().first().copied());
        let vocab = match content.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens.len(),
            _ => embedding_rows.ok_or_else(|| CoreError::MissingTensor {
                name: "token_embd.weight".into(),
                arch: "llama-family".into(),
            })?,
        };
        let mut config = ModelConfig::from_gguf_metadata(&content.metadata, vocab)?;
        config.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
        // llama.cpp's converter stores llama3 RoPE scaling as per-frequency divisors.
        if content.tensor_infos.contains_key(ROPE_FREQS) {
            let t = content
                .tensor(&mut reader, ROPE_FREQS, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor `{ROPE_FREQS}`: {}", one_line(&e))))?;
            config.rope_scaling = Some(RopeScaling::FrequencyFactors {
                factors: t.into_iter().map(f64::from).collect(),
            });
        }
        if let Some(name) = PHI3_ROPE_FACTORS
            .iter()
            .find(|n| content.tensor_infos.contains_key(**n))
        {
            return Err(CoreError::Unsupported(format!(
                "Phi-3's long-context RoPE scaling (longrope, the `{name}` tensor) is not \
                 supported yet"
            )));
        }
        if let Some(rows) = embedding_rows {
            config.vocab_size = rows.max(vocab);
        }
        config
            .check_sane()
            .map_err(|detail| CoreError::BadMetadata { detail })?;
        // llama.cpp's phi3 stores q/k/v as one `attn_qkv` (or separately) and gate/up always
        // as one `ffn_up` of 2 * n_ff rows, gate first (its swiglu takes silu of the first
        // half); they are split here so every consumer sees Llama's names.
        let mut parts = HashMap::new();
        if config.architecture == Architecture::Phi3 {
            for layer in 0..config.num_layers {
                for fused in phi3_fused(&config, layer, "ffn_up.weight") {
                    let separate = fused.parts.iter().any(|(n, _)| {
                        n != &fused.name && content.tensor_infos.contains_key(n.as_str())
                    });
                    let Some(info) = content.tensor_infos.get(&fused.name) else {
                        continue;
                    };
                    if separate {
                        continue;
                    }
                    let block = info.ggml_dtype.block_size();
                    if !config.hidden_size.is_multiple_of(block) {
                        return Err(bad(format!(
                            "fused tensor `{}` is {} with rows of {} values, not whole blocks \
                             of {block}",
                            fused.name,
                            crate::linear::ggml_type_name(info.ggml_dtype),
                            config.hidden_size
                        )));
                    }
                    add_fused_parts(&fused, &fused.name, info.shape.dims(), &config, &mut parts)
                        .map_err(bad)?;
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
            config,
            device: device.clone(),
            parts,
        })
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }
}

impl GgufSource {
    /// Rows of a fused GGML tensor, read straight from the file: rows are contiguous and whole
    /// blocks (checked at open), so a block of rows is a byte range, whatever the type.
    fn fused_part(&mut self, name: &str, part: &FusedPart) -> Result<SourceTensor> {
        let bad = |detail: String| CoreError::BadGguf {
            path: self.path.clone(),
            detail: format!("tensor `{name}` (rows of `{}`): {detail}", part.fused),
        };
        let info = &self.content.tensor_infos[&part.fused];
        let cols = self.config.hidden_size;
        let dtype = info.ggml_dtype;
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let start =
            self.content.tensor_data_offset + info.offset + (part.offset * row_bytes) as u64;
        let mut bytes = vec![0u8; part.rows * row_bytes];
        self.reader
            .seek(std::io::SeekFrom::Start(start))
            .and_then(|_| self.reader.read_exact(&mut bytes))
            .map_err(|e| bad(e.to_string()))?;
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
            dtype,
            &bytes,
            vec![part.rows, cols],
            &self.device,
        )
        .map_err(|e| bad(one_line(&e)))?;
        Ok(SourceTensor::Ggml(Arc::new(q)))
    }
}

impl WeightSource for GgufSource {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        self.parts.contains_key(name) || self.content.tensor_infos.contains_key(name)
    }

    fn tensor(&mut self, name: &str) -> Result<SourceTensor> {
        if let Some(part) = self.parts.get(name) {
            return self.fused_part(name, &part.clone());
        }
        if !self.has(name) {
            return Err(CoreError::MissingTensor {
                name: name.to_string(),
                arch: self.config.architecture.name().into(),
            });
        }
        self.reader.rewind().map_err(|source| CoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        let q = self
            .content
            .tensor(&mut self.reader, name, &self.device)
            .map_err(|e| CoreError::BadGguf {
                path: self.path.clone(),
                detail: format!("tensor `{name}`: {}", one_line(&e)),
            })?;
        Ok(SourceTensor::Ggml(Arc::new(q)))
    }

    fn format(&self) -> String {
        // llama.cpp records the recipe ("Q4_K_M" mixes several block types); name the file by
        // it when present, else by the type of its bulk, the FFN matrices.
        if let Some(name) = self
            .content
            .metadata
            .get("general.file_type")
            .and_then(crate::config::value_as_u64)
            .and_then(file_type_name)
        {
            return name.to_string();
        }
        self.content
            .tensor_infos
            .get("blk.0.ffn_up.weight")
            .or_else(|| self.content.tensor_infos.get("blk.0.attn_q.weight"))
            .map(|i| crate::linear::ggml_type_name(i.ggml_dtype).to_string())
            .unwrap_or_else(|| "GGUF".into())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

pub struct SafetensorsSource {
    path: PathBuf,
    tensors: MmapedSafetensors,
    names: HashMap<String, String>,
    /// Matrices stored as rows of a fused one (Phi-3's), by canonical name; `fused` is the
    /// Hugging Face name.
    parts: HashMap<String, FusedPart>,
    config: ModelConfig,
    device: Device,
    dtype: DType,
}

impl SafetensorsSource {
    /// `path` is a model directory, or one `.safetensors` file with `config.json` beside it.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let config_path = dir.join("config.json");
        let config = ModelConfig::from_hf_config_json(&config_path)?;
        let files = if path.is_dir() {
            shard_files(&dir)?
        } else {
            vec![path.to_path_buf()]
        };
        for f in &files {
            check_safetensors_header(f)?;
        }
        // SAFETY: the files are opened read-only; like every mmap user we rely on nobody
        // truncating them while the model is loaded.
        let tensors =
            unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| CoreError::BadSafetensors {
                path: files[0].clone(),
                detail: one_line(&e),
            })?;
        let mut names = HashMap::new();
        let mut dtype = DType::F32;
        for (hf_name, view) in tensors.tensors() {
            if let Some(canonical) = canonical_name(config.architecture, &hf_name) {
                if canonical == "blk.0.ffn_up.weight" || canonical == "blk.0.ffn_gate_up.weight" {
                    dtype = match view.dtype() {
                        safetensors::Dtype::F16 => DType::F16,
                        safetensors::Dtype::BF16 => DType::BF16,
                        _ => DType::F32,
                    };
                }
                names.insert(canonical, hf_name);
            }
        }
        let mut config = config;
        if !names.contains_key("output.weight") {
            config.tie_word_embeddings = true;
        }
        // Phi-3's `qkv_proj` (q, k, v rows) and `gate_up_proj` (gate, up rows), split here so
        // every consumer sees Llama's names.
        let mut parts = HashMap::new();
        if config.architecture == Architecture::Phi3 {
            for layer in 0..config.num_layers {
                for fused in phi3_fused(&config, layer, "ffn_gate_up.weight") {
                    let Some(hf) = names.get(&fused.name) else {
                        continue;
                    };
                    let dims = tensors
                        .get(hf)
                        .map_err(|e| CoreError::BadSafetensors {
                            path: path.to_path_buf(),
                            detail: one_line(&e),
                        })?
                        .shape()
                        .to_vec();
                    add_fused_parts(&fused, hf, &dims, &config, &mut parts).map_err(|detail| {
                        CoreError::BadSafetensors {
                            path: path.to_path_buf(),
                            detail,
                        }
                    })?;
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            names,
            parts,
            config,
            device: device.clone(),
            dtype,
        })
    }
}

impl WeightSource for SafetensorsSource {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        self.parts.contains_key(name) || self.names.contains_key(name)
    }

    fn tensor(&mut self, name: &str) -> Result<SourceTensor> {
        let part = self.parts.get(name);
        let hf_name = match part {
            Some(p) => &p.fused,
            None => self
                .names
                .get(name)
                .ok_or_else(|| CoreError::MissingTensor {
                    name: name.to_string(),
                    arch: self.config.architecture.name().into(),
                })?,
        };
        let view = self
            .tensors
            .get(hf_name)
            .map_err(|e| CoreError::BadSafetensors {
                path: self.path.clone(),
                detail: one_line(&e),
            })?;
        match view.dtype() {
            safetensors::Dtype::F16 | safetensors::Dtype::BF16 | safetensors::Dtype::F32 => {}
            other => {
                return Err(CoreError::UnsupportedTensorType {
                    name: hf_name.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        }
        let t =
            self.tensors
                .load(hf_name, &self.device)
                .map_err(|e| CoreError::BadSafetensors {
                    path: self.path.clone(),
                    detail: one_line(&e),
                })?;
        // Rows of a fused matrix, whose shape was checked against the config at open.
        let t = match part {
            Some(p) => t.narrow(0, p.offset, p.rows)?.contiguous()?,
            None => t,
        };
        let offset = hf_offset(self.config.architecture, name);
        if offset != 0.0 {
            // In f32: a bf16 norm weight near 0 would lose bits once it sits near 1.
            return Ok(SourceTensor::Dense((t.to_dtype(DType::F32)? + offset)?));
        }
        Ok(SourceTensor::Dense(t))
    }

    fn format(&self) -> String {
        crate::linear::dtype_name(self.dtype).to_string()
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| CoreError::Io {
            path: index.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CoreError::BadConfig {
                path: index.clone(),
                detail: e.to_string(),
            })?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| CoreError::BadConfig {
                path: index.clone(),
                detail: "no `weight_map` object".into(),
            })?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| CoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CoreError::UnknownFormat {
            path: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// The safetensors crate checks offsets against the buffer, but a header that claims more bytes
/// than the file holds deserves a message that says exactly that.
fn check_safetensors_header(path: &Path) -> Result<()> {
    let bad = |detail: String| CoreError::BadSafetensors {
        path: path.to_path_buf(),
        detail,
    };
    let file = File::open(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    check_safetensors_reader(file, file_len).map_err(bad)
}

/// [`SafetensorsSource`]'s header check on a whole file's bytes, without the file: for fuzzing
/// and for callers that hold the bytes already. Errors name the path `<memory>`.
pub fn check_safetensors_bytes(bytes: &[u8]) -> Result<()> {
    check_safetensors_reader(bytes, bytes.len() as u64).map_err(|detail| {
        CoreError::BadSafetensors {
            path: PathBuf::from("<memory>"),
            detail,
        }
    })
}

/// Safetensors' own limit on the JSON header.
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

fn check_safetensors_reader(mut r: impl Read, file_len: u64) -> Result<(), String> {
    let mut len_bytes = [0u8; 8];
    r.read_exact(&mut len_bytes)
        .map_err(|_| format!("file is {file_len} bytes, too short for a header"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) || header_len > MAX_SAFETENSORS_HEADER {
        return Err(format!(
            "header claims {header_len} bytes but the file has {file_len}"
        ));
    }
    // Bounded by the file length just above.
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("header is not JSON: {e}"))?;
    let data_len = file_len - 8 - header_len;
    let obj = json
        .as_object()
        .ok_or_else(|| "header is not a JSON object".to_string())?;
    for (name, entry) in obj {
        if name == "__metadata__" {
            continue;
        }
        check_safetensors_entry(name, entry, data_len)?;
    }
    Ok(())
}

/// One tensor's entry: a known dtype, a shape whose byte size (overflow-checked) is exactly its
/// data range, and a range inside the data.
fn check_safetensors_entry(
    name: &str,
    entry: &serde_json::Value,
    data_len: u64,
) -> Result<(), String> {
    let offsets = entry
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
        .ok_or_else(|| format!("tensor `{name}` has no data_offsets [begin, end]"))?;
    let (begin, end) = offsets;
    if begin > end {
        return Err(format!(
            "tensor `{name}` has data_offsets [{begin}, {end}], which end before they begin"
        ));
    }
    if end > data_len {
        return Err(format!(
            "tensor `{name}` ends at data byte {end} but only {data_len} data bytes exist (truncated?)"
        ));
    }
    let dtype = entry
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| format!("tensor `{name}` has no dtype"))?;
    let bits = safetensors_dtype_bits(dtype)
        .ok_or_else(|| format!("tensor `{name}` has unknown dtype `{dtype}`"))?;
    let shape = entry
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| format!("tensor `{name}` has no shape"))?;
    let mut elems: u64 = 1;
    for d in shape {
        let d = d
            .as_u64()
            .ok_or_else(|| format!("tensor `{name}` has a shape entry {d} that is not a size"))?;
        elems = elems
            .checked_mul(d)
            .ok_or_else(|| format!("tensor `{name}`'s shape {shape:?} overflows"))?;
    }
    let bits = elems
        .checked_mul(bits)
        .ok_or_else(|| format!("tensor `{name}`'s shape {shape:?} overflows"))?;
    if !bits.is_multiple_of(8) {
        return Err(format!(
            "tensor `{name}` is {dtype} of shape {shape:?}, which is not a whole number of bytes"
        ));
    }
    let bytes = bits / 8;
    if bytes != end - begin {
        return Err(format!(
            "tensor `{name}` is {dtype} of shape {shape:?} ({bytes} bytes) but its data_offsets span {} bytes",
            end - begin
        ));
    }
    Ok(())
}

/// Bits per element of a dtype the safetensors format names, by the safetensors crate's own
/// list, so a new dtype there is known here too.
fn safetensors_dtype_bits(dtype: &str) -> Option<u64> {
    serde_json::from_value::<safetensors::Dtype>(serde_json::Value::String(dtype.to_string()))
        .ok()
        .map(|d| d.bitsize() as u64)
}

/// The per-layer tensors whose Hugging Face names differ by architecture, as (HF suffix after
/// `model.layers.N.`, GGUF suffix after `blk.N.`). Gemma's `post_attention_layernorm` is a norm
/// on the attention output, where Llama's is the pre-MLP norm.
fn layer_names(arch: Architecture) -> &'static [(&'static str, &'static str)] {
    const LLAMA: &[(&str, &str)] = &[
        ("input_layernorm.weight", "attn_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.q_proj.bias", "attn_q.bias"),
        ("self_attn.k_proj.bias", "attn_k.bias"),
        ("self_attn.v_proj.bias", "attn_v.bias"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];
    const GEMMA3: &[(&str, &str)] = &[
        ("input_layernorm.weight", "attn_norm.weight"),
        (
            "post_attention_layernorm.weight",
            "post_attention_norm.weight",
        ),
        ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
        ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
        ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("self_attn.k_norm.weight", "attn_k_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];
    const QWEN3: &[(&str, &str)] = &[
        ("input_layernorm.weight", "attn_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("self_attn.k_norm.weight", "attn_k_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.q_proj.bias", "attn_q.bias"),
        ("self_attn.k_proj.bias", "attn_k.bias"),
        ("self_attn.v_proj.bias", "attn_v.bias"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];
    // Phi-3's fused matrices; the sources split them into Llama's (`phi3_fused`).
    const PHI3: &[(&str, &str)] = &[
        ("input_layernorm.weight", "attn_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("self_attn.qkv_proj.weight", "attn_qkv.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("mlp.gate_up_proj.weight", "ffn_gate_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];
    match arch {
        Architecture::Llama | Architecture::Qwen2 => LLAMA,
        Architecture::Phi3 => PHI3,
        Architecture::Qwen3 => QWEN3,
        Architecture::Gemma3 => GEMMA3,
    }
}

/// Maps a Hugging Face parameter name of an `arch` checkpoint to GGUF's, which the decoder uses.
pub fn canonical_name(arch: Architecture, hf: &str) -> Option<String> {
    let hf = hf.strip_prefix("model.").unwrap_or(hf);
    match hf {
        "embed_tokens.weight" => return Some("token_embd.weight".into()),
        "norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("layers.")?;
    let (idx, rest) = rest.split_once('.')?;
    let idx: usize = idx.parse().ok()?;
    let (_, suffix) = layer_names(arch).iter().find(|(h, _)| *h == rest)?;
    Some(format!("blk.{idx}.{suffix}"))
}

/// Inverse of [`canonical_name`], for writing Hugging Face checkpoints.
pub fn hf_name(arch: Architecture, canonical: &str) -> Option<String> {
    match canonical {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = canonical.strip_prefix("blk.")?;
    let (idx, rest) = rest.split_once('.')?;
    idx.parse::<usize>().ok()?;
    let (hf, _) = layer_names(arch).iter().find(|(_, c)| *c == rest)?;
    Some(format!("model.layers.{idx}.{hf}"))
}

/// What reading a Hugging Face tensor adds to its values to get the weight the decoder applies
/// (and writing one subtracts). Gemma's RMSNorm computes x * (1 + w), and llama.cpp's converter
/// adds the 1 to every `*norm.weight` when it writes the GGUF; the decoder applies GGUF weights
/// as x * w, so a Gemma checkpoint's norms need the same 1 added.
pub fn hf_offset(arch: Architecture, canonical: &str) -> f64 {
    match arch {
        Architecture::Gemma3 if canonical.ends_with("norm.weight") => 1.0,
        _ => 0.0,
    }
}

/// Tensors by canonical name as a Hugging Face checkpoint of `arch` holds them: Hugging Face
/// names, and [`hf_offset`] taken off again, so [`SafetensorsSource`] reads back the same
/// weights. A name the architecture has no Hugging Face name for is an error.
/// Phi-3's q/k/v and gate/up matrices are fused again (q, k, v rows; gate, up rows), so a
/// Phi-3 checkpoint holds `qkv_proj` and `gate_up_proj` as Hugging Face's does.
pub fn to_hf_tensors(
    arch: Architecture,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
) -> Result<HashMap<String, Tensor>> {
    let mut tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    if arch == Architecture::Phi3 {
        let layers: Vec<String> = tensors
            .keys()
            .filter(|k| k.ends_with(".attn_q.weight") || k.ends_with(".ffn_gate.weight"))
            .filter_map(|k| {
                k.rsplit_once('.')?
                    .0
                    .rsplit_once('.')
                    .map(|(p, _)| p.to_string())
            })
            .collect();
        for p in layers {
            for (fused, parts) in [
                ("attn_qkv.weight", &["attn_q", "attn_k", "attn_v"][..]),
                ("ffn_gate_up.weight", &["ffn_gate", "ffn_up"][..]),
            ] {
                let names: Vec<String> = parts.iter().map(|s| format!("{p}.{s}.weight")).collect();
                if !names.iter().any(|n| tensors.contains_key(n)) {
                    continue;
                }
                let pieces = names
                    .iter()
                    .map(|n| {
                        tensors.remove(n).ok_or_else(|| {
                            CoreError::Invalid(format!(
                                "tensor `{n}` is missing; a phi3 checkpoint stores it fused in \
                                 `{p}.{fused}`"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                tensors.insert(format!("{p}.{fused}"), Tensor::cat(&pieces, 0)?);
            }
        }
    }
    tensors
        .into_iter()
        .map(|(canonical, t)| {
            let name = hf_name(arch, &canonical).ok_or_else(|| {
                CoreError::Invalid(format!(
                    "tensor `{canonical}` has no Hugging Face name in a {} checkpoint",
                    arch.name()
                ))
            })?;
            let offset = hf_offset(arch, &canonical);
            let t = if offset != 0.0 { (t - offset)? } else { t };
            Ok((name, t))
        })
        .collect()
}

/// llama.cpp's `llama_ftype` numbering, as written to `general.file_type`.
fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// candle errors can carry backtraces and nested context over several lines; users get one.
pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Tensors already in memory, by canonical name: for models built in code (tests, a freshly
/// distilled student) rather than read from a file.
pub struct TensorMapSource {
    config: ModelConfig,
    tensors: HashMap<String, SourceTensor>,
    path: PathBuf,
}

impl TensorMapSource {
    pub fn new(config: ModelConfig, tensors: HashMap<String, SourceTensor>) -> Self {
        Self {
            config,
            tensors,
            path: PathBuf::from("<memory>"),
        }
    }
}

impl WeightSource for TensorMapSource {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn tensor(&mut self, name: &str) -> Result<SourceTensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::MissingTensor {
                name: name.to_string(),
                arch: self.config.architecture.name().into(),
            })
    }

    fn format(&self) -> String {
        self.tensors
            .get("blk.0.ffn_up.weight")
            .map_or_else(|| "f32".into(), |t| t.format())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let llama = Architecture::Llama;
        for hf in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            "model.layers.11.self_attn.k_proj.bias",
            "model.layers.0.mlp.down_proj.weight",
        ] {
            let c = canonical_name(llama, hf).unwrap();
            assert_eq!(hf_name(llama, &c).unwrap(), hf);
        }
        assert_eq!(
            canonical_name(llama, "model.layers.x.mlp.up_proj.weight"),
            None
        );
        assert_eq!(canonical_name(llama, "model.rotary_emb.inv_freq"), None);
        assert_eq!(
            canonical_name(llama, "model.layers.2.post_attention_layernorm.weight").unwrap(),
            "blk.2.ffn_norm.weight"
        );
    }

    #[test]
    fn gemma_names_and_norm_offsets_differ_from_llama() {
        let gemma = Architecture::Gemma3;
        for (hf, canonical) in [
            (
                "model.layers.2.post_attention_layernorm.weight",
                "blk.2.post_attention_norm.weight",
            ),
            (
                "model.layers.2.pre_feedforward_layernorm.weight",
                "blk.2.ffn_norm.weight",
            ),
            (
                "model.layers.2.post_feedforward_layernorm.weight",
                "blk.2.post_ffw_norm.weight",
            ),
            (
                "model.layers.0.self_attn.q_norm.weight",
                "blk.0.attn_q_norm.weight",
            ),
            (
                "model.layers.0.self_attn.k_norm.weight",
                "blk.0.attn_k_norm.weight",
            ),
            (
                "model.layers.1.input_layernorm.weight",
                "blk.1.attn_norm.weight",
            ),
            ("model.norm.weight", "output_norm.weight"),
        ] {
            assert_eq!(canonical_name(gemma, hf).unwrap(), canonical);
            assert_eq!(hf_name(gemma, canonical).unwrap(), hf);
            assert_eq!(hf_offset(gemma, canonical), 1.0, "{canonical}");
            assert_eq!(hf_offset(Architecture::Llama, canonical), 0.0);
        }
        assert_eq!(hf_offset(gemma, "blk.0.attn_q.weight"), 0.0);
        // Gemma has no q/k/v biases; Llama has no q/k norms.
        assert_eq!(
            canonical_name(gemma, "model.layers.0.self_attn.q_proj.bias"),
            None
        );
        assert_eq!(
            hf_name(Architecture::Llama, "blk.0.attn_q_norm.weight"),
            None
        );
        let w = Tensor::new(&[1.5f32, 0.75], &Device::Cpu).unwrap();
        let hf = to_hf_tensors(gemma, [("blk.0.ffn_norm.weight".to_string(), w)]).unwrap();
        let back = &hf["model.layers.0.pre_feedforward_layernorm.weight"];
        assert_eq!(back.to_vec1::<f32>().unwrap(), [0.5, -0.25]);
        let err = to_hf_tensors(
            Architecture::Llama,
            [("blk.0.post_ffw_norm.weight".to_string(), back.clone())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("no Hugging Face name"), "{err}");
    }

    /// A safetensors file image with one tensor entry (raw JSON) and `data` bytes of data.
    fn safetensors(entry: &str, data: usize) -> Vec<u8> {
        let header = format!("{{\"t\":{entry}}}");
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn safetensors_entries_must_match_their_byte_ranges() {
        let ok = r#"{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}"#;
        check_safetensors_bytes(&safetensors(ok, 12)).unwrap();
        let f4 = r#"{"dtype":"F4","shape":[3,2],"data_offsets":[0,3]}"#;
        check_safetensors_bytes(&safetensors(f4, 3)).unwrap();
        for (entry, needle) in [
            (
                r#"{"dtype":"F16","shape":[2,3],"data_offsets":[12,0]}"#,
                "end before they begin",
            ),
            (
                r#"{"dtype":"F16","shape":[2,3],"data_offsets":[0,10]}"#,
                "(12 bytes) but its data_offsets span 10 bytes",
            ),
            (
                r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,12]}"#,
                "overflows",
            ),
            (
                r#"{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,12]}"#,
                "overflows",
            ),
            (
                r#"{"dtype":"F4","shape":[3],"data_offsets":[0,2]}"#,
                "not a whole number of bytes",
            ),
            (
                r#"{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}"#,
                "unknown dtype `Q4`",
            ),
            (
                r#"{"dtype":"F16","shape":[-1],"data_offsets":[0,2]}"#,
                "not a size",
            ),
            (
                r#"{"dtype":"F16","shape":[1],"data_offsets":[0]}"#,
                "data_offsets",
            ),
            (
                r#"{"dtype":"F16","shape":[64],"data_offsets":[0,128]}"#,
                "truncated",
            ),
        ] {
            let err = check_safetensors_bytes(&safetensors(entry, 12))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{entry}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = check_safetensors_bytes(&(u64::MAX).to_le_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("header claims"), "{err}");
    }
}
