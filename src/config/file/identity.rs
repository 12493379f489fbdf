//! The raw `identities` entries, and the keys that name one (`key: {jwt, claim}`).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

use super::{FileLimitKey, FileUpstreamTls};

/// One verified identity (`identities.NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileIdentity {
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) issuer: Option<Spanned<OneOrMany>>,
    pub(crate) audience: Option<Spanned<OneOrMany>>,
    pub(crate) leeway: Option<Spanned<String>>,
    pub(crate) jwks_file: Option<Spanned<String>>,
    pub(crate) jwks_url: Option<Spanned<String>>,
    pub(crate) public_key_file: Option<Spanned<String>>,
    pub(crate) secret_env: Option<Spanned<String>>,
    pub(crate) jwks_refresh: Option<Spanned<String>>,
    pub(crate) jwks_min_refresh: Option<Spanned<String>>,
    pub(crate) tls: Option<Spanned<FileUpstreamTls>>,
    pub(crate) token_cache: Option<Spanned<super::Whole>>,
    pub(crate) refused_per_address: Option<Spanned<super::FileRate>>,
}

/// One value or a list of them (`issuer`, `audience`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn values(&self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one.clone()],
            Self::Many(many) => many.clone(),
        }
    }
}

/// `limits.key`: a name (`client`, `header`, `header_and_client`) or a verified claim.
#[derive(Debug)]
pub(crate) enum FileKeySpec {
    Named(FileLimitKey),
    Claim(Box<FileClaimKey>),
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers the value and loses the
/// positions of the claim key's fields (errors would say line 0), and says only "did not
/// match any variant" for a misspelt name.
impl<'de> Deserialize<'de> for FileKeySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = FileKeySpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`client`, `header`, `header_and_client`, or `{jwt: NAME, claim: CLAIM}`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        FileLimitKey::deserialize(de::value::StrDeserializer::<E>::new(v)).map(FileKeySpec::Named)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let key = FileClaimKey::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(FileKeySpec::Claim(Box::new(key)))
    }
}

/// `key: {jwt: NAME, claim: C, anonymous: client}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileClaimKey {
    pub(crate) jwt: Spanned<String>,
    pub(crate) claim: Spanned<String>,
    pub(crate) anonymous: Option<Spanned<FileAnonymous>>,
}

/// What a request without a good token is keyed by.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileAnonymous {
    Client,
}
