//! A bounded walk over a GGUF file's header, run before any parser that trusts it.
//!
//! candle's `gguf_file::Content::read` sizes vectors and strings from the counts and lengths it
//! reads, so a corrupt file can ask for 2^62 bytes and abort the process instead of returning an
//! error. [`GgufHeader::read`] walks the same header (magic, version, counts, every metadata key
//! and value, nested arrays, the tensor info table) without allocating anything sized by the file:
//! every count and length is checked against the bytes that remain before it is used, and
//! strings are skipped, not read. A header that passes can be handed to candle: each allocation
//! it then makes is backed by bytes actually present in the file (see [`GgufHeader::read`] for the
//! exact bound).
//!
//! Each refusal is one line naming the byte offset and what was wrong there.

use std::io::{BufReader, Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{TensorInfo, Value};
use candle_core::quantized::GgmlDType;

/// GGML's `GGML_MAX_DIMS`: no GGML tensor has more dimensions.
pub const MAX_DIMS: u32 = 4;

/// Arrays of arrays are legal GGUF but no converter writes more than one level; candle reads them
/// recursively, so an unbounded chain of nested array headers would exhaust the stack.
pub const MAX_ARRAY_NESTING: u32 = 4;

/// What any single collection candle builds from a valid header may take in memory beyond the
/// file's own length. candle's in-memory form of a value is larger than its encoding (a one-byte
/// `u8` element becomes a 32-byte `Value`), so a count that the remaining bytes can back may
/// still ask for far more memory than the file holds; this caps that amplification.
pub const MEMORY_SLACK: u64 = 4 << 20;

/// The key llama.cpp and candle read the tensor data alignment from.
const ALIGNMENT_KEY: &[u8] = b"general.alignment";
/// GGUF's default when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Names longer than this are not copied into messages.
const MAX_NAME_IN_MESSAGE: u64 = 96;

/// Why a GGUF header was refused: one line, with the byte offset it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct GgufHeaderError {
    /// Byte offset in the file of the field that was wrong.
    pub offset: u64,
    /// The whole message, offset included.
    pub detail: String,
}

/// The parts of a GGUF header that callers check against: what passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufHeader {
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_kv_count: u64,
    /// From `general.alignment`, else 32.
    pub alignment: u64,
    /// Where the tensor data starts: the end of the tensor info table, rounded up to `alignment`
    /// (the same value candle computes).
    pub tensor_data_offset: u64,
    pub file_len: u64,
    /// The tensor whose data ends last, if any: (index, name as far as it is printable, end byte
    /// relative to `tensor_data_offset`).
    last_tensor: Option<(u64, String, u64)>,
}

impl GgufHeader {
    /// Walks the header of the GGUF file `reader` holds, from its start. Does not read tensor
    /// data; [`GgufHeader::check_tensor_data`] compares its extent with the file length.
    ///
    /// On success, candle's `Content::read` on the same bytes allocates no single block larger
    /// than the file's length plus [`MEMORY_SLACK`].
    pub fn read<R: Read + Seek>(mut reader: R) -> Result<Self, GgufHeaderError> {
        let io_err = |e: std::io::Error| GgufHeaderError {
            offset: 0,
            detail: format!("cannot read the file: {e}"),
        };
        let file_len = reader.seek(SeekFrom::End(0)).map_err(io_err)?;
        reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
        Walker {
            r: BufReader::new(reader),
            pos: 0,
            len: file_len,
            wide: true,
        }
        .header()
    }

    /// [`GgufHeader::read`] over bytes in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GgufHeaderError> {
        Self::read(std::io::Cursor::new(bytes))
    }

    /// Whether every tensor's data lies inside the file; a truncated download fails here.
    pub fn check_tensor_data(&self) -> Result<(), GgufHeaderError> {
        let Some((index, name, end)) = &self.last_tensor else {
            return Ok(());
        };
        // Cannot overflow: `read` checked `tensor_data_offset + end` when it recorded `end`.
        let end = self.tensor_data_offset + end;
        if end > self.file_len {
            return Err(GgufHeaderError {
                offset: self.tensor_data_offset,
                detail: format!(
                    "truncated: tensor {index} `{name}` ends at byte {end} but the file has {} bytes",
                    self.file_len
                ),
            });
        }
        Ok(())
    }
}

/// GGUF metadata value types, by their numbering in the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Fixed(u64),
    Bool,
    Str,
    Array,
}

fn value_type(id: u32) -> Option<Ty> {
    Some(match id {
        0 | 1 => Ty::Fixed(1),
        2 | 3 => Ty::Fixed(2),
        4..=6 => Ty::Fixed(4),
        7 => Ty::Bool,
        8 => Ty::Str,
        9 => Ty::Array,
        10..=12 => Ty::Fixed(8),
        _ => return None,
    })
}

/// The GGML types candle can load, by their numbering in the format.
fn ggml_type(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// Bytes hashbrown may hold for a map of `n` entries of `entry` bytes while growing to it: up to
/// twice the buckets needed at its 7/8 load factor, one control byte per bucket.
fn map_bytes(n: u64, entry: u64) -> Option<u64> {
    n.checked_mul(16)?.div_ceil(7).checked_mul(entry + 1)
}

struct Walker<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
    /// Counts and lengths are 64-bit from GGUF v2 on, 32-bit in v1.
    wide: bool,
}

impl<R: Read + Seek> Walker<R> {
    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    fn fail(&self, offset: u64, detail: String) -> GgufHeaderError {
        GgufHeaderError { offset, detail }
    }

    /// Refuses unless `n` bytes remain; `what` names the field at the current position.
    fn need(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), GgufHeaderError> {
        if n > self.remaining() {
            return Err(self.fail(
                self.pos,
                format!(
                    "truncated: {} at byte {} needs {n} bytes but only {} remain",
                    what(),
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn bytes<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], GgufHeaderError> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.fail(self.pos, format!("{} at byte {}: {e}", what(), self.pos)))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufHeaderError> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufHeaderError> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// A count or length: 32-bit in v1, 64-bit after.
    fn count(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufHeaderError> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn count_width(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), GgufHeaderError> {
        self.need(n, what)?;
        // `need` bounds n by the file length, which fits in i64 for any file that exists.
        let step = i64::try_from(n).map_err(|_| {
            self.fail(
                self.pos,
                format!("{} at byte {} is too long", what(), self.pos),
            )
        })?;
        self.r
            .seek_relative(step)
            .map_err(|e| self.fail(self.pos, format!("{} at byte {}: {e}", what(), self.pos)))?;
        self.pos += n;
        Ok(())
    }

    /// Checks that `n` items of at least `min_each` bytes fit in what remains, and that candle's
    /// in-memory form (`in_memory` bytes for the whole collection) stays within the budget.
    fn check_count(
        &self,
        n: u64,
        min_each: u64,
        in_memory: Option<u64>,
        count_at: u64,
        what: &dyn Fn() -> String,
    ) -> Result<(), GgufHeaderError> {
        let remaining = self.remaining();
        if n.checked_mul(min_each).is_none_or(|b| b > remaining) {
            return Err(self.fail(
                count_at,
                format!(
                    "{} at byte {count_at} claims {n} entries of at least {min_each} bytes but only {remaining} bytes remain",
                    what()
                ),
            ));
        }
        let budget = self.len.saturating_add(MEMORY_SLACK);
        if in_memory.is_none_or(|b| b > budget) {
            return Err(self.fail(
                count_at,
                format!(
                    "{} at byte {count_at} claims {n} entries, more than a {}-byte file can hold in memory",
                    what(),
                    self.len
                ),
            ));
        }
        Ok(())
    }

    /// A string's length, checked against what remains; leaves the position at its bytes.
    fn string_len(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufHeaderError> {
        let at = self.pos;
        let n = self.count(what)?;
        if n > self.remaining() {
            return Err(self.fail(
                at,
                format!(
                    "{} at byte {at} claims {n} bytes but only {} remain",
                    what(),
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// Reads a string of at most `max` bytes for messages and key matching, else skips it.
    fn short_string(
        &mut self,
        max: u64,
        what: &dyn Fn() -> String,
    ) -> Result<Option<Vec<u8>>, GgufHeaderError> {
        let n = self.string_len(what)?;
        if n > max {
            self.skip(n, what)?;
            return Ok(None);
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|e| self.fail(self.pos, format!("{} at byte {}: {e}", what(), self.pos)))?;
        self.pos += n;
        Ok(Some(buf))
    }

    /// A metadata key: its first `max` bytes for messages (`None` when longer), and whether
    /// candle reads it as `general.alignment`. Candle drops a string's trailing NUL bytes, so
    /// `general.alignment` followed by NULs is that key to candle and must be checked as it,
    /// however long; a long key is streamed, never allocated whole.
    fn key(
        &mut self,
        max: u64,
        what: &dyn Fn() -> String,
    ) -> Result<(Option<Vec<u8>>, bool), GgufHeaderError> {
        let n = self.string_len(what)?;
        self.need(n, what)?;
        let mut shown = Vec::new();
        let mut matches = n >= ALIGNMENT_KEY.len() as u64;
        let mut buf = [0u8; 4096];
        let mut done = 0u64;
        while done < n {
            let take = (n - done).min(buf.len() as u64) as usize;
            self.r.read_exact(&mut buf[..take]).map_err(|e| {
                self.fail(self.pos, format!("{} at byte {}: {e}", what(), self.pos))
            })?;
            for (i, &b) in buf[..take].iter().enumerate() {
                let at = (done + i as u64) as usize;
                let expected = ALIGNMENT_KEY.get(at).copied().unwrap_or(0);
                matches &= b == expected;
            }
            if (shown.len() as u64) < max {
                let keep = ((max - shown.len() as u64) as usize).min(take);
                shown.extend_from_slice(&buf[..keep]);
            }
            done += take as u64;
            self.pos += take as u64;
        }
        Ok(((n <= max).then_some(shown), matches))
    }

    fn header(mut self) -> Result<GgufHeader, GgufHeaderError> {
        let magic = self.bytes::<4>(&|| "the magic".into())?;
        if &magic != b"GGUF" {
            return Err(self.fail(
                0,
                format!("wrong magic {magic:02x?} at byte 0, expected \"GGUF\""),
            ));
        }
        let version = self.u32(&|| "the version".into())?;
        if !(1..=3).contains(&version) {
            return Err(self.fail(
                4,
                format!("unsupported GGUF version {version} at byte 4 (supported: 1, 2, 3)"),
            ));
        }
        self.wide = version >= 2;
        let tensor_count_at = self.pos;
        let tensor_count = self.count(&|| "the tensor count".into())?;
        let kv_count_at = self.pos;
        let kv_count = self.count(&|| "the metadata count".into())?;

        let w = self.count_width();
        // A key, its type and the smallest value; a name, n_dims, type and offset.
        let min_kv = w + 4 + 1;
        let min_tensor = w + 4 + 4 + 8;
        let kv_entry = (std::mem::size_of::<(String, Value)>()) as u64;
        let tensor_entry = (std::mem::size_of::<(String, TensorInfo)>()) as u64;
        self.check_count(
            kv_count,
            min_kv,
            map_bytes(kv_count, kv_entry),
            kv_count_at,
            &|| "the metadata count".into(),
        )?;
        // The tensor table comes after the metadata, so this first check only bounds the count.
        self.check_count(
            tensor_count,
            min_tensor,
            map_bytes(tensor_count, tensor_entry),
            tensor_count_at,
            &|| "the tensor count".into(),
        )?;

        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..kv_count {
            let key_at = self.pos;
            let (key, is_alignment) =
                self.key(MAX_NAME_IN_MESSAGE, &|| format!("metadata key {i}"))?;
            let label = match &key {
                Some(k) => format!("metadata key {i} `{}`", String::from_utf8_lossy(k)),
                None => format!("metadata key {i} (at byte {key_at})"),
            };
            let type_at = self.pos;
            let type_id = self.u32(&|| format!("the type of {label}"))?;
            let Some(ty) = value_type(type_id) else {
                return Err(self.fail(
                    type_at,
                    format!("{label} has unknown value type {type_id} at byte {type_at}"),
                ));
            };
            if is_alignment {
                alignment = self.alignment(type_id, &label)?;
            } else {
                self.value(ty, 0, &label)?;
            }
        }

        // Now that the metadata is behind, the count can be held against the table's own bytes.
        self.check_count(
            tensor_count,
            min_tensor,
            map_bytes(tensor_count, tensor_entry),
            tensor_count_at,
            &|| "the tensor count".into(),
        )?;
        let mut last_tensor: Option<(u64, String, u64)> = None;
        for t in 0..tensor_count {
            let name_at = self.pos;
            let name =
                self.short_string(MAX_NAME_IN_MESSAGE, &|| format!("the name of tensor {t}"))?;
            let label = match &name {
                Some(n) => format!("tensor {t} `{}`", String::from_utf8_lossy(n)),
                None => format!("tensor {t} (name at byte {name_at})"),
            };
            let dims_at = self.pos;
            let n_dims = self.u32(&|| format!("the dimension count of {label}"))?;
            if n_dims > MAX_DIMS {
                return Err(self.fail(
                    dims_at,
                    format!("{label} at byte {dims_at} has {n_dims} dimensions; GGML allows at most {MAX_DIMS}"),
                ));
            }
            let mut elems: u64 = 1;
            let mut row: u64 = 1;
            for d in 0..n_dims {
                let at = self.pos;
                let dim = self.count(&|| format!("dimension {d} of {label}"))?;
                if d == 0 {
                    row = dim;
                }
                elems = elems
                    .checked_mul(dim)
                    .filter(|&e| usize::try_from(e).is_ok() && e <= i64::MAX as u64)
                    .ok_or_else(|| {
                        self.fail(
                            at,
                            format!("{label}: dimension {d} at byte {at} ({dim}) makes the element count overflow"),
                        )
                    })?;
            }
            // candle views an empty tensor's dangling buffer as f32s, which is undefined
            // behaviour; no model has one, so it is refused here.
            if elems == 0 {
                return Err(self.fail(
                    dims_at,
                    format!("{label} at byte {dims_at} has no elements (a dimension is 0)"),
                ));
            }
            let type_at = self.pos;
            let type_id = self.u32(&|| format!("the type of {label}"))?;
            let dtype = ggml_type(type_id).ok_or_else(|| {
                self.fail(
                    type_at,
                    format!("{label} has unknown GGML type {type_id} at byte {type_at}"),
                )
            })?;
            // GGML stores a tensor as rows of whole blocks along its first dimension.
            let block = dtype.block_size() as u64;
            if !row.is_multiple_of(block) {
                return Err(self.fail(
                    dims_at,
                    format!("{label} at byte {dims_at} has rows of {row} elements, not a multiple of its block size {block}"),
                ));
            }
            let offset_at = self.pos;
            let offset = self.u64(&|| format!("the data offset of {label}"))?;
            if !offset.is_multiple_of(alignment) {
                return Err(self.fail(
                    offset_at,
                    format!("{label} has data offset {offset} at byte {offset_at}, not a multiple of the alignment {alignment}"),
                ));
            }
            // Checked against the file length in `check_tensor_data`; here only for overflow,
            // against the largest data start a file this long can have.
            let end = (elems / block)
                .checked_mul(dtype.type_size() as u64)
                .and_then(|size| offset.checked_add(size))
                // The data starts at most an alignment (< 2^32) past the end of the file.
                .filter(|end| end.checked_add(self.len.saturating_add(1 << 32)).is_some())
                .ok_or_else(|| {
                    self.fail(
                        offset_at,
                        format!("{label}: data at offset {offset} (byte {offset_at}) of {elems} elements overflows a 64-bit size"),
                    )
                })?;
            if last_tensor.as_ref().is_none_or(|l| end > l.2) {
                let shown = name
                    .as_deref()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_else(|| format!("<name at byte {name_at}>"));
                last_tensor = Some((t, shown, end));
            }
        }

        let tensor_data_offset = self.pos.div_ceil(alignment) * alignment;
        Ok(GgufHeader {
            version,
            tensor_count,
            metadata_kv_count: kv_count,
            alignment,
            tensor_data_offset,
            file_len: self.len,
            last_tensor,
        })
    }

    /// `general.alignment`: candle honours it only as an integer of up to 32 bits, so any other
    /// type would make it disagree with llama.cpp about where the data starts.
    fn alignment(&mut self, type_id: u32, label: &str) -> Result<u64, GgufHeaderError> {
        let at = self.pos;
        let what = || format!("the value of {label}");
        let value: i64 = match type_id {
            0 => self.bytes::<1>(&what)?[0].into(),
            1 => i8::from_le_bytes(self.bytes::<1>(&what)?).into(),
            2 => u16::from_le_bytes(self.bytes::<2>(&what)?).into(),
            3 => i16::from_le_bytes(self.bytes::<2>(&what)?).into(),
            4 => u32::from_le_bytes(self.bytes::<4>(&what)?).into(),
            5 => i32::from_le_bytes(self.bytes::<4>(&what)?).into(),
            _ => {
                return Err(self.fail(
                    at,
                    format!("{label} at byte {at} has value type {type_id}; it must be an integer of at most 32 bits"),
                ))
            }
        };
        if value <= 0 || !(value as u64).is_power_of_two() {
            return Err(self.fail(
                at,
                format!("{label} at byte {at} is {value}; it must be a nonzero power of two"),
            ));
        }
        Ok(value as u64)
    }

    fn value(&mut self, ty: Ty, depth: u32, label: &str) -> Result<(), GgufHeaderError> {
        let what = || format!("the value of {label}");
        match ty {
            Ty::Fixed(n) => self.skip(n, &what),
            Ty::Bool => {
                let at = self.pos;
                let b = self.bytes::<1>(&what)?[0];
                if b > 1 {
                    return Err(self.fail(
                        at,
                        format!("{label} at byte {at} is a bool of value {b}, not 0 or 1"),
                    ));
                }
                Ok(())
            }
            Ty::Str => {
                let n = self.string_len(&what)?;
                self.skip(n, &what)
            }
            Ty::Array => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(self.fail(
                        self.pos,
                        format!("{label} nests arrays deeper than {MAX_ARRAY_NESTING} levels at byte {}", self.pos),
                    ));
                }
                let type_at = self.pos;
                let type_id = self.u32(&|| format!("the element type of {label}"))?;
                let elem = value_type(type_id).ok_or_else(|| {
                    self.fail(
                        type_at,
                        format!(
                            "{label} has unknown array element type {type_id} at byte {type_at}"
                        ),
                    )
                })?;
                let count_at = self.pos;
                let n = self.count(&|| format!("the length of {label}"))?;
                let w = self.count_width();
                let min_each = match elem {
                    Ty::Fixed(size) => size,
                    Ty::Bool => 1,
                    Ty::Str => w,
                    Ty::Array => 4 + w,
                };
                let value_size = std::mem::size_of::<Value>() as u64;
                self.check_count(n, min_each, n.checked_mul(value_size), count_at, &|| {
                    format!("the array {label}")
                })?;
                match elem {
                    // Checked above to fit in what remains.
                    Ty::Fixed(size) => self.skip(n * size, &what),
                    _ => {
                        for j in 0..n {
                            let elem_label = format!("{label} element {j}");
                            self.value(elem, depth + 1, &elem_label)?;
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v3 header with no tensors and the given metadata entries (already encoded).
    fn header(kvs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((kvs.len() as u64).to_le_bytes());
        for kv in kvs {
            b.extend(kv);
        }
        b
    }

    fn kv(key: &str, type_id: u32, value: &[u8]) -> Vec<u8> {
        let mut b = (key.len() as u64).to_le_bytes().to_vec();
        b.extend(key.as_bytes());
        b.extend(type_id.to_le_bytes());
        b.extend(value);
        b
    }

    #[test]
    fn huge_first_key_length_is_one_line_with_its_offset() {
        let mut b = header(&[]);
        b[16..24].copy_from_slice(&1u64.to_le_bytes());
        b.extend((1u64 << 62).to_le_bytes());
        b.extend([b'x'; 100]);
        let err = GgufHeader::from_bytes(&b).unwrap_err();
        assert_eq!(err.offset, 24);
        assert_eq!(
            err.to_string(),
            "metadata key 0 at byte 24 claims 4611686018427387904 bytes but only 100 remain"
        );
    }

    #[test]
    fn counts_beyond_the_file_are_refused_before_walking() {
        let mut b = header(&[kv("a", 4, &7u32.to_le_bytes())]);
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = GgufHeader::from_bytes(&b).unwrap_err();
        assert_eq!(err.offset, 16);
        assert!(err.to_string().contains("metadata count"), "{err}");
    }

    #[test]
    fn a_u8_array_that_would_grow_32_fold_in_memory_is_refused() {
        // 1 MiB of u8 elements fits in the file but would be 32 MiB of candle `Value`s.
        let n = 1u64 << 20;
        let mut value = 0u32.to_le_bytes().to_vec();
        value.extend(n.to_le_bytes());
        value.extend(vec![0u8; n as usize]);
        let b = header(&[kv("big", 9, &value)]);
        let err = GgufHeader::from_bytes(&b).unwrap_err();
        assert!(err.to_string().contains("in memory"), "{err}");
    }

    #[test]
    fn nested_arrays_are_capped() {
        let mut value = Vec::new();
        for _ in 0..10 {
            value.extend(9u32.to_le_bytes());
            value.extend(1u64.to_le_bytes());
        }
        value.extend(0u32.to_le_bytes());
        value.extend(0u64.to_le_bytes());
        let b = header(&[kv("deep", 9, &value)]);
        let err = GgufHeader::from_bytes(&b).unwrap_err();
        assert!(err.to_string().contains("nests arrays"), "{err}");
    }

    #[test]
    fn alignment_must_be_a_power_of_two() {
        for (v, ok) in [(32u32, true), (0, false), (48, false)] {
            let b = header(&[kv("general.alignment", 4, &v.to_le_bytes())]);
            assert_eq!(GgufHeader::from_bytes(&b).is_ok(), ok, "alignment {v}");
        }
        let b = header(&[kv("general.alignment", 10, &64u64.to_le_bytes())]);
        assert!(GgufHeader::from_bytes(&b).is_err());
    }

    /// Found by fuzzing: candle drops a string's trailing NULs, so to candle this key is
    /// `general.alignment`, and an alignment of 0 divided by zero inside its reader. However
    /// many NULs follow, the key is checked as the alignment.
    #[test]
    fn alignment_key_with_trailing_nuls_is_checked_as_candle_reads_it() {
        for nuls in [1usize, 8, 200, 5000] {
            let key = format!("general.alignment{}", "\0".repeat(nuls));
            let bad = header(&[kv(&key, 4, &0u32.to_le_bytes())]);
            let err = GgufHeader::from_bytes(&bad).unwrap_err().to_string();
            assert!(err.contains("nonzero power of two"), "{nuls} NULs: {err}");
            let good = header(&[kv(&key, 4, &64u32.to_le_bytes())]);
            assert_eq!(
                GgufHeader::from_bytes(&good).unwrap().alignment,
                64,
                "{nuls} NULs"
            );
        }
        // Other bytes after the name make another key, which candle keeps apart too.
        let other = header(&[kv("general.alignmentx", 4, &0u32.to_le_bytes())]);
        assert_eq!(GgufHeader::from_bytes(&other).unwrap().alignment, 32);
    }

    #[test]
    fn bad_bools_and_types_are_refused() {
        let b = header(&[kv("flag", 7, &[2])]);
        assert!(GgufHeader::from_bytes(&b)
            .unwrap_err()
            .to_string()
            .contains("bool"));
        let b = header(&[kv("what", 13, &[0])]);
        assert!(GgufHeader::from_bytes(&b)
            .unwrap_err()
            .to_string()
            .contains("unknown value type 13"));
    }

    fn with_tensor(dims: &[u64], type_id: u32, offset: u64, data: usize) -> Vec<u8> {
        let mut b = header(&[]);
        b[8..16].copy_from_slice(&1u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.push(b't');
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(type_id.to_le_bytes());
        b.extend(offset.to_le_bytes());
        b.resize(b.len().div_ceil(32) * 32 + data, 0);
        b
    }

    #[test]
    fn tensor_table_checks() {
        let ok = with_tensor(&[4, 2], 0, 0, 32);
        let h = GgufHeader::from_bytes(&ok).unwrap();
        h.check_tensor_data().unwrap();
        // Matches candle on where the data starts.
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&ok))
                .unwrap();
        assert_eq!(content.tensor_data_offset, h.tensor_data_offset);

        let short = with_tensor(&[4, 2], 0, 0, 31);
        let err = GgufHeader::from_bytes(&short)
            .unwrap()
            .check_tensor_data()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("truncated: tensor 0 `t` ends at byte"),
            "{err}"
        );

        for (dims, ty, offset, needle) in [
            (&[1u64, 1, 1, 1, 1][..], 0, 0, "5 dimensions"),
            (&[u64::MAX, 2][..], 0, 0, "overflow"),
            (&[1u64 << 40, 1 << 40][..], 0, 0, "overflow"),
            (&[4][..], 4, 0, "unknown GGML type 4"),
            (&[33][..], 2, 0, "block size 32"),
            (&[4][..], 0, 3, "not a multiple of the alignment"),
            (&[4][..], 0, u64::MAX - 31, "overflows"),
            (&[4, 0][..], 0, 0, "no elements"),
        ] {
            let err = GgufHeader::from_bytes(&with_tensor(dims, ty, offset, 64))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{dims:?}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    /// fuzz/artifacts/gguf_header/crash-ced35b71: a version-1 header with one tensor of four
    /// zero dimensions. The walk accepted it, and candle's reader then made an f32 slice from
    /// the empty buffer's dangling pointer (caught by the debug build's UB check).
    #[test]
    fn fuzz_crash_an_empty_tensor_is_refused() {
        let mut input = b"GGUF".to_vec();
        input.extend(1u32.to_le_bytes()); // version 1: 32-bit counts and lengths
        input.extend(1u32.to_le_bytes()); // one tensor
        input.extend(0u32.to_le_bytes()); // no metadata
        input.extend(0u32.to_le_bytes()); // an empty name
        input.extend(4u32.to_le_bytes()); // four dimensions, each 0
        input.extend([0u8; 16]);
        input.extend([0u8; 4]); // F32
        input.extend(0u64.to_le_bytes());
        input.extend(b"G\xf72\xff\xffUU\x01F");
        let err = GgufHeader::from_bytes(&input).unwrap_err().to_string();
        assert!(err.contains("no elements"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_refused_cleanly() {
        let mut list = 8u32.to_le_bytes().to_vec();
        list.extend(2u64.to_le_bytes());
        for s in ["ab", "c"] {
            list.extend((s.len() as u64).to_le_bytes());
            list.extend(s.as_bytes());
        }
        let mut name = 3u64.to_le_bytes().to_vec();
        name.extend(b"abc");
        let full = header(&[kv("general.name", 8, &name), kv("list", 9, &list)]);
        GgufHeader::from_bytes(&full).unwrap();
        for n in 0..full.len() {
            let err = GgufHeader::from_bytes(&full[..n]).unwrap_err().to_string();
            assert!(
                err.starts_with("truncated") || err.contains("claims"),
                "{n}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
