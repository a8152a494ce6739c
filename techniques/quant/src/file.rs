//! Quantize once, load many times.
//!
//! A quantized model is written as a GGUF file holding the source's metadata (tokenizer
//! included), every tensor that a GGML type can hold (norms as stored, embeddings in F16, and
//! the quantized matrices when they are Q4_0/Q4_1), and the key `effbench.quant.recipe`.
//! Matrices in effbench's own packed formats, which no GGUF reader knows, go to a sidecar
//! `<file>.packed.safetensors` beside it: one U8 tensor of packed bytes per matrix, with the
//! format and shape in the safetensors metadata. When there is no sidecar the GGUF is complete
//! and llama.cpp loads it too (`general.file_type` then says Q4_0 or Q4_1).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use effbench_core::gguf_header::GgufHeader;
use effbench_core::linear::{AsStored, SourceTensor};
use effbench_core::source::{GgufSource, WeightSource};
use effbench_core::{
    Architecture, LinearWeight, LoadedModel, ModelConfig, WeightPolicy, WeightRole,
};
use effbench_kernels::PackedFormat;

use crate::error::{QuantError, Result};
use crate::linear::PackedLinear;
use crate::rtn::{QuantizedMatrix, Stored};
use crate::spec::Recipe;

pub const RECIPE_KEY: &str = "effbench.quant.recipe";
/// The source checkpoint's storage format, for labels ("from f16 dequantized from Q4_1").
pub const SOURCE_FORMAT_KEY: &str = "effbench.quant.source_format";
const SIDECAR_SUFFIX: &str = ".packed.safetensors";

/// Phi-3's fused matrices as (fused GGUF suffix, its parts in row order), as llama.cpp's phi3
/// reads them: `attn_qkv` (q, k, v rows) and `ffn_up` of 2 * n_ff rows (gate, then up).
const PHI3_FUSED: [(&str, &[&str]); 2] = [
    ("attn_qkv", &["attn_q", "attn_k", "attn_v"]),
    ("ffn_up", &["ffn_gate", "ffn_up"]),
];

/// Fuses Phi-3's quantized q/k/v and gate/up matrices back into llama.cpp's layout, where all
/// parts of one are GGML tensors of one type: rows are whole blocks, so the fused tensor is the
/// parts' bytes in row order. Parts of mixed types (or in the sidecar) stay separate, which
/// effbench reads too. Returns the fused names written.
fn fuse_phi3(tensors: &mut Vec<(String, QTensor)>, layers: usize) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for i in 0..layers {
        for (fused, parts) in PHI3_FUSED {
            let names: Vec<String> = parts
                .iter()
                .map(|p| format!("blk.{i}.{p}.weight"))
                .collect();
            let Some(found) = names
                .iter()
                .map(|n| tensors.iter().position(|(t, _)| t == n))
                .collect::<Option<Vec<usize>>>()
            else {
                continue;
            };
            let dtype = tensors[found[0]].1.dtype();
            let cols = tensors[found[0]].1.shape().dims()[1];
            if found
                .iter()
                .any(|&j| tensors[j].1.dtype() != dtype || tensors[j].1.shape().dims()[1] != cols)
            {
                continue;
            }
            let (mut bytes, mut rows) = (Vec::new(), 0);
            for &j in &found {
                bytes.extend_from_slice(&tensors[j].1.data()?);
                rows += tensors[j].1.shape().dims()[0];
            }
            tensors.retain(|(n, _)| !names.contains(n));
            // Borrowed: candle's `from_data` reads an owned Cow through a slice that outlives it.
            let storage =
                QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &Device::Cpu, dtype)?;
            let name = format!("blk.{i}.{fused}.weight");
            tensors.push((name.clone(), QTensor::new(storage, (rows, cols))?));
            written.push(name);
        }
    }
    Ok(written)
}

/// A Phi-3 source's fused tensor whose parts were all quantized (and written, fused or not):
/// copying it too would leave the unquantized matrix beside them.
fn stale_phi3_fused(
    arch: Architecture,
    name: &str,
    matrices: &BTreeMap<String, QuantizedMatrix>,
) -> bool {
    if arch != Architecture::Phi3 {
        return false;
    }
    let Some((layer, suffix)) = name.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
        return false;
    };
    PHI3_FUSED.iter().any(|(fused, parts)| {
        suffix == format!("{fused}.weight")
            && parts
                .iter()
                .all(|p| matrices.contains_key(&format!("blk.{layer}.{p}.weight")))
    })
}

/// Where the packed matrices of `gguf` live.
pub fn sidecar_path(gguf: &Path) -> PathBuf {
    let mut s = gguf.as_os_str().to_os_string();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuantError + '_ {
    move |source| QuantError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// llama.cpp's `general.file_type` for a file whose bulk is `dtype`.
fn file_type(dtype: GgmlDType) -> Option<u32> {
    match dtype {
        GgmlDType::Q4_0 => Some(2),
        GgmlDType::Q4_1 => Some(3),
        _ => None,
    }
}

/// Writes `matrices` (quantized from the GGUF checkpoint `source`) to `out` (+ sidecar when
/// needed). Files are written under temporary names and renamed, so a reader never sees half
/// a file. Returns the paths written.
pub fn write(
    source: &Path,
    recipe: Recipe,
    matrices: &BTreeMap<String, QuantizedMatrix>,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut reader = std::io::BufReader::new(File::open(source).map_err(io(source))?);
    let content = read_content(source, &mut reader, true).map_err(|e| match e {
        QuantError::BadFile { path, detail } => QuantError::BadFile {
            path,
            detail: format!("{detail} (hint: `quantize` reads GGUF checkpoints)"),
        },
        other => other,
    })?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut packed: Vec<(String, PackedFormat, Vec<u8>, usize, usize)> = Vec::new();
    let mut bulk = None;
    for (name, q) in matrices {
        match q.to_stored()? {
            Stored::Ggml(dtype, bytes) => {
                bulk = Some(dtype);
                let storage =
                    QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &Device::Cpu, dtype)?;
                tensors.push((name.clone(), QTensor::new(storage, (q.n, q.k))?));
            }
            Stored::Packed(format, bytes) => packed.push((name.clone(), format, bytes, q.n, q.k)),
        }
    }
    let src = GgufSource::open(source, &Device::Cpu)?;
    let config = src.config().clone();
    let source_format = src.format();
    drop(src);
    let fused = if config.architecture == Architecture::Phi3 {
        fuse_phi3(&mut tensors, config.num_layers)?
    } else {
        Vec::new()
    };
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        if matrices.contains_key(name.as_str())
            || fused.contains(name)
            || stale_phi3_fused(config.architecture, name, matrices)
        {
            continue;
        }
        let t = content.tensor(&mut reader, name, &Device::Cpu)?;
        let t = match t.dtype() {
            GgmlDType::F32 | GgmlDType::F16 => t,
            // Matrices left unquantized (embeddings, an f16 head) are the f16 starting point.
            _ => QTensor::quantize(
                &t.dequantize_f16(&Device::Cpu)?.to_dtype(DType::F32)?,
                GgmlDType::F16,
            )?,
        };
        tensors.push((name.clone(), t));
    }
    let mut metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type" && k.as_str() != RECIPE_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if packed.is_empty() {
        if let Some(ft) = bulk.and_then(file_type) {
            metadata.push(("general.file_type".into(), Value::U32(ft)));
        }
    }
    metadata.push((RECIPE_KEY.into(), Value::String(recipe.canonical())));
    metadata.retain(|(k, _)| k != SOURCE_FORMAT_KEY);
    metadata.push((SOURCE_FORMAT_KEY.into(), Value::String(source_format)));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));

    let mut written = Vec::new();
    let tmp = tmp_path(out);
    {
        let mut w = BufWriter::new(File::create(&tmp).map_err(io(&tmp))?);
        let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        gguf_file::write(&mut w, &md, &ts)?;
        std::io::Write::flush(&mut w).map_err(io(&tmp))?;
    }
    let side = sidecar_path(out);
    if packed.is_empty() {
        // A stale sidecar from an earlier recipe would be read with this file.
        let _ = std::fs::remove_file(&side);
    } else {
        let side_tmp = tmp_path(&side);
        let mut info = HashMap::new();
        let mut views = Vec::new();
        for (name, format, bytes, n, k) in &packed {
            info.insert(
                name.clone(),
                format!(
                    "{},{},{},{},{}",
                    format.bits(),
                    format.group(),
                    if format.asym() { "asym" } else { "sym" },
                    n,
                    k
                ),
            );
            views.push((
                name.clone(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::U8,
                    vec![bytes.len()],
                    bytes,
                )
                .map_err(|e| QuantError::Invalid(e.to_string()))?,
            ));
        }
        info.insert(RECIPE_KEY.into(), recipe.canonical());
        safetensors::serialize_to_file(views, Some(info), &side_tmp).map_err(|e| {
            QuantError::BadFile {
                path: side_tmp.clone(),
                detail: e.to_string(),
            }
        })?;
        std::fs::rename(&side_tmp, &side).map_err(io(&side))?;
        written.push(side);
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    written.insert(0, out.to_path_buf());
    Ok(written)
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(s)
}

/// Reads a GGUF header with candle, after the bounded walk has refused any count or length
/// candle would size an allocation from without checking; `tensor_data` also checks that every
/// tensor's data lies inside the file.
fn read_content(
    path: &Path,
    reader: &mut std::io::BufReader<File>,
    tensor_data: bool,
) -> Result<gguf_file::Content> {
    let bad = |detail: String| QuantError::BadFile {
        path: path.to_path_buf(),
        detail,
    };
    let header = GgufHeader::read(&mut *reader).map_err(|e| bad(e.to_string()))?;
    if tensor_data {
        header.check_tensor_data().map_err(|e| bad(e.to_string()))?;
    }
    reader.rewind().map_err(io(path))?;
    gguf_file::Content::read(reader)
        .map_err(|e| bad(e.to_string().lines().next().unwrap_or("").to_string()))
}

/// The recipe a file written by [`write`] records, or None for any other GGUF.
pub fn recipe_of(path: &Path) -> Result<Option<Recipe>> {
    let mut reader = std::io::BufReader::new(File::open(path).map_err(io(path))?);
    let content = read_content(path, &mut reader, false)?;
    match content.metadata.get(RECIPE_KEY) {
        Some(Value::String(s)) => Ok(Recipe::parse_technique(s)?),
        _ => Ok(None),
    }
}

/// Reads the packed matrices of a sidecar.
fn read_sidecar(path: &Path) -> Result<HashMap<String, Arc<PackedLinear>>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    parse_sidecar(path, &bytes)
}

/// The packed matrices of a sidecar file's contents; `path` is for messages only. Each
/// tensor's recorded `(n, k)` must account for exactly its bytes, so nothing is sized from the
/// metadata alone.
pub fn parse_sidecar(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Arc<PackedLinear>>> {
    let bad = |detail: String| QuantError::BadFile {
        path: path.to_path_buf(),
        detail,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let desc = info
            .get(&name)
            .ok_or_else(|| bad(format!("no format recorded for `{name}`")))?;
        let parts: Vec<&str> = desc.split(',').collect();
        let parse = |i: usize| -> Result<usize> {
            parts
                .get(i)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad(format!("bad format `{desc}` for `{name}`")))
        };
        let format = PackedFormat::new(parse(0)? as u32, parse(1)?, parts.get(2) == Some(&"asym"))?;
        let (n, k) = (parse(3)?, parse(4)?);
        out.insert(
            name.clone(),
            Arc::new(PackedLinear::new(format, view.data().to_vec(), n, k)?),
        );
    }
    Ok(out)
}

/// A GGUF file plus its sidecar as one [`WeightSource`]: sidecar matrices are handed to the
/// model loader as a zero-cost placeholder of the right shape (a broadcast scalar), which
/// [`FilePolicy`] replaces with the packed matrix.
struct FileSource {
    gguf: GgufSource,
    packed: HashMap<String, Arc<PackedLinear>>,
}

impl WeightSource for FileSource {
    fn config(&self) -> &ModelConfig {
        self.gguf.config()
    }
    fn has(&self, name: &str) -> bool {
        self.packed.contains_key(name) || self.gguf.has(name)
    }
    fn tensor(&mut self, name: &str) -> effbench_core::Result<SourceTensor> {
        if let Some(p) = self.packed.get(name) {
            let shape = (p.out_features(), p.in_features());
            let zero = Tensor::zeros(1, DType::F16, &Device::Cpu)?;
            return Ok(SourceTensor::Dense(
                zero.reshape((1, 1))?.broadcast_as(shape)?,
            ));
        }
        self.gguf.tensor(name)
    }
    fn format(&self) -> String {
        self.gguf.format()
    }
    fn path(&self) -> &Path {
        self.gguf.path()
    }
}

#[derive(Debug)]
struct FilePolicy {
    recipe: Recipe,
    device: Device,
    source_format: Option<String>,
    packed: HashMap<String, Arc<PackedLinear>>,
}

impl WeightPolicy for FilePolicy {
    fn build(
        &self,
        name: &str,
        role: WeightRole,
        source: SourceTensor,
    ) -> effbench_core::Result<Arc<dyn LinearWeight>> {
        match self.packed.get(name) {
            Some(p) => crate::linear::packed_on(p.clone(), &self.device),
            None => AsStored.build(name, role, source),
        }
    }
    fn embedding_dtype(&self) -> Option<DType> {
        Some(DType::F16)
    }
    fn describe(&self, _source_format: &str) -> String {
        let recipe = crate::policy::QuantPolicy::rtn(self.recipe, &self.device).describe_recipe();
        match &self.source_format {
            Some(src) => format!("{recipe}, from f16 dequantized from {src}"),
            None => format!("{recipe}, from f16"),
        }
    }
}

/// Loads a file written by [`write`] onto the CPU.
pub fn load(path: &Path) -> Result<(LoadedModel, Recipe)> {
    load_on(path, &Device::Cpu)
}

/// Loads a file written by [`write`] onto `device`. Off the CPU, packed matrices run as f16
/// (see [`crate::linear::F16Compute`]) and the model's label says so.
pub fn load_on(path: &Path, device: &Device) -> Result<(LoadedModel, Recipe)> {
    let device = device.clone();
    let recipe = recipe_of(path)?.ok_or_else(|| QuantError::BadFile {
        path: path.to_path_buf(),
        detail: format!("not an effbench quantized file (no `{RECIPE_KEY}`)"),
    })?;
    let side = sidecar_path(path);
    let packed = if side.exists() {
        read_sidecar(&side)?
    } else {
        HashMap::new()
    };
    let gguf = GgufSource::open(path, &device)?;
    let tokenizer = effbench_tokenizer::from_gguf_metadata(gguf.metadata())
        .map_err(|e| QuantError::Invalid(e.to_string()))?;
    let special = effbench_tokenizer::special_tokens(gguf.metadata());
    let source_format = match gguf.metadata().get(SOURCE_FORMAT_KEY) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut source = FileSource {
        gguf,
        packed: packed.clone(),
    };
    let policy = FilePolicy {
        recipe,
        device: device.clone(),
        source_format,
        packed,
    };
    let model = effbench_core::Model::load(&mut source, &policy, &device)?;
    Ok((
        LoadedModel {
            model,
            tokenizer,
            special,
            path: path.to_path_buf(),
            format: effbench_core::source::ModelFormat::Gguf,
            source_format: recipe.spec.to_string(),
        },
        recipe,
    ))
}
