//! A table's `export` settings: the formats offered, rows per chunk, how chunks are read
//! (`via`) and how many are fetched at once (`parallel`).

use std::num::{NonZeroU32, NonZeroUsize};

use super::Problems;
use crate::config::ExportFormat;
use crate::config::defaults::{DEFAULT_CHUNK_ROWS, DEFAULT_EXPORT_PARALLEL};
use crate::config::file::FileTable;
use crate::table::config::ExportVia;

/// `export`: its formats, rows per chunk, how chunks are read, and how many at once.
pub(super) fn export(
    p: &mut Problems,
    t: &FileTable,
) -> (Vec<ExportFormat>, NonZeroU32, ExportVia, NonZeroUsize) {
    let all = vec![ExportFormat::Csv, ExportFormat::Ndjson];
    let Some(e) = &t.export else {
        return (
            all,
            DEFAULT_CHUNK_ROWS,
            ExportVia::Copy,
            DEFAULT_EXPORT_PARALLEL,
        );
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
    (formats, chunk_rows, via, parallel)
}
