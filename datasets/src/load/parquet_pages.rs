//! Bounded walks over a parquet file's Thrift structures, before the parquet crate reads them.
//!
//! The parquet crate sizes buffers from counts in the file before it checks them: a page's
//! decompression buffer from the header's `uncompressed_page_size` (up to 2 GiB), and each
//! schema node's child list from its `num_children`. An 882-byte file can make it reserve
//! 640 MiB, a 719-byte one 6 GiB. It also reads a known field as the format's type whatever
//! type the wire gives it, so it can parse the rest of a struct differently from any other
//! reader (and its skipper then spins for seconds). Its Thrift types are private, so this walks
//! the Thrift compact encoding itself, against the format's field types (the `Layout` tables
//! below), allocating nothing.

/// Snappy's largest expansion: a 3-byte copy element writes at most 64 bytes.
const SNAPPY_MAX_RATIO: u64 = 22;
/// Room for a page's level bytes and a codec's own preamble on tiny pages.
const PAGE_SLACK: u64 = 1024;
/// Thrift structs nest a few levels in a page header and under ten in a footer; anything deeper
/// is corrupt.
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
        let sizes = read_page_header(chunk, at)
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

/// Field ids of parquet's `FileMetaData` and `SchemaElement` that the footer walk reads.
const FILE_SCHEMA: i16 = 2;
const SCHEMA_NUM_CHILDREN: i16 = 5;

/// Walks the whole footer against the format's struct layouts (`FILE_META_DATA` below): every
/// field the format defines carries the format's wire type and every list the format's element
/// type (the parquet crate reads a known field as the format's type whatever the wire says, so a
/// mismatch makes it read the rest of the footer differently from here, and two such footers
/// made its skipper spin for over a second); every list or map claims no more elements than
/// bytes follow (the crate's skipper steps over a list of booleans without consuming a byte per
/// element, so a claimed 2^31 of them spins for seconds); and each schema node claims no more
/// children than the elements after it. Fields the format does not define are stepped over,
/// bounded the same way. Offsets in errors count from the footer's first byte. A footer that is
/// not where the file says is left to the parquet crate to report.
pub(super) fn check_footer(file: &[u8]) -> Result<(), String> {
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Ok(());
    }
    let footer_len = u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let Some(start) = (n - 8).checked_sub(footer_len) else {
        return Ok(());
    };
    let mut r = Compact::new(&file[start..n - 8], 0, "footer");
    let mut last_id = 0i16;
    while let Some((id, kind)) = r.field_header(&mut last_id)? {
        if (id, kind) != (FILE_SCHEMA, LIST) {
            r.field(&FILE_META_DATA, id, kind, 0)?;
            continue;
        }
        let count = r.list_header(&FILE_META_DATA, id, "schema", SCHEMA)?;
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
                    r.field(&SCHEMA_ELEMENT, id, kind, 2)?;
                }
            }
        }
    }
    Ok(())
}

/// Field ids of parquet's `PageHeader` that matter here.
const UNCOMPRESSED_PAGE_SIZE: i16 = 2;
const COMPRESSED_PAGE_SIZE: i16 = 3;

/// The Thrift type a field has in the parquet format. Enums are i32s; unions are structs with
/// one field set.
#[derive(Clone, Copy)]
enum Shape {
    Byte,
    I16,
    I32,
    I64,
    Double,
    Bool,
    Binary,
    /// A list of scalars or structs (the format has no list of lists).
    List(&'static Shape),
    Struct(&'static Layout),
}

/// A struct's name (for messages) and its fields: id, name, shape.
struct Layout {
    name: &'static str,
    fields: &'static [(i16, &'static str, Shape)],
}

impl Shape {
    /// The compact-protocol type code this shape is written with (in a field or a list).
    fn code(self) -> u8 {
        match self {
            Self::Byte => BYTE,
            Self::I16 => I16,
            Self::I32 => I32,
            Self::I64 => I64,
            Self::Double => DOUBLE,
            Self::Bool => BOOL_TRUE,
            Self::Binary => BINARY,
            Self::List(_) => LIST,
            Self::Struct(_) => STRUCT,
        }
    }

    fn matches(self, kind: u8) -> bool {
        kind == self.code() || matches!((self, kind), (Self::Bool, BOOL_FALSE))
    }
}

/// A Thrift compact type code's name, for messages.
fn type_name(kind: u8) -> &'static str {
    const NAMES: [&str; 14] = [
        "stop", "bool", "bool", "byte", "i16", "i32", "i64", "double", "binary", "list", "set",
        "map", "struct", "uuid",
    ];
    NAMES.get(usize::from(kind)).copied().unwrap_or("unknown")
}

/// Shorthands for the layouts below.
const fn st(layout: &'static Layout) -> Shape {
    Shape::Struct(layout)
}
const fn list_of(elem: &'static Shape) -> Shape {
    Shape::List(elem)
}

/// The unit members of unions (`StringType`, `MILLIS`, `TypeDefinedOrder`, ...) and the index
/// page header: structs with no fields.
const EMPTY: Layout = Layout {
    name: "empty struct",
    fields: &[],
};

// parquet.thrift's page header and the structs inside it, field by field.
const STATISTICS: Layout = Layout {
    name: "Statistics",
    fields: &[
        (1, "max", Shape::Binary),
        (2, "min", Shape::Binary),
        (3, "null_count", Shape::I64),
        (4, "distinct_count", Shape::I64),
        (5, "max_value", Shape::Binary),
        (6, "min_value", Shape::Binary),
        (7, "is_max_value_exact", Shape::Bool),
        (8, "is_min_value_exact", Shape::Bool),
    ],
};
const DATA_PAGE: Layout = Layout {
    name: "DataPageHeader",
    fields: &[
        (1, "num_values", Shape::I32),
        (2, "encoding", Shape::I32),
        (3, "definition_level_encoding", Shape::I32),
        (4, "repetition_level_encoding", Shape::I32),
        (5, "statistics", st(&STATISTICS)),
    ],
};
const DICTIONARY_PAGE: Layout = Layout {
    name: "DictionaryPageHeader",
    fields: &[
        (1, "num_values", Shape::I32),
        (2, "encoding", Shape::I32),
        (3, "is_sorted", Shape::Bool),
    ],
};
const DATA_PAGE_V2: Layout = Layout {
    name: "DataPageHeaderV2",
    fields: &[
        (1, "num_values", Shape::I32),
        (2, "num_nulls", Shape::I32),
        (3, "num_rows", Shape::I32),
        (4, "encoding", Shape::I32),
        (5, "definition_levels_byte_length", Shape::I32),
        (6, "repetition_levels_byte_length", Shape::I32),
        (7, "is_compressed", Shape::Bool),
        (8, "statistics", st(&STATISTICS)),
    ],
};
const PAGE_HEADER: Layout = Layout {
    name: "PageHeader",
    fields: &[
        (1, "type", Shape::I32),
        (UNCOMPRESSED_PAGE_SIZE, "uncompressed_page_size", Shape::I32),
        (COMPRESSED_PAGE_SIZE, "compressed_page_size", Shape::I32),
        (4, "crc", Shape::I32),
        (5, "data_page_header", st(&DATA_PAGE)),
        (6, "index_page_header", st(&EMPTY)),
        (7, "dictionary_page_header", st(&DICTIONARY_PAGE)),
        (8, "data_page_header_v2", st(&DATA_PAGE_V2)),
    ],
};

// parquet.thrift's footer (as of the parquet crate in Cargo.lock, 59.3): FileMetaData and every
// struct inside it, field by field.
const TIME_UNIT: Layout = Layout {
    name: "TimeUnit",
    fields: &[
        (1, "MILLIS", st(&EMPTY)),
        (2, "MICROS", st(&EMPTY)),
        (3, "NANOS", st(&EMPTY)),
    ],
};
const DECIMAL_TYPE: Layout = Layout {
    name: "DecimalType",
    fields: &[(1, "scale", Shape::I32), (2, "precision", Shape::I32)],
};
const TIME_TYPE: Layout = Layout {
    name: "TimeType",
    fields: &[
        (1, "isAdjustedToUTC", Shape::Bool),
        (2, "unit", st(&TIME_UNIT)),
    ],
};
const TIMESTAMP_TYPE: Layout = Layout {
    name: "TimestampType",
    fields: TIME_TYPE.fields,
};
const INT_TYPE: Layout = Layout {
    name: "IntType",
    fields: &[(1, "bitWidth", Shape::Byte), (2, "isSigned", Shape::Bool)],
};
const VARIANT_TYPE: Layout = Layout {
    name: "VariantType",
    fields: &[(1, "specification_version", Shape::Byte)],
};
const GEOMETRY_TYPE: Layout = Layout {
    name: "GeometryType",
    fields: &[(1, "crs", Shape::Binary)],
};
const GEOGRAPHY_TYPE: Layout = Layout {
    name: "GeographyType",
    fields: &[(1, "crs", Shape::Binary), (2, "algorithm", Shape::I32)],
};
const LOGICAL_TYPE: Layout = Layout {
    name: "LogicalType",
    fields: &[
        (1, "STRING", st(&EMPTY)),
        (2, "MAP", st(&EMPTY)),
        (3, "LIST", st(&EMPTY)),
        (4, "ENUM", st(&EMPTY)),
        (5, "DECIMAL", st(&DECIMAL_TYPE)),
        (6, "DATE", st(&EMPTY)),
        (7, "TIME", st(&TIME_TYPE)),
        (8, "TIMESTAMP", st(&TIMESTAMP_TYPE)),
        (10, "INTEGER", st(&INT_TYPE)),
        (11, "UNKNOWN", st(&EMPTY)),
        (12, "JSON", st(&EMPTY)),
        (13, "BSON", st(&EMPTY)),
        (14, "UUID", st(&EMPTY)),
        (15, "FLOAT16", st(&EMPTY)),
        (16, "VARIANT", st(&VARIANT_TYPE)),
        (17, "GEOMETRY", st(&GEOMETRY_TYPE)),
        (18, "GEOGRAPHY", st(&GEOGRAPHY_TYPE)),
    ],
};
const SCHEMA_ELEMENT: Layout = Layout {
    name: "SchemaElement",
    fields: &[
        (1, "type", Shape::I32),
        (2, "type_length", Shape::I32),
        (3, "repetition_type", Shape::I32),
        (4, "name", Shape::Binary),
        (SCHEMA_NUM_CHILDREN, "num_children", Shape::I32),
        (6, "converted_type", Shape::I32),
        (7, "scale", Shape::I32),
        (8, "precision", Shape::I32),
        (9, "field_id", Shape::I32),
        (10, "logicalType", st(&LOGICAL_TYPE)),
    ],
};
const SCHEMA: Shape = st(&SCHEMA_ELEMENT);
const KEY_VALUE: Layout = Layout {
    name: "KeyValue",
    fields: &[(1, "key", Shape::Binary), (2, "value", Shape::Binary)],
};
const PAGE_ENCODING_STATS: Layout = Layout {
    name: "PageEncodingStats",
    fields: &[
        (1, "page_type", Shape::I32),
        (2, "encoding", Shape::I32),
        (3, "count", Shape::I32),
    ],
};
const SIZE_STATISTICS: Layout = Layout {
    name: "SizeStatistics",
    fields: &[
        (1, "unencoded_byte_array_data_bytes", Shape::I64),
        (2, "repetition_level_histogram", list_of(&Shape::I64)),
        (3, "definition_level_histogram", list_of(&Shape::I64)),
    ],
};
const BOUNDING_BOX: Layout = Layout {
    name: "BoundingBox",
    fields: &[
        (1, "xmin", Shape::Double),
        (2, "xmax", Shape::Double),
        (3, "ymin", Shape::Double),
        (4, "ymax", Shape::Double),
        (5, "zmin", Shape::Double),
        (6, "zmax", Shape::Double),
        (7, "mmin", Shape::Double),
        (8, "mmax", Shape::Double),
    ],
};
const GEOSPATIAL_STATISTICS: Layout = Layout {
    name: "GeospatialStatistics",
    fields: &[
        (1, "bbox", st(&BOUNDING_BOX)),
        (2, "geospatial_types", list_of(&Shape::I32)),
    ],
};
const COLUMN_META_DATA: Layout = Layout {
    name: "ColumnMetaData",
    fields: &[
        (1, "type", Shape::I32),
        (2, "encodings", list_of(&Shape::I32)),
        (3, "path_in_schema", list_of(&Shape::Binary)),
        (4, "codec", Shape::I32),
        (5, "num_values", Shape::I64),
        (6, "total_uncompressed_size", Shape::I64),
        (7, "total_compressed_size", Shape::I64),
        (8, "key_value_metadata", list_of(&st(&KEY_VALUE))),
        (9, "data_page_offset", Shape::I64),
        (10, "index_page_offset", Shape::I64),
        (11, "dictionary_page_offset", Shape::I64),
        (12, "statistics", st(&STATISTICS)),
        (13, "encoding_stats", list_of(&st(&PAGE_ENCODING_STATS))),
        (14, "bloom_filter_offset", Shape::I64),
        (15, "bloom_filter_length", Shape::I32),
        (16, "size_statistics", st(&SIZE_STATISTICS)),
        (17, "geospatial_statistics", st(&GEOSPATIAL_STATISTICS)),
    ],
};
const ENCRYPTION_WITH_COLUMN_KEY: Layout = Layout {
    name: "EncryptionWithColumnKey",
    fields: &[
        (1, "path_in_schema", list_of(&Shape::Binary)),
        (2, "key_metadata", Shape::Binary),
    ],
};
const COLUMN_CRYPTO_META_DATA: Layout = Layout {
    name: "ColumnCryptoMetaData",
    fields: &[
        (1, "ENCRYPTION_WITH_FOOTER_KEY", st(&EMPTY)),
        (
            2,
            "ENCRYPTION_WITH_COLUMN_KEY",
            st(&ENCRYPTION_WITH_COLUMN_KEY),
        ),
    ],
};
const COLUMN_CHUNK: Layout = Layout {
    name: "ColumnChunk",
    fields: &[
        (1, "file_path", Shape::Binary),
        (2, "file_offset", Shape::I64),
        (3, "meta_data", st(&COLUMN_META_DATA)),
        (4, "offset_index_offset", Shape::I64),
        (5, "offset_index_length", Shape::I32),
        (6, "column_index_offset", Shape::I64),
        (7, "column_index_length", Shape::I32),
        (8, "crypto_metadata", st(&COLUMN_CRYPTO_META_DATA)),
        (9, "encrypted_column_metadata", Shape::Binary),
    ],
};
const SORTING_COLUMN: Layout = Layout {
    name: "SortingColumn",
    fields: &[
        (1, "column_idx", Shape::I32),
        (2, "descending", Shape::Bool),
        (3, "nulls_first", Shape::Bool),
    ],
};
const ROW_GROUP: Layout = Layout {
    name: "RowGroup",
    fields: &[
        (1, "columns", list_of(&st(&COLUMN_CHUNK))),
        (2, "total_byte_size", Shape::I64),
        (3, "num_rows", Shape::I64),
        (4, "sorting_columns", list_of(&st(&SORTING_COLUMN))),
        (5, "file_offset", Shape::I64),
        (6, "total_compressed_size", Shape::I64),
        (7, "ordinal", Shape::I16),
    ],
};
const COLUMN_ORDER: Layout = Layout {
    name: "ColumnOrder",
    fields: &[(1, "TYPE_ORDER", st(&EMPTY))],
};
const AES_GCM: Layout = Layout {
    name: "AesGcmV1",
    fields: &[
        (1, "aad_prefix", Shape::Binary),
        (2, "aad_file_unique", Shape::Binary),
        (3, "supply_aad_prefix", Shape::Bool),
    ],
};
const AES_GCM_CTR: Layout = Layout {
    name: "AesGcmCtrV1",
    fields: AES_GCM.fields,
};
const ENCRYPTION_ALGORITHM: Layout = Layout {
    name: "EncryptionAlgorithm",
    fields: &[
        (1, "AES_GCM_V1", st(&AES_GCM)),
        (2, "AES_GCM_CTR_V1", st(&AES_GCM_CTR)),
    ],
};
const FILE_META_DATA: Layout = Layout {
    name: "FileMetaData",
    fields: &[
        (1, "version", Shape::I32),
        (FILE_SCHEMA, "schema", list_of(&SCHEMA)),
        (3, "num_rows", Shape::I64),
        (4, "row_groups", list_of(&st(&ROW_GROUP))),
        (5, "key_value_metadata", list_of(&st(&KEY_VALUE))),
        (6, "created_by", Shape::Binary),
        (7, "column_orders", list_of(&st(&COLUMN_ORDER))),
        (8, "encryption_algorithm", st(&ENCRYPTION_ALGORITHM)),
        (9, "footer_signing_key_metadata", Shape::Binary),
    ],
};

/// Reads the page header at byte `at` of `chunk`.
fn read_page_header(chunk: &[u8], at: usize) -> Result<PageSizes, String> {
    let mut r = Compact::new(chunk, at, "chunk");
    let mut compressed = None;
    let mut uncompressed = None;
    let mut last_id = 0i16;
    while let Some((id, kind)) = r.field_header(&mut last_id)? {
        match (id, kind) {
            (UNCOMPRESSED_PAGE_SIZE, I32) => uncompressed = Some(r.i32()?),
            (COMPRESSED_PAGE_SIZE, I32) => compressed = Some(r.i32()?),
            _ => r.field(&PAGE_HEADER, id, kind, 0)?,
        }
    }
    match (compressed, uncompressed) {
        (Some(compressed), Some(uncompressed)) => Ok(PageSizes {
            header_len: r.at - at,
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

/// A reader over `bytes` (a column chunk, or the footer), which errors name as `region`.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
    region: &'static str,
    /// Where the last field header read began, for messages.
    field_at: usize,
}

impl<'a> Compact<'a> {
    fn new(bytes: &'a [u8], at: usize, region: &'static str) -> Self {
        Self {
            bytes,
            at,
            region,
            field_at: at,
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("cut off by the end of the {}", self.region))?;
        self.at += 1;
        Ok(b)
    }

    fn left(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "a {n}-byte field at byte {} runs past the {}",
                self.at, self.region
            ));
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
        Err(format!(
            "varint longer than 10 bytes at byte {} of the {}",
            self.at, self.region
        ))
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
        self.field_at = self.at;
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

    fn too_deep(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "Thrift nested deeper than {MAX_DEPTH} at byte {} of the {}",
                self.at, self.region
            ));
        }
        Ok(())
    }

    /// Steps over one value of type `kind`. Every element takes at least one byte, so a huge
    /// claimed count ends at the region's end rather than looping long.
    fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        self.too_deep(depth)?;
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
                let at = self.at;
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let left = self.left();
                if n > left {
                    return Err(format!(
                        "a map at byte {at} of the {} claims {n} entries but only {left} bytes follow",
                        self.region
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
            other => Err(format!(
                "unknown Thrift type {other} at byte {} of the {}",
                self.at, self.region
            )),
        }
    }

    /// Steps over field `id` of a struct laid out as `of`, checking its wire type (and a list's
    /// element type) against the format. The parquet crate reads a known field as the format's
    /// type whatever the wire says, so a mismatch would make it read the rest of the struct
    /// differently from here, and such headers and footers made its skipper spin for seconds.
    /// A field the format does not define is stepped over.
    fn field(&mut self, of: &Layout, id: i16, kind: u8, depth: usize) -> Result<(), String> {
        let Some(&(_, name, shape)) = of.fields.iter().find(|(f, ..)| *f == id) else {
            return self.skip(kind, depth);
        };
        if !shape.matches(kind) {
            return Err(format!(
                "{} field {id} ({name}) at byte {} of the {} has Thrift type {kind} ({}), not the format's {}",
                of.name,
                self.field_at,
                self.region,
                type_name(kind),
                type_name(shape.code()),
            ));
        }
        match shape {
            Shape::Struct(inner) => self.fields(inner, depth + 1),
            Shape::List(&elem) => {
                for _ in 0..self.list_header(of, id, name, elem)? {
                    match elem {
                        Shape::Struct(inner) => self.fields(inner, depth + 1)?,
                        _ => self.skip_element(elem.code(), depth + 1)?,
                    }
                }
                Ok(())
            }
            _ => self.skip(kind, depth),
        }
    }

    /// Walks a struct laid out as `of`, field by field.
    fn fields(&mut self, of: &Layout, depth: usize) -> Result<(), String> {
        self.too_deep(depth)?;
        let mut last_id = 0i16;
        while let Some((id, kind)) = self.field_header(&mut last_id)? {
            self.field(of, id, kind, depth)?;
        }
        Ok(())
    }

    /// The element count of list field `id` (`name`) of `of`, whose field header was just read,
    /// after checking its element type against the format's `elem`. A lone 0 byte (an empty
    /// list some writers send without a type) passes.
    fn list_header(
        &mut self,
        of: &Layout,
        id: i16,
        name: &str,
        elem: Shape,
    ) -> Result<u64, String> {
        let (n, kind) = self.collection_header()?;
        if !elem.matches(kind) && (n, kind) != (0, 0) {
            return Err(format!(
                "{} field {id} ({name}) at byte {} of the {} is a list of Thrift type {kind} ({}), not of the format's {}",
                of.name,
                self.field_at,
                self.region,
                type_name(kind),
                type_name(elem.code()),
            ));
        }
        Ok(n)
    }

    /// A list's or set's element count and type. Every element takes at least a byte, so a
    /// count past the bytes left is corrupt.
    fn collection_header(&mut self) -> Result<(u64, u8), String> {
        let at = self.at;
        let h = self.byte()?;
        let n = match h >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        let left = self.left();
        if n > left {
            return Err(format!(
                "a list at byte {at} of the {} claims {n} elements but only {left} bytes follow",
                self.region
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
        assert!(
            err.contains("PageHeader field 8 (data_page_header_v2) at byte 8 of the chunk has Thrift type 5 (i32), not the format's struct"),
            "{err}"
        );
    }

    #[test]
    fn a_cut_header_is_refused() {
        let chunk = header(100, 40);
        let err = check_pages(&chunk[..4]).unwrap_err();
        assert!(err.contains("cut off"), "{err}");
    }

    /// A parquet file around `footer`: magic, the footer, its length, magic.
    fn file(footer: &[u8]) -> Vec<u8> {
        let mut f = b"PAR1".to_vec();
        f.extend(footer);
        f.extend((footer.len() as u32).to_le_bytes());
        f.extend(b"PAR1");
        f
    }

    /// version 1, a schema of one node named "m" (with `node` appended to it), no rows, and
    /// `row_groups` as the row-group list, then `tail` before the stop.
    fn footer(node: &[u8], row_groups: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut f = vec![0x15, 0x02, 0x19, 0x1c, 0x48, 0x01, b'm'];
        f.extend(node);
        f.extend([0x00, 0x16, 0x00, 0x19]);
        f.extend(row_groups);
        f.extend(tail);
        f.push(0x00);
        f
    }

    #[test]
    fn a_plain_footer_passes_and_fields_the_format_lacks_are_stepped_over() {
        assert_eq!(check_footer(&file(&footer(&[], &[0x0c], &[]))), Ok(()));
        // Field 20 of FileMetaData (binary "x"), and a LogicalType member 19 (an empty struct):
        // neither is in the format yet, so both are skipped.
        let later = footer(
            &[0x6c, 0x0c, 0x26, 0x00, 0x00, 0x00],
            &[0x0c],
            &[0x08, 0x28, 0x01, b'x'],
        );
        assert_eq!(check_footer(&file(&later)), Ok(()));
        // A lone 0 byte for an empty list, as some writers send it.
        assert_eq!(check_footer(&file(&footer(&[], &[0x00], &[]))), Ok(()));
    }

    #[test]
    fn a_footer_field_of_another_wire_type_is_refused_with_its_struct_and_offset() {
        // SchemaElement.logicalType = TIMESTAMP { isAdjustedToUTC: true, unit: i32 1 }: the
        // unit is a union (a struct) in the format.
        let node = [0x6c, 0x8c, 0x11, 0x15, 0x02, 0x00, 0x00];
        let err = check_footer(&file(&footer(&node, &[0x0c], &[]))).unwrap_err();
        assert_eq!(
            err,
            "TimestampType field 2 (unit) at byte 10 of the footer has Thrift type 5 (i32), not the format's struct"
        );
        // FileMetaData.num_rows (an i64) sent as a binary.
        let mut f = footer(&[], &[0x0c], &[]);
        f[8] = 0x18;
        let err = check_footer(&file(&f)).unwrap_err();
        assert!(
            err.starts_with("FileMetaData field 3 (num_rows) at byte 8 of the footer has Thrift type 8 (binary)"),
            "{err}"
        );
    }

    #[test]
    fn a_footer_list_of_another_element_type_is_refused() {
        // row_groups as a list of one i32.
        let err = check_footer(&file(&footer(&[], &[0x15, 0x02], &[]))).unwrap_err();
        assert_eq!(
            err,
            "FileMetaData field 4 (row_groups) at byte 10 of the footer is a list of Thrift type 5 (i32), not of the format's struct"
        );
    }

    /// A footer as parquet-rs writes it with most of what the format holds: logical types of
    /// every kind with members (TIME and TIMESTAMP units, DECIMAL, INTEGER), a nested LIST,
    /// key-value metadata, sorting columns, statistics, size statistics, page indexes, bloom
    /// filters and column orders. Every field must have the type the tables give it.
    #[test]
    fn footers_the_parquet_writer_writes_pass() {
        use std::sync::Arc;

        use parquet::column::writer::ColumnWriter;
        use parquet::data_type::{ByteArray, FixedLenByteArray};
        use parquet::file::metadata::{KeyValue, SortingColumn};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;

        let schema = parse_message_type(
            "message m {
                required int64 ts (TIMESTAMP(MILLIS,true));
                optional int64 t (TIME(NANOS,false));
                required int32 d (DATE);
                required int32 i (INTEGER(8,true));
                required int64 dec (DECIMAL(10,2));
                optional binary s (STRING);
                optional binary j (JSON);
                required fixed_len_byte_array (16) u (UUID);
                required fixed_len_byte_array (2) h (FLOAT16);
                optional group l (LIST) { repeated group list { optional binary e (ENUM); } }
                required double x;
                required boolean b;
            }",
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new("k".into(), "v".to_string())]))
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: true,
                nulls_first: false,
            }]))
            .set_bloom_filter_enabled(true)
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            SerializedFileWriter::new(&mut bytes, Arc::new(schema), Arc::new(props)).unwrap();
        let columns = writer.schema_descr().columns().to_vec();
        let mut group = writer.next_row_group().unwrap();
        for c in &columns {
            let mut col = group.next_column().unwrap().unwrap();
            // Two rows, each one value (one list element in `l`).
            let def = [c.max_def_level(); 2];
            let (def, rep) = (Some(&def[..]), Some(&[0i16, 0][..]));
            let flba = |n| vec![FixedLenByteArray::from(vec![1u8; n]); 2];
            match col.untyped() {
                ColumnWriter::BoolColumnWriter(w) => w.write_batch(&[true, false], def, rep),
                ColumnWriter::Int32ColumnWriter(w) => w.write_batch(&[1, 2], def, rep),
                ColumnWriter::Int64ColumnWriter(w) => w.write_batch(&[1, 2], def, rep),
                ColumnWriter::DoubleColumnWriter(w) => w.write_batch(&[1.0, 2.0], def, rep),
                ColumnWriter::ByteArrayColumnWriter(w) => {
                    let v = [ByteArray::from("1"), ByteArray::from("2")];
                    w.write_batch(&v, def, rep)
                }
                ColumnWriter::FixedLenByteArrayColumnWriter(w) => {
                    let n = if c.name() == "u" { 16 } else { 2 };
                    w.write_batch(&flba(n), def, rep)
                }
                _ => unreachable!("no such column"),
            }
            .unwrap();
            col.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
        assert_eq!(check_footer(&bytes), Ok(()));

        // The footer does hold what the walk is meant to have checked.
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let meta = SerializedFileReader::new(bytes::Bytes::from(bytes))
            .unwrap()
            .metadata()
            .clone();
        let file = meta.file_metadata();
        assert!(file.key_value_metadata().is_some() && file.column_orders().is_some());
        let group = meta.row_group(0);
        assert!(group.sorting_columns().is_some());
        let s = group.column(5);
        assert!(s.statistics().is_some() && s.unencoded_byte_array_data_bytes().is_some());
        assert!(s.bloom_filter_offset().is_some() && s.column_index_offset().is_some());
        assert!(s.page_encoding_stats_mask().is_some());
    }
}
