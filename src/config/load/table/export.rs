//! A table's `export` settings: the formats offered, rows and bytes per chunk, how chunks are
//! read (`via`) and how many are fetched at once (`parallel`).

use std::num::{NonZeroU32, NonZeroUsize};

use super::Problems;
use crate::config::ExportFormat;
use crate::config::defaults::{DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, DEFAULT_EXPORT_PARALLEL};
use crate::config::file::FileTable;
use crate::table::config::ExportVia;

/// A table's `export` settings, read.
pub(super) struct Export {
    pub(super) formats: Vec<ExportFormat>,
    pub(super) chunk_rows: NonZeroU32,
    pub(super) chunk_bytes: u64,
    pub(super) via: ExportVia,
    pub(super) parallel: NonZeroUsize,
}

/// `export`: its formats, rows and bytes per chunk, how chunks are read, and how many at once.
pub(super) fn export(p: &mut Problems, t: &FileTable) -> Export {
    let all = vec![ExportFormat::Csv, ExportFormat::Ndjson];
    let Some(e) = &t.export else {
        return Export {
            formats: all,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            via: ExportVia::Copy,
            parallel: DEFAULT_EXPORT_PARALLEL,
        };
    };
    let formats = match &e.value.formats {
        None => all,
        Some(list) => list
            .value
            .iter()
            .filter_map(|f| match f.value.as_str() {
                "csv" => Some(ExportFormat::Csv),
                "ndjson" => Some(ExportFormat::Ndjson),
                other => {
                    p.invalid(
                        f,
                        "formats",
                        format!(
                            "has {other:?}: write csv or ndjson (an empty list turns exports off)"
                        ),
                    );
                    None
                }
            })
            .collect(),
    };
    let fix = "keep it between 100 and 1000000 rows";
    let chunk_rows = e
        .value
        .chunk_rows
        .as_ref()
        .and_then(|n| p.whole(n, "chunk_rows", 100..=1_000_000, fix))
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(DEFAULT_CHUNK_ROWS);
    let chunk_bytes = p.size(
        e.value.chunk_bytes.as_ref(),
        "chunk_bytes",
        DEFAULT_CHUNK_BYTES,
        (64 * 1024, 1 << 30),
        "each of `parallel` chunks is held whole: ",
    );
    let via = p.choice(
        e.value.via.as_ref(),
        "via",
        [("copy", ExportVia::Copy), ("queries", ExportVia::Queries)],
        "",
    );
    let parallel = p.count(
        e.value.parallel.as_ref(),
        "parallel",
        1..=16,
        "keep it between 1 and 16 chunks fetched at once (1: one after the other)",
        DEFAULT_EXPORT_PARALLEL,
    );
    Export {
        formats,
        chunk_rows,
        chunk_bytes,
        via,
        parallel,
    }
}
