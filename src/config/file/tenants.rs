//! The raw tenant classes and quota of a route's limits: `overrides`, `exempt`, `quota`.

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

/// `limits.quota`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileQuota {
    pub(crate) rows: Option<Spanned<Whole>>,
    pub(crate) bytes: Option<Spanned<String>>,
    pub(crate) per: Spanned<String>,
    pub(crate) on_exceed: Option<Spanned<FileOnExceed>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileOnExceed {
    Finish,
    Cut,
}
