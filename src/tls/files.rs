//! Certificates, keys and CA bundles read from PEM files. Each keeps the paths it came from
//! (a reload reads them again) and a fingerprint of the bytes read, so two reads compare equal
//! exactly when the files did not change. The errors say which file and what to put in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A certificate chain and its private key (`cert_file`, `key_file`).
#[derive(Clone)]
pub(crate) struct Identity {
    /// The PEM chain: the certificate first, then its intermediates.
    pub(crate) cert_file: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_file: PathBuf,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: Arc<PrivateKeyDer<'static>>,
    /// When the first certificate expires, in seconds since the Unix epoch.
    pub(crate) not_after: u64,
    /// When it becomes valid, in seconds since the Unix epoch.
    pub(crate) not_before: u64,
    /// The certificate after the first that expires first, if it expires before the first
    /// one: its place in the file (2 for the first intermediate) and its `notAfter`.
    issuer_expiry: Option<(usize, u64)>,
    /// The PEM text both were read from, for clients that take PEM (Redis): the bytes checked
    /// here, not a second read that a rotation could tear.
    pub(crate) pem: Arc<(Vec<u8>, Vec<u8>)>,
    fingerprint: [u8; 32],
}

/// CA certificates to verify peers against (`ca_file`, `client_ca_file`).
#[derive(Clone)]
pub(crate) struct Roots {
    pub(crate) file: PathBuf,
    pub(crate) certs: Vec<CertificateDer<'static>>,
    /// The PEM text the certificates were read from.
    pub(crate) pem: Arc<Vec<u8>>,
    fingerprint: [u8; 32],
}

/// Which file of a TLS setting is wrong, and why: `reason` reads after "the file".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileError {
    /// The key file (not the certificate or CA file) is wrong.
    pub(crate) in_key: bool,
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

impl Identity {
    /// Reads the pair and checks that the key is the certificate's.
    pub(crate) fn read(cert_file: &Path, key_file: &Path) -> Result<Self, FileError> {
        let cert_pem = read(cert_file, false)?;
        let key_pem = read(key_file, true)?;
        let chain = certificates(cert_file, &cert_pem)?;
        let key_error = |reason: String| FileError {
            in_key: true,
            path: key_file.to_owned(),
            reason,
        };
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            let encrypted = key_pem.windows(9).any(|w| w == b"ENCRYPTED");
            key_error(if encrypted {
                "holds an encrypted private key, which pagegate cannot unlock: decrypt it (openssl pkey -in KEY -out PLAIN)".to_owned()
            } else {
                "holds no PEM private key: give the file with the certificate's key (-----BEGIN PRIVATE KEY-----)".to_owned()
            })
        })?;
        pair(cert_file, &chain, key.clone_key()).map_err(|(in_key, reason)| FileError {
            in_key,
            path: if in_key { key_file } else { cert_file }.to_owned(),
            reason,
        })?;
        let (not_before, not_after) = validity(&chain[0]).ok_or_else(|| FileError {
            in_key: false,
            path: cert_file.to_owned(),
            reason: "does not start with an X.509 certificate pagegate can read".to_owned(),
        })?;
        // Unreadable intermediates are the client's to judge, as before: not warned about.
        let issuer_expiry = (chain.iter().enumerate().skip(1))
            .filter_map(|(i, cert)| Some((i + 1, validity(cert)?.1)))
            .filter(|&(_, expires)| expires < not_after)
            .min_by_key(|&(_, expires)| expires);
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            chain,
            key: Arc::new(key),
            not_after,
            not_before,
            issuer_expiry,
            fingerprint: fingerprint(&[&cert_pem, &key_pem]),
            pem: Arc::new((cert_pem, key_pem)),
        })
    }

    /// When the certificate expires, as RFC 3339 (`2030-01-01T00:00:00Z`).
    pub(crate) fn expires(&self) -> humantime::Rfc3339Timestamp {
        date(self.not_after)
    }

    /// Why the certificate cannot be presented now (expired, or not yet valid), if so.
    pub(crate) fn invalid_now(&self) -> Option<String> {
        let now = now();
        if now >= self.not_after {
            Some(format!("expired {}", date(self.not_after)))
        } else if now < self.not_before {
            Some(format!("is not valid before {}", date(self.not_before)))
        } else {
            None
        }
    }

    /// A certificate further down the file that expires before the first one, said as a
    /// warning: clients that build their path through it fail from its date. Not refused:
    /// the file may carry a cross-signed or root certificate that clients no longer use (as
    /// when AddTrust's root expired in 2020 while the chains that named it still worked).
    pub(crate) fn chain_warning(&self) -> Option<String> {
        let (place, expires) = self.issuer_expiry?;
        let count = self.chain.len();
        let tense = if now() >= expires {
            "expired"
        } else {
            "expires"
        };
        Some(format!(
            "certificate {place} of {count} in the file {tense} {}, before the first one ({}): clients that verify through it fail from then; put the chain your CA issues now in the file, or remove that certificate if clients do not need it (an old cross-sign or root)",
            date(expires),
            date(self.not_after)
        ))
    }

    /// Whether the files now differ from what was read (or one cannot be read now).
    pub(crate) fn changed(&self) -> bool {
        let now = std::fs::read(&self.cert_file)
            .and_then(|cert| Ok(fingerprint(&[&cert, &std::fs::read(&self.key_file)?])));
        now.ok() != Some(self.fingerprint)
    }
}

impl Roots {
    /// Whether the file now differs from what was read (or cannot be read now).
    pub(crate) fn changed(&self) -> bool {
        file_changed(&self.file, &self.fingerprint)
    }

    /// Reads a PEM bundle of one or more CA certificates.
    pub(crate) fn read(file: &Path) -> Result<Self, FileError> {
        let pem = read(file, false)?;
        let certs = certificates(file, &pem)?;
        let mut store = rustls::RootCertStore::empty();
        let (_, refused) = store.add_parsable_certificates(certs.iter().cloned());
        if refused > 0 {
            return Err(FileError {
                in_key: false,
                path: file.to_owned(),
                reason: format!(
                    "holds {refused} certificate(s) that cannot be read: give a PEM bundle of CA certificates"
                ),
            });
        }
        Ok(Self {
            file: file.to_owned(),
            certs,
            fingerprint: fingerprint(&[&pem]),
            pem: Arc::new(pem),
        })
    }

    /// The certificates as a root store.
    pub(crate) fn store(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(self.certs.iter().cloned());
        store
    }
}

/// Checks that `key` can sign and is the key of the chain's first certificate; `Err` says
/// whether the key (`true`) or the certificate is wrong, and why.
fn pair(
    cert_file: &Path,
    chain: &[CertificateDer<'static>],
    key: PrivateKeyDer<'static>,
) -> Result<(), (bool, String)> {
    use rustls::{Error, InconsistentKeys};
    let signer = super::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| (true, format!("holds a key pagegate cannot sign with ({e}): give an RSA, ECDSA P-256/P-384 or Ed25519 key")))?;
    let matches = |cert: &CertificateDer<'static>| {
        rustls::sign::CertifiedKey::new(vec![cert.clone()], Arc::clone(&signer)).keys_match()
    };
    match matches(&chain[0]) {
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            if chain[1..].iter().any(|cert| matches(cert).is_ok()) {
                Err((false, "starts with an intermediate: put the server's own certificate first, then its intermediates".to_owned()))
            } else {
                Err((
                    true,
                    format!(
                        "is not the key of {}: give the key the certificate was issued for",
                        cert_file.display()
                    ),
                ))
            }
        }
        Err(error) => Err((
            false,
            format!("holds a certificate pagegate cannot read ({error})"),
        )),
    }
}

/// The file's bytes, or why it cannot be read.
fn read(path: &Path, in_key: bool) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|error| FileError {
        in_key,
        path: path.to_owned(),
        reason: format!("cannot be read ({error})"),
    })
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let reason = match certs {
        Ok(certs) if !certs.is_empty() => return Ok(certs),
        Ok(_) => "holds no PEM certificate: give a file with -----BEGIN CERTIFICATE----- blocks"
            .to_owned(),
        Err(error) => format!(
            "is not valid PEM ({error}): give a file with -----BEGIN CERTIFICATE----- blocks"
        ),
    };
    Err(FileError {
        in_key: false,
        path: path.to_owned(),
        reason,
    })
}

/// The certificate's validity: not before, not after, in seconds since the Unix epoch.
fn validity(cert: &CertificateDer<'_>) -> Option<(u64, u64)> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let validity = cert.tbs_certificate.validity;
    Some((
        validity.not_before.to_unix_duration().as_secs(),
        validity.not_after.to_unix_duration().as_secs(),
    ))
}

/// Seconds since the Unix epoch, now (0 on a clock before it).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Seconds since the Unix epoch as an RFC 3339 date.
fn date(at: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
}

/// Whether the file at `path` now differs from what was read as `read` ([`fingerprint`] of
/// its bytes), or cannot be read now.
pub(crate) fn file_changed(path: &Path, read: &[u8; 32]) -> bool {
    std::fs::read(path).map(|pem| fingerprint(&[&pem])).ok() != Some(*read)
}

pub(crate) fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

// Equal when read from the same paths with the same bytes; the key material stays out of
// `Debug`.

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file
            && self.key_file == other.key_file
            && self.fingerprint == other.fingerprint
    }
}

impl Eq for Identity {}

impl PartialEq for Roots {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.fingerprint == other.fingerprint
    }
}

impl Eq for Roots {}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots")
            .field("file", &self.file)
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}
