//! `postgres.NAME` → [`PostgresConfig`]: the URLs (with `${NAME}` placeholders), TLS roots,
//! the pool and statement settings, every problem located.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::PostgresConfig;
use crate::config::defaults::{
    DEFAULT_PG_APPLICATION_NAME, DEFAULT_PG_CONNECT_TIMEOUT, DEFAULT_PG_POOL_SIZE,
    DEFAULT_STATEMENT_TIMEOUT,
};
use crate::config::file::FilePostgres;
use crate::config::load::table::plain_name;
use crate::table::config::{Statements, TlsRoots, fill_placeholders, tokio_postgres_url};

/// Checks the shape of a PostgreSQL URL (`${NAME}` standing for a value), giving whether it
/// asks for TLS.
fn url(p: &mut Problems, at: &Spanned<String>, key: &'static str) -> bool {
    let url = at.value.trim();
    // `${NAME}` stands in for a secret; check the shape with a placeholder in its place.
    let (shape, whole) = fill_placeholders(url, |name| plain_name(name).then(|| "x".to_owned()));
    if !whole {
        p.invalid(
            at,
            key,
            "has a `${` without a name and a `}`: write ${NAME} for an environment variable"
                .to_owned(),
        );
    }
    let parsed = tokio_postgres_url(&shape).parse::<tokio_postgres::Config>();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) || parsed.is_err() {
        p.invalid(at, key, "is not a PostgreSQL URL: write postgres://USER:${PASSWORD_VARIABLE}@HOST:5432/DATABASE (sslmode: disable, require, verify-ca or verify-full)".to_owned());
        return false;
    }
    if url.contains("sslmode=prefer") {
        p.invalid(at, key, "asks for sslmode=prefer, which would fall back to plaintext unseen: write sslmode=require (TLS, the certificate verified) or remove sslmode (plaintext)".to_owned());
    }
    parsed.is_ok_and(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
}

/// The certificates of a PEM file and the hash of its bytes, or a located problem.
fn certificates(p: &mut Problems, at: &Spanned<String>) -> Option<(Vec<Vec<u8>>, [u8; 32])> {
    use rustls_pki_types::pem::PemObject as _;
    let path = std::path::Path::new(&at.value);
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(error) => {
            p.invalid(at, "tls_ca_file", format!("cannot be read ({error}): give the path of the PEM file of the CA that signed the database's certificate"));
            return None;
        }
    };
    let certificates: Result<Vec<_>, _> =
        rustls_pki_types::CertificateDer::pem_slice_iter(&pem).collect();
    match certificates {
        Ok(list) if !list.is_empty() => Some((
            list.into_iter().map(|c| c.to_vec()).collect(),
            crate::tls::fingerprint(&[&pem]),
        )),
        _ => {
            p.invalid(
                at,
                "tls_ca_file",
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate"
                    .to_owned(),
            );
            None
        }
    }
}

/// `replica_url`, asking for TLS as `url` does, and the roots TLS verifies against.
fn tls(p: &mut Problems, f: &FilePostgres) -> (Option<String>, Option<TlsRoots>) {
    let tls = url(p, &f.url, "url");
    let replica_url = f.replica_url.as_ref().map(|r| {
        if url(p, r, "replica_url") != tls {
            p.invalid(
                r,
                "replica_url",
                "asks for TLS differently from `url`: give both the same sslmode".to_owned(),
            );
        }
        r.value.trim().to_owned()
    });
    let roots = match (&f.tls_ca_file, tls) {
        (None, false) => None,
        (None, true) => Some(TlsRoots::System),
        (Some(file), false) => {
            p.invalid(file, "tls_ca_file", "is set but the url asks for no TLS: add ?sslmode=verify-full to the url, or remove tls_ca_file".to_owned());
            None
        }
        (Some(file), true) => {
            certificates(p, file).map(|(certificates, fingerprint)| TlsRoots::File {
                path: file.value.clone().into(),
                certificates,
                fingerprint,
            })
        }
    };
    (replica_url, roots)
}

/// One database (`postgres.NAME`): its URLs, TLS, pool and statement settings.
pub(super) fn postgres(p: &mut Problems, at: &Spanned<FilePostgres>) -> PostgresConfig {
    let f = &at.value;
    let (replica_url, tls) = tls(p, f);
    let statements = p.choice(
        f.prepared_statements.as_ref(),
        "prepared_statements",
        [
            ("cached", Statements::Cached),
            ("unnamed", Statements::Unnamed),
        ],
        " (behind PgBouncer in transaction mode)",
    );
    let url = f.url.value.trim();
    let pool_size = p.count(
        f.pool_size.as_ref(),
        "pool_size",
        1..=1000,
        "keep it between 1 and 1000 connections",
        DEFAULT_PG_POOL_SIZE,
    );
    let application_name =
        f.application_name
            .as_ref()
            .map_or(DEFAULT_PG_APPLICATION_NAME.to_owned(), |a| {
                if a.value.is_empty()
                    || a.value.len() > 63
                    || !a.value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                {
                    p.invalid(
                        a,
                        "application_name",
                        "must be 1 to 63 printable ASCII characters".to_owned(),
                    );
                }
                a.value.clone()
            });
    PostgresConfig {
        url: url.to_owned(),
        pool_size,
        connect_timeout: p.duration(
            f.connect_timeout.as_ref(),
            "connect_timeout",
            DEFAULT_PG_CONNECT_TIMEOUT,
        ),
        statement_timeout: statement_timeout(p, f.statement_timeout.as_ref()),
        application_name,
        read_only: f.read_only.unwrap_or(true),
        replica_url,
        tls,
        statements,
    }
}

/// PostgreSQL's `statement_timeout` in whole milliseconds, which it keeps in a 32-bit integer:
/// less than a millisecond would be sent as 0, no timeout at all, and more than 2³¹−1 ms is
/// refused by the server at every connection.
const STATEMENT_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_millis(i32::MAX as u64);

/// `statement_timeout`, within what PostgreSQL can hold ([`STATEMENT_TIMEOUT_RANGE`]).
fn statement_timeout(p: &mut Problems, value: Option<&Spanned<String>>) -> Duration {
    let timeout = p.duration(value, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT);
    match value {
        Some(at) if !STATEMENT_TIMEOUT_RANGE.contains(&timeout) => {
            let reason = format!(
                "is {}: keep it between 1ms and 596h (PostgreSQL holds it in whole \
                 milliseconds, at most 2^31-1)",
                at.value.trim()
            );
            p.invalid(at, "statement_timeout", reason);
            DEFAULT_STATEMENT_TIMEOUT
        }
        _ => timeout,
    }
}
