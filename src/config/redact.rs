//! Passwords out of URLs shown to people: `GET /config` and config error messages, which may
//! reach logs (a refused reload) and terminals.

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// `scheme://user:password@host…?password=…` with the passwords redacted; a URL without
/// one unchanged. A key=value connection string that names a password is redacted whole.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.to_ascii_lowercase().contains("password") {
            REDACTED.to_owned()
        } else {
            url.to_owned()
        };
    };
    // Clients disagree on where the userinfo ends: tokio-postgres takes the first `@`, the url
    // crate the last one before the path, and a password may hold `/`, `?` or `@`. So all up
    // to the last `@` is taken as userinfo: at worst too much is redacted, never too little.
    let mut out = format!("{scheme}://");
    let tail = match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            match info.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}")),
                None => out.push_str(info),
            }
            &rest[at..]
        }
        None => rest,
    };
    let Some((base, query)) = tail.split_once('?') else {
        out.push_str(tail);
        return out;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    out.push_str(base);
    out.push('?');
    out.push_str(&pairs.join("&"));
    out
}
