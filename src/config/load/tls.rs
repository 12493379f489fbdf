//! TLS settings read from the file: the listener's `tls`, an upstream's and Redis's `tls`. The files
//! they name are read now, so `check` and a refused reload say which file is wrong and why.

use std::path::Path;

use http::Uri;
use rustls::pki_types::ServerName;
use serde_saphyr::Spanned;

use super::Problems;
use crate::config::RedisTls;
use crate::config::file::{FileRedisTls, FileTls, FileUpstreamTls};
use crate::tls::{Identity, ListenerTls, Roots, UpstreamTls};

/// The listener's `tls`, its files read and checked.
pub(super) fn listener(p: &mut Problems, f: &Spanned<FileTls>) -> Option<ListenerTls> {
    let f = &f.value;
    let identity = identity(p, &f.cert_file, &f.key_file);
    let client_ca = match &f.client_ca_file {
        Some(file) => Some(roots(
            p,
            file,
            "client_ca_file",
            "the CA that signs your clients' certificates",
        )?),
        None => None,
    };
    let tls = ListenerTls {
        identity: identity?,
        client_ca,
    };
    // What rustls itself would refuse, refused now rather than at start.
    if let Err(error) = crate::tls::server_config(&tls, None) {
        p.invalid(
            &f.cert_file,
            "cert_file",
            format!("cannot serve TLS ({error}): give a certificate and key rustls accepts (RSA, ECDSA P-256/P-384 or Ed25519)"),
        );
        return None;
    }
    Some(tls)
}

/// An upstream's `tls`: `Some` for an `https://` URL (with or without a block), `None` for
/// `http://` (a block there is a problem).
pub(super) fn upstream(
    p: &mut Problems,
    url: &Uri,
    f: Option<&Spanned<FileUpstreamTls>>,
) -> Option<UpstreamTls> {
    let https = url.scheme_str() == Some("https");
    let Some(block) = f else {
        return https.then(UpstreamTls::default);
    };
    if !https {
        p.invalid(
            block,
            "tls",
            "is set for an http:// url: write the url with https://, or remove tls".to_owned(),
        );
        return None;
    }
    let f = &block.value;
    let roots = f.ca_file.as_ref().and_then(|file| {
        roots(
            p,
            file,
            "ca_file",
            "the CA that signed the backend's certificate",
        )
    });
    let identity = client_identity(p, f.cert_file.as_ref(), f.key_file.as_ref());
    let server_name = f.server_name.as_ref().and_then(|name| {
        match ServerName::try_from(name.value.trim().to_owned()) {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                p.invalid(
                    name,
                    "server_name",
                    format!("is {:?}, not a DNS name or IP address: write the name the backend's certificate is issued for", name.value),
                );
                None
            }
        }
    });
    Some(UpstreamTls {
        roots,
        identity,
        server_name,
    })
}

/// Redis's `tls`, for `rediss://` URLs (`tls_urls`): its files checked as an upstream's are,
/// and their PEM text kept for the Redis client. `Some` for `rediss://` with or without a
/// block, `None` for `redis://` (a block there is a problem).
pub(super) fn redis(
    p: &mut Problems,
    tls_urls: bool,
    f: Option<&Spanned<FileRedisTls>>,
) -> Option<RedisTls> {
    let Some(block) = f else {
        return tls_urls.then(RedisTls::default);
    };
    if !tls_urls {
        p.invalid(
            block,
            "tls",
            "is set for redis:// urls: write them with rediss://, or remove tls".to_owned(),
        );
        return None;
    }
    let f = &block.value;
    let ca = f
        .ca_file
        .as_ref()
        .and_then(|file| roots(p, file, "ca_file", "the CA that signed Redis's certificate"));
    let client = client_identity(p, f.cert_file.as_ref(), f.key_file.as_ref());
    Some(RedisTls { ca, client })
}

/// An optional client certificate: both files, or neither.
fn client_identity(
    p: &mut Problems,
    cert: Option<&Spanned<String>>,
    key: Option<&Spanned<String>>,
) -> Option<Identity> {
    match (cert, key) {
        (Some(cert), Some(key)) => identity(p, cert, key),
        (Some(cert), None) => {
            p.invalid(
                cert,
                "cert_file",
                "is set without key_file: give both, or neither".to_owned(),
            );
            None
        }
        (None, Some(key)) => {
            p.invalid(
                key,
                "key_file",
                "is set without cert_file: give both, or neither".to_owned(),
            );
            None
        }
        (None, None) => None,
    }
}

/// A certificate and its key, or a problem located at the file that is wrong. A key every
/// user of the machine may read is warned about.
fn identity(p: &mut Problems, cert: &Spanned<String>, key: &Spanned<String>) -> Option<Identity> {
    if let Some(mode) = open_to_all(Path::new(&key.value)) {
        p.warn(
            key,
            "key_file",
            format!(
                "is {:?}, which every user of this machine may read or change (mode {mode:04o}): \
                 `chmod 0640` it (its group pagegate's), or in Kubernetes give the Secret's \
                 volume `defaultMode: 0440` and the pod an `fsGroup`",
                key.value
            ),
        );
    }
    Identity::read(Path::new(&cert.value), Path::new(&key.value))
        .map_err(|error| {
            let reason = format!(
                "is {:?}, which {}",
                error.path.display().to_string(),
                error.reason
            );
            if error.in_key {
                p.invalid(key, "key_file", reason);
            } else {
                p.invalid(cert, "cert_file", reason);
            }
        })
        .ok()
}

/// The permission bits of `file` (followed through links, as Kubernetes mounts a Secret)
/// when others than its owner and group may read or write it.
fn open_to_all(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o7777;
    (mode & 0o006 != 0).then_some(mode)
}

/// A CA bundle, or a problem located at its key.
fn roots(p: &mut Problems, file: &Spanned<String>, key: &'static str, what: &str) -> Option<Roots> {
    Roots::read(Path::new(&file.value))
        .map_err(|error| {
            let reason = format!(
                "is {:?}, which {} (the PEM file of {what})",
                file.value, error.reason
            );
            p.invalid(file, key, reason);
        })
        .ok()
}
