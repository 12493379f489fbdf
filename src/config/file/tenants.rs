//! The raw tenant classes of a route's limits: `overrides` and `exempt`.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{FileRate, Whole};

/// `limits.overrides[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOverride {
    pub(crate) name: Spanned<String>,
    #[serde(rename = "match")]
    pub(crate) matches: Spanned<FileMatch>,
    pub(crate) rate: Option<Spanned<FileRate>>,
    pub(crate) concurrency: Option<Spanned<Whole>>,
}

/// `{claim: C, value: V}` or `{header: H, value: V}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMatch {
    pub(crate) claim: Option<Spanned<String>>,
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) value: Spanned<String>,
}
