//! Bounded walks over a parquet file's Thrift structures, before the parquet crate reads them.
//!
//! The parquet crate sizes buffers from counts in the file before it checks them: a page's
//! decompression buffer from the header's `uncompressed_page_size` (up to 2 GiB), and each
//! schema node's child list from its `num_children`. An 882-byte file can make it reserve
//! 640 MiB, a 719-byte one 6 GiB. Its Thrift types are private, so this reads the few fields it
//! needs from the Thrift compact encoding itself, allocating nothing.

/// Snappy's largest expansion: a 3-byte copy element writes at most 64 bytes.
const SNAPPY_MAX_RATIO: u64 = 22;
/// Room for a page's level bytes and a codec's own preamble on tiny pages.
const PAGE_SLACK: u64 = 1024;
/// Thrift structs nest a few levels in a page header; anything deeper is corrupt.
const MAX_DEPTH: usize = 16;

/// The sizes one page header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageSizes {
    header_len: usize,
    compressed: i64,
    uncompressed: i64,
}

/// Checks every page header in `chunk` (one column chunk's bytes): each page lies inside the
/// chunk, and no page claims more decompressed bytes than its compressed bytes can expand to.
/// Errors say the page's offset within the chunk.
pub(super) fn check_pages(chunk: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut page = 0usize;
    while at < chunk.len() {
        let sizes = read_page_header(&chunk[at..])
            .map_err(|e| format!("page {page} at byte {at} of the chunk: {e}"))?;
        let bad = |what: String| format!("page {page} at byte {at} of the chunk: {what}");
        if sizes.compressed < 0 || sizes.uncompressed < 0 {
            return Err(bad(format!(
                "negative page size (compressed {}, uncompressed {})",
                sizes.compressed, sizes.uncompressed
            )));
        }
        let body = sizes.compressed as u64;
        let end = (at + sizes.header_len) as u64 + body;
        if end > chunk.len() as u64 {
            return Err(bad(format!(
                "{body} page bytes run past the {}-byte chunk",
                chunk.len()
            )));
        }
        let most = body * SNAPPY_MAX_RATIO + PAGE_SLACK;
        if sizes.uncompressed as u64 > most {
            return Err(bad(format!(
                "claims {} decompressed bytes from {body} compressed, more than Snappy can expand to",
                sizes.uncompressed
            )));
        }
        at = end as usize;
        page += 1;
    }
    Ok(())
}

/// Field ids of parquet's `FileMetaData` and `SchemaElement` that matter here.
const FILE_SCHEMA: i16 = 2;
const SCHEMA_NUM_CHILDREN: i16 = 5;

/// Walks the whole footer: every list claims no more elements than bytes follow (the parquet
/// crate's skipper steps over a list of booleans without consuming a byte per element, so a
/// claimed 2^31 of them spins for seconds), and each schema node claims no more children than
/// the elements after it. A footer that is not where the file says is left to the parquet
/// crate to report.
pub(super) fn check_footer(file: &[u8]) -> Result<(), String> {
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Ok(());
    }
    let footer_len = u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let Some(start) = (n - 8).checked_sub(footer_len) else {
        return Ok(());
    };
    let mut r = Compact {
        bytes: &file[start..n - 8],
        at: 0,
    };
    let mut last_id = 0i16;
    while let Some((id, kind)) = r.field_header(&mut last_id)? {
        if (id, kind) != (FILE_SCHEMA, LIST) {
            r.skip(kind, 0)?;
            continue;
        }
        let (count, elem) = r.collection_header()?;
        if elem != STRUCT {
            return Err(format!(
                "the schema is a list of Thrift type {elem}, not of structs"
            ));
        }
        for i in 0..count {
            let mut field = 0i16;
            while let Some((id, kind)) = r.field_header(&mut field)? {
                if (id, kind) == (SCHEMA_NUM_CHILDREN, I32) {
                    let children = r.zigzag()?;
                    let after = count - 1 - i;
                    if children < 0 || children as u64 > after {
                        return Err(format!(
                            "schema element {i} claims {children} children, but only {after} elements follow it"
                        ));
                    }
                } else {
                    r.skip(kind, 1)?;
                }
            }
        }
    }
    Ok(())
}

/// Field ids of parquet's `PageHeader` that matter here.
const UNCOMPRESSED_PAGE_SIZE: i16 = 2;
const COMPRESSED_PAGE_SIZE: i16 = 3;

/// The Thrift type a field of a parquet page header has in the format.
#[derive(Clone, Copy)]
enum Shape {
    I32,
    I64,
    Bool,
    Binary,
    Struct(&'static [(i16, Shape)]),
}

impl Shape {
    fn matches(self, kind: u8) -> bool {
        match self {
            Self::I32 => kind == I32,
            Self::I64 => kind == I64,
            Self::Bool => matches!(kind, BOOL_TRUE | BOOL_FALSE),
            Self::Binary => kind == BINARY,
            Self::Struct(_) => kind == STRUCT,
        }
    }
}

// parquet.thrift's page header and the structs inside it, field by field.
const STATISTICS: &[(i16, Shape)] = &[
    (1, Shape::Binary),
    (2, Shape::Binary),
    (3, Shape::I64),
    (4, Shape::I64),
    (5, Shape::Binary),
    (6, Shape::Binary),
    (7, Shape::Bool),
    (8, Shape::Bool),
];
const DATA_PAGE: &[(i16, Shape)] = &[
    (1, Shape::I32),
    (2, Shape::I32),
    (3, Shape::I32),
    (4, Shape::I32),
    (5, Shape::Struct(STATISTICS)),
];
const INDEX_PAGE: &[(i16, Shape)] = &[];
const DICTIONARY_PAGE: &[(i16, Shape)] = &[(1, Shape::I32), (2, Shape::I32), (3, Shape::Bool)];
const DATA_PAGE_V2: &[(i16, Shape)] = &[
    (1, Shape::I32),
    (2, Shape::I32),
    (3, Shape::I32),
    (4, Shape::I32),
    (5, Shape::I32),
    (6, Shape::I32),
    (7, Shape::Bool),
    (8, Shape::Struct(STATISTICS)),
];
const PAGE_HEADER: &[(i16, Shape)] = &[
    (1, Shape::I32),
    (UNCOMPRESSED_PAGE_SIZE, Shape::I32),
    (COMPRESSED_PAGE_SIZE, Shape::I32),
    (4, Shape::I32),
    (5, Shape::Struct(DATA_PAGE)),
    (6, Shape::Struct(INDEX_PAGE)),
    (7, Shape::Struct(DICTIONARY_PAGE)),
    (8, Shape::Struct(DATA_PAGE_V2)),
];

fn read_page_header(bytes: &[u8]) -> Result<PageSizes, String> {
    let mut r = Compact { bytes, at: 0 };
    let mut compressed = None;
    let mut uncompressed = None;
    let mut last_id = 0i16;
    while let Some((id, kind)) = r.field_header(&mut last_id)? {
        match (id, kind) {
            (UNCOMPRESSED_PAGE_SIZE, I32) => uncompressed = Some(r.i32()?),
            (COMPRESSED_PAGE_SIZE, I32) => compressed = Some(r.i32()?),
            _ => r.field(PAGE_HEADER, id, kind, 0)?,
        }
    }
    match (compressed, uncompressed) {
        (Some(compressed), Some(uncompressed)) => Ok(PageSizes {
            header_len: r.at,
            compressed,
            uncompressed,
        }),
        _ => Err("page header without its sizes".into()),
    }
}

// Thrift compact protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// The parquet crate's Thrift skipper steps over a boolean in a list without consuming its
/// byte, so from there on it reads the file differently from any other reader, and can take
/// later bytes for a list of billions. No page header or footer field holds booleans in a list
/// or map, so one is refused.
const BOOL_COLLECTION: &str =
    "a list or map of booleans, which no parquet page header or footer holds";

struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("page header cut off by the end of the chunk")?;
        self.at += 1;
        Ok(b)
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!("a {n}-byte field runs past the chunk"));
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A Thrift i32. The parquet crate wraps a longer varint into 32 bits, so a value past
    /// `i32` would be read as some other size: refuse it instead.
    fn i32(&mut self) -> Result<i64, String> {
        let v = self.zigzag()?;
        i32::try_from(v).map_err(|_| format!("page size {v} does not fit in 32 bits"))?;
        Ok(v)
    }

    /// The next field's id and type, or `None` at the struct's end.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        let kind = b & 0x0f;
        if kind == 0 {
            return Ok(None);
        }
        let delta = (b >> 4) as i16;
        *last_id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "field id out of range")?
        } else {
            last_id.wrapping_add(delta)
        };
        Ok(Some((*last_id, kind)))
    }

    /// Steps over one value of type `kind`. Every element takes at least one byte, so a huge
    /// claimed count ends at the chunk's end rather than looping long.
    fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("page header nested deeper than {MAX_DEPTH}"));
        }
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            UUID => self.advance(16),
            BINARY => {
                let n = self.varint()?;
                self.advance(n)
            }
            LIST | SET => {
                let (n, elem) = self.collection_header()?;
                if matches!(elem, BOOL_TRUE | BOOL_FALSE) {
                    return Err(BOOL_COLLECTION.into());
                }
                for _ in 0..n {
                    self.skip_element(elem, depth + 1)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let left = (self.bytes.len() - self.at) as u64;
                if n > left {
                    return Err(format!(
                        "a map claims {n} entries but only {left} bytes follow"
                    ));
                }
                let kinds = self.byte()?;
                if [kinds >> 4, kinds & 0x0f]
                    .iter()
                    .any(|k| matches!(*k, BOOL_TRUE | BOOL_FALSE))
                {
                    return Err(BOOL_COLLECTION.into());
                }
                for _ in 0..n {
                    self.skip_element(kinds >> 4, depth + 1)?;
                    self.skip_element(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last_id = 0;
                while let Some((_, k)) = self.field_header(&mut last_id)? {
                    self.skip(k, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other} in a page header")),
        }
    }

    /// Steps over field `id` of a struct laid out as `fields`, checking its wire type against
    /// the format. The parquet crate reads a known field as the format's type whatever the wire
    /// says, so a mismatch would make it read the rest of the header differently from here
    /// (and one such header made its skipper spin for seconds).
    fn field(
        &mut self,
        fields: &[(i16, Shape)],
        id: i16,
        kind: u8,
        depth: usize,
    ) -> Result<(), String> {
        let Some(&(_, shape)) = fields.iter().find(|(f, _)| *f == id) else {
            return self.skip(kind, depth);
        };
        if !shape.matches(kind) {
            return Err(format!(
                "page header field {id} has Thrift type {kind}, not the format's"
            ));
        }
        match shape {
            Shape::Struct(inner) => {
                if depth > MAX_DEPTH {
                    return Err(format!("page header nested deeper than {MAX_DEPTH}"));
                }
                let mut last_id = 0i16;
                while let Some((id, kind)) = self.field_header(&mut last_id)? {
                    self.field(inner, id, kind, depth + 1)?;
                }
                Ok(())
            }
            _ => self.skip(kind, depth),
        }
    }

    /// A list's or set's element count and type. Every element takes at least a byte, so a
    /// count past the bytes left is corrupt.
    fn collection_header(&mut self) -> Result<(u64, u8), String> {
        let h = self.byte()?;
        let n = match h >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "a list claims {n} elements but only {left} bytes follow"
            ));
        }
        Ok((n, h & 0x0f))
    }

    /// In a collection a boolean is a whole byte, unlike in a field header.
    fn skip_element(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        match kind {
            BOOL_TRUE | BOOL_FALSE => self.advance(1),
            _ => self.skip(kind, depth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// type=DATA_PAGE(0), uncompressed, compressed, then an empty data_page_header struct.
    fn header(uncompressed: i32, compressed: i32) -> Vec<u8> {
        let zz = |v: i32| {
            let mut z = ((v << 1) ^ (v >> 31)) as u32;
            let mut out = vec![];
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    out.push(b);
                    return out;
                }
                out.push(b | 0x80);
            }
        };
        let mut h = vec![0x15];
        h.extend(zz(0));
        h.push(0x15);
        h.extend(zz(uncompressed));
        h.push(0x15);
        h.extend(zz(compressed));
        h.push(0x2c); // field 5, struct
        h.push(0x00);
        h.push(0x00);
        h
    }

    #[test]
    fn a_plausible_page_passes_and_the_walk_steps_over_its_body() {
        let mut chunk = header(100, 40);
        chunk.extend([0u8; 40]);
        chunk.extend(header(10, 10));
        chunk.extend([0u8; 10]);
        assert_eq!(check_pages(&chunk), Ok(()));
    }

    #[test]
    fn a_page_claiming_more_than_snappy_can_expand_is_refused() {
        let mut chunk = header(640 << 20, 40);
        chunk.extend([0u8; 40]);
        let err = check_pages(&chunk).unwrap_err();
        assert!(err.contains("671088640 decompressed bytes"), "{err}");
    }

    #[test]
    fn a_page_running_past_its_chunk_is_refused() {
        let mut chunk = header(100, 400);
        chunk.extend([0u8; 40]);
        let err = check_pages(&chunk).unwrap_err();
        assert!(err.contains("run past"), "{err}");
    }

    #[test]
    fn a_list_of_booleans_is_refused_where_the_parquet_crate_would_misread_it() {
        // An unknown field 20 holding list<bool> of three, then a plausible page's sizes.
        let mut chunk = vec![0x09, 0x28, 0x31, 1, 2, 1];
        chunk.extend(&header(10, 10)[..]);
        let err = check_pages(&chunk).unwrap_err();
        assert!(err.contains("list or map of booleans"), "{err}");
    }

    #[test]
    fn a_known_field_with_another_wire_type_is_refused() {
        // Field 8 (data_page_header_v2, a struct in the format) sent as an i32.
        let mut chunk = header(10, 10);
        let stop = chunk.pop().unwrap();
        chunk.extend([0x35, 0x0c, stop]);
        let err = check_pages(&chunk).unwrap_err();
        assert!(err.contains("field 8 has Thrift type 5"), "{err}");
    }

    #[test]
    fn a_cut_header_is_refused() {
        let chunk = header(100, 40);
        let err = check_pages(&chunk[..4]).unwrap_err();
        assert!(err.contains("cut off"), "{err}");
    }
}
