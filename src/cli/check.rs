//! `pagegate check`: the file validated as `run` would read it (without the secrets unless
//! `--strict-env`), one line per route in the words of the YAML, and the table routes checked
//! against their databases when those answer.

use std::path::Path;
use std::process::ExitCode;

use super::block_on;
use crate::config::Config;

/// `pagegate check`: exit 0 with a summary per route, or 1 with `FILE:LINE:COLUMN: …` lines.
/// With `strict_env`, an unset variable that `run` needs is a failure too; `listen` replaces
/// the file's, as it does for `run`.
pub(crate) fn check(
    path: &Path,
    strict_env: bool,
    listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let loaded = if strict_env {
        Config::load(path)
    } else {
        Config::check(path)
    };
    match loaded {
        Ok(mut config) => {
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Err(error) = trust_store(&config) {
                eprintln!("{}: {error}", path.display());
                return ExitCode::FAILURE;
            }
            // No "ok" before a certificate that cannot be presented now.
            let (tls, valid) = tls_summary(&config);
            if valid {
                println!(
                    "{}: ok, listening on {}, {} route(s)",
                    path.display(),
                    config.server.listen,
                    config.routes.len()
                );
            }
            // What still works but should change, each at its place in the file.
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            for line in tls {
                println!("{line}");
            }
            if !valid {
                eprintln!(
                    "{}: a certificate cannot be presented now: renew it (a reload keeps the running one; a start serves it, and every handshake fails)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            for route in &config.routes {
                println!("{}", route.summary());
            }
            if !config.unset_env.is_empty() {
                println!(
                    "secrets (cursors, identities): `run` needs the environment variable(s) {}, unset here",
                    config.unset_env.join(", ")
                );
            }
            let mut unset = Vec::new();
            for (name, database) in &config.postgres {
                let needs = database.env_vars();
                if !needs.is_empty() {
                    println!(
                        "postgres {name}: `run` needs the environment variable(s) {}",
                        needs.join(", ")
                    );
                }
                unset.extend(needs.into_iter().filter(|v| std::env::var_os(v).is_none()));
            }
            if strict_env && !unset.is_empty() {
                eprintln!(
                    "{}: unset: {} (--strict-env): export them, as `run` will need them",
                    path.display(),
                    unset.join(", ")
                );
                return ExitCode::FAILURE;
            }
            if config.postgres.is_empty() {
                return ExitCode::SUCCESS;
            }
            block_on(check_tables(config), None)
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS the file sets up, as lines to print: the listener's certificate and each
/// upstream's, with expiries; and whether every certificate can be presented now.
fn tls_summary(config: &Config) -> (Vec<String>, bool) {
    let mut valid = true;
    let mut lines = Vec::new();
    let mut expires = |identity: &crate::tls::Identity| match identity.invalid_now() {
        Some(why) => {
            valid = false;
            format!("INVALID: {why}")
        }
        None => identity.expires().to_string(),
    };
    if let Some(tls) = &config.server.tls {
        let clients = tls.client_ca.as_ref().map_or(String::new(), |ca| {
            format!(", client certificates from {}", ca.file.display())
        });
        lines.push(format!(
            "tls: {} (expires {}){clients}",
            tls.identity.cert_file.display(),
            expires(&tls.identity)
        ));
    }
    for upstream in config.upstreams.values() {
        let Some(tls) = &upstream.tls else { continue };
        let roots = tls
            .roots
            .as_ref()
            .map_or("the system's trust store".to_owned(), |r| {
                r.file.display().to_string()
            });
        let identity = tls.identity.as_ref().map_or(String::new(), |i| {
            format!(
                ", client certificate {} (expires {})",
                i.cert_file.display(),
                expires(i)
            )
        });
        lines.push(format!(
            "upstream {}: https, verified against {roots}{identity}",
            upstream.name
        ));
    }
    // Warned, not failed: the chain may still verify by another path.
    for (name, identity) in crate::proxy::generation::certificates(config) {
        if let Some(warning) = identity.chain_warning() {
            lines.push(format!(
                "warning: {name}: {}: {warning}",
                identity.cert_file.display()
            ));
        }
    }
    (lines, valid)
}

/// Whether the system's trust store can verify the TLS clients that rely on it (no
/// `tls.ca_file`, or a database's `tls_ca_file`): `run` refuses to start without one, so
/// `check` says so too.
fn trust_store(config: &Config) -> Result<(), String> {
    let system = |tls: &crate::tls::UpstreamTls| tls.roots.is_none();
    let mut users: Vec<String> = config
        .upstreams
        .values()
        .filter(|u| u.tls.as_ref().is_some_and(system))
        .map(|u| format!("upstream `{}`", u.name))
        .collect();
    let rls = config.rate_limit_service.as_ref();
    if rls.and_then(|s| s.tls.as_ref()).is_some_and(system) {
        users.push("rate_limit_service".to_owned());
    }
    users.extend(config.identities.values().filter_map(|id| match &id.keys {
        crate::identity::config::KeySource::Url(url) if system(&url.tls) => {
            Some(format!("identities.{}", id.name))
        }
        _ => None,
    }));
    let databases = config
        .postgres
        .iter()
        .filter(|(_, database)| database.tls == Some(crate::table::config::TlsRoots::System));
    let databases: Vec<_> = databases
        .map(|(name, _)| format!("postgres `{name}`"))
        .collect();
    let key = match (users.is_empty(), databases.is_empty()) {
        (true, true) => return Ok(()),
        (false, true) => "tls.ca_file",
        (true, false) => "tls_ca_file",
        (false, false) => "tls.ca_file (a database's tls_ca_file)",
    };
    users.extend(databases);
    crate::tls::system_roots(key)
        .map(drop)
        .map_err(|error| format!("{}: {error}", users.join(", ")))
}

/// Checks table routes against their databases when they can be reached (with the environment
/// `run` would have); a database that cannot be reached is reported, not a failure.
async fn check_tables(mut config: Config) -> ExitCode {
    // Built only to reach the catalogs, never to serve: stand-in secrets are fine here.
    config.unset_env.clear();
    let metrics = crate::telemetry::Metrics::default();
    let generation = match crate::proxy::generation::Generation::build(config, None, &metrics) {
        Ok(generation) => generation,
        Err(error) => {
            println!("table checks skipped: {error}");
            return ExitCode::SUCCESS;
        }
    };
    let mut unfit = false;
    for resource in generation.resources() {
        let wait = resource.database().config().connect_timeout + std::time::Duration::from_secs(2);
        match tokio::time::timeout(wait, resource.check()).await {
            Ok(Ok(catalog)) => {
                println!(
                    "route {}: table {} ok",
                    resource.route(),
                    resource.table().name
                );
                for warning in &catalog.warnings {
                    println!("warning: {warning} (route `{}`)", resource.route());
                }
            }
            Ok(Err(crate::table::CheckError::Invalid(reason))) => {
                unfit = true;
                println!("{reason} (route `{}`)", resource.route());
            }
            Ok(Err(crate::table::CheckError::Unreachable(error))) => println!(
                "route {}: database not reachable ({error}); `run` checks it when it is",
                resource.route()
            ),
            Err(_) => println!(
                "route {}: database did not answer within {wait:?}; `run` checks it when it does",
                resource.route()
            ),
        }
    }
    if unfit {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
