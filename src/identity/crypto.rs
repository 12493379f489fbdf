//! jsonwebtoken's cryptography over ring, the one crypto library the binary carries (rustls's
//! provider). Written here because jsonwebtoken ships two backends and neither fits: aws-lc-rs
//! would be a second provider and a C build (the binary carries ring alone: `.ci/run` checks),
//! and RustCrypto's brings the `rsa` crate, whose Marvin timing attack (RUSTSEC-2023-0071) has
//! no fix. Verification only: pagegate never signs a token, so its signers refuse.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as ring_sig;

/// The provider: ring's verifiers for every algorithm jsonwebtoken names.
pub(crate) static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: refuse_signing,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(unsupported()),
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_, _| Err(unsupported()),
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest: digest,
    },
};

/// Installs [`PROVIDER`] for the process (once; a second call finds it there). `Err` when
/// another provider was installed first, which would verify with code this binary did not
/// choose.
pub(crate) fn install() -> Result<(), &'static str> {
    let _ = PROVIDER.install_default();
    match CryptoProvider::try_get_default() {
        Some(installed) if std::ptr::eq(installed, &PROVIDER) => Ok(()),
        _ => Err("another JWT crypto provider is installed"),
    }
}

fn unsupported() -> Error {
    ErrorKind::Provider("pagegate only verifies tokens".to_owned()).into()
}

fn refuse_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(unsupported())
}

// The signature is jsonwebtoken's `KeyUtils::compute_digest`.
#[allow(clippy::needless_pass_by_value)]
fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

/// One algorithm with one key.
struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    // A key is only ever used with its own family: an RSA public key is never an HMAC secret.
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(Verifier {
        algorithm: *algorithm,
        key: key.clone(),
    }))
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        if verified(self.algorithm, &self.key, message, sig) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

/// Whether `sig` is `algorithm`'s signature of `message` by `key`.
fn verified(algorithm: Algorithm, key: &DecodingKey, message: &[u8], sig: &[u8]) -> bool {
    use Algorithm as A;
    let hmac = |which| {
        let secret = key.try_get_as_bytes().unwrap_or_default();
        ring::hmac::verify(&ring::hmac::Key::new(which, secret), message, sig).is_ok()
    };
    let asymmetric: &'static dyn ring_sig::VerificationAlgorithm = match algorithm {
        A::HS256 => return hmac(ring::hmac::HMAC_SHA256),
        A::HS384 => return hmac(ring::hmac::HMAC_SHA384),
        A::HS512 => return hmac(ring::hmac::HMAC_SHA512),
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => {
            return rsa(algorithm, key, message, sig);
        }
        A::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
        A::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
        A::EdDSA => &ring_sig::ED25519,
        // An algorithm a later jsonwebtoken adds is refused until this names it.
        _ => return false,
    };
    let bytes = key.try_get_as_bytes().unwrap_or_default();
    ring_sig::UnparsedPublicKey::new(asymmetric, bytes)
        .verify(message, sig)
        .is_ok()
}

/// RSA, from a PEM's DER or a JWK's modulus and exponent; keys of 2048 to 8192 bits only.
fn rsa(algorithm: Algorithm, key: &DecodingKey, message: &[u8], sig: &[u8]) -> bool {
    use Algorithm as A;
    let params = match algorithm {
        A::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        A::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        A::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        A::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        A::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        A::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return false,
    };
    match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => ring_sig::UnparsedPublicKey::new(params, der)
            .verify(message, sig)
            .is_ok(),
        // ring wants both without leading zero bytes; JWKS writers often keep one.
        DecodingKeyKind::RsaModulusExponent { n, e } => ring_sig::RsaPublicKeyComponents {
            n: strip_zeros(n),
            e: strip_zeros(e),
        }
        .verify(params, message, sig)
        .is_ok(),
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}
