//! One database: its connection pools (deadpool-postgres over tokio-postgres; a second one for
//! exports when a read replica is configured), built from a [`PostgresConfig`] with the URLs'
//! `${NAME}` variables resolved from the environment, TLS through rustls (the `ring` provider,
//! the certificate always verified), and sessions set up for serving: UTC timestamps,
//! `statement_timeout`, `application_name`, read-only when configured.

use std::time::Duration;

use crate::telemetry::PoolSample;
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use crate::table::config::{
    PostgresConfig, Statements, TlsRoots, fill_placeholders, tokio_postgres_url,
};

/// Most statements prepared per connection before its cache is cleared: query shapes vary
/// with the fields and filters clients pick, so an unbounded cache would grow without end.
pub(crate) const STATEMENT_CACHE: usize = 256;

/// Why a database could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// An environment variable the URL names is not set.
    #[error(
        "postgres `{database}`: the url needs the environment variable {variable}, which is not set"
    )]
    MissingEnv {
        /// The database's name.
        database: String,
        /// The variable.
        variable: String,
    },
    /// The URL (with its variables) is not a PostgreSQL URL.
    #[error(
        "postgres `{database}`: the url is not a PostgreSQL URL after its variables were filled in"
    )]
    BadUrl {
        /// The database's name.
        database: String,
    },
    /// The pool could not be built.
    #[error("postgres `{database}`: {reason}")]
    Pool {
        /// The database's name.
        database: String,
        /// Why.
        reason: String,
    },
}

/// A database and its pools.
pub struct Database {
    name: String,
    config: std::sync::Arc<PostgresConfig>,
    pool: Pool,
    replica: Option<Pool>,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name)
            .field("status", &self.pool.status())
            .finish()
    }
}

/// `url` with every `${NAME}` replaced by the variable's value.
fn resolve(database: &str, url: &str) -> Result<String, SetupError> {
    let mut missing = None;
    let (filled, whole) = fill_placeholders(url, |variable| match std::env::var(variable) {
        // Percent-encoded, so a password with `@`, `/` or `:` cannot change the URL's shape.
        Ok(value) => Some(
            form_urlencoded::byte_serialize(value.as_bytes())
                .map(|s| s.replace('+', "%20"))
                .collect(),
        ),
        Err(_) => {
            missing = Some(variable.to_owned());
            None
        }
    });
    match (whole, missing) {
        (true, _) => Ok(filled),
        (false, Some(variable)) => Err(SetupError::MissingEnv {
            database: database.to_owned(),
            variable,
        }),
        (false, None) => Err(SetupError::BadUrl {
            database: database.to_owned(),
        }),
    }
}

/// The rustls client config TLS to the database uses: the `ring` provider (the one provider of
/// the whole binary), the certificate verified against `roots`.
fn tls_config(database: &str, roots: &TlsRoots) -> Result<rustls::ClientConfig, SetupError> {
    let unusable = |reason: String| SetupError::Pool {
        database: database.to_owned(),
        reason,
    };
    let store = match roots {
        TlsRoots::File { certificates, .. } => {
            let mut store = rustls::RootCertStore::empty();
            let certificates = certificates
                .iter()
                .map(|c| rustls_pki_types::CertificateDer::from(c.clone()));
            let (added, _) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(unusable("tls_ca_file holds no certificate rustls can read: give the PEM file of the CA that signed the database's certificate".to_owned()));
            }
            store
        }
        TlsRoots::System => crate::tls::system_roots("tls_ca_file").map_err(unusable)?,
    };
    rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Pool {
            database: database.to_owned(),
            reason: e.to_string(),
        })
        .map(|builder| builder.with_root_certificates(store).with_no_client_auth())
}

/// A pool for `url`, its sessions set up as `config` says, over `tls` when set.
fn pool(
    name: &str,
    url: &str,
    config: &PostgresConfig,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<Pool, SetupError> {
    let url = tokio_postgres_url(&resolve(name, url)?);
    let mut pg: tokio_postgres::Config = url.parse().map_err(|_| SetupError::BadUrl {
        database: name.to_owned(),
    })?;
    let wanted = Settings::of(config);
    let mut options = wanted.options();
    if let Some(existing) = pg.get_options() {
        options = format!("{existing} {options}");
    }
    pg.options(&options)
        .application_name(&config.application_name)
        .connect_timeout(config.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        None => Manager::from_config(pg, NoTls, manager_config),
        Some(tls) => Manager::from_config(pg, tls.clone(), manager_config),
    };
    Pool::builder(manager)
        .post_create(Hook::async_fn(move |client, _| {
            let wanted = wanted.clone();
            Box::pin(async move { wanted.applied(client).await })
        }))
        .max_size(config.pool_size.get())
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| SetupError::Pool {
            database: name.to_owned(),
            reason: e.to_string(),
        })
}

/// The session settings every connection gets, fixed whatever the config: their name, as the
/// startup packet's `options` write the value, and as `pg_settings` reads it back. Each shapes
/// the text pagegate reads (timestamps, intervals, floats as keys, bytea, string escapes).
const FIXED_SETTINGS: [(&str, &str, &str); 6] = [
    ("TimeZone", "UTC", "UTC"),
    ("DateStyle", "ISO,YMD", "ISO, YMD"),
    ("IntervalStyle", "postgres", "postgres"),
    ("extra_float_digits", "1", "1"),
    ("bytea_output", "hex", "hex"),
    ("standard_conforming_strings", "on", "on"),
];

/// The session settings a connection must have: each name, its value as the startup packet's
/// `options` write it, and as `pg_settings` reads it back.
#[derive(Debug, Clone)]
struct Settings(std::sync::Arc<[(&'static str, String, String)]>);

impl Settings {
    /// The settings `config` asks for: the fixed ones, its `statement_timeout` (and
    /// `idle_in_transaction_session_timeout` no shorter than a second), and read-only
    /// transactions when it says so.
    fn of(config: &PostgresConfig) -> Self {
        let timeout = config.statement_timeout.as_millis();
        let idle = timeout.max(1000);
        let read_only = config
            .read_only
            .then_some(("default_transaction_read_only", "on"));
        let configured = [
            ("statement_timeout", timeout.to_string()),
            ("idle_in_transaction_session_timeout", idle.to_string()),
        ]
        .into_iter()
        .chain(read_only.map(|(name, on)| (name, on.to_owned())));
        let wanted = FIXED_SETTINGS
            .iter()
            .map(|&(name, sent, read)| (name, sent.to_owned(), read.to_owned()))
            .chain(configured.map(|(name, value)| (name, value.clone(), value)));
        Self(wanted.collect())
    }

    /// The startup packet's `options` that set them.
    fn options(&self) -> String {
        let options: Vec<String> = self
            .0
            .iter()
            .map(|(name, sent, _)| format!("-c {name}={sent}"))
            .collect();
        options.join(" ")
    }

    /// Whether the server applied them, read once per new connection. A pooler in between may
    /// drop `options` (PgBouncer's `ignore_startup_parameters = options`): statements would
    /// then run with no `statement_timeout`, timestamps in the server's zone, or float keys
    /// rounded (`extra_float_digits`), unseen. Such a connection is refused instead, naming
    /// every setting that differs (the route answers 503 and the log says why).
    async fn applied(&self, client: &mut ClientWrapper) -> Result<(), HookError> {
        let names: Vec<String> = self
            .0
            .iter()
            .map(|(name, ..)| format!("'{name}'"))
            .collect();
        // The simple protocol: nothing parsed, nothing left prepared on the session. The names
        // are pagegate's own constants, never a client's text.
        let messages = client
            .simple_query(&format!(
                "SELECT name, setting FROM pg_settings WHERE name IN ({})",
                names.join(", ")
            ))
            .await
            .map_err(HookError::Backend)?;
        let got: Vec<(String, String)> = messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).unwrap_or_default().to_owned(),
                    row.get(1).unwrap_or_default().to_owned(),
                )),
                _ => None,
            })
            .collect();
        let differs: Vec<String> = self
            .0
            .iter()
            .filter_map(|(name, _, wanted)| {
                let found = got.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
                (found != Some(wanted.as_str())).then(|| {
                    format!(
                        "{name} is {:?}, wanted {wanted:?}",
                        found.unwrap_or("unset")
                    )
                })
            })
            .collect();
        if differs.is_empty() {
            return Ok(());
        }
        Err(HookError::message(format!(
            "the server did not apply the session settings pagegate sends in the startup packet's `options` ({}): a pooler in between drops them (PgBouncer: take `options` out of ignore_startup_parameters), or give pagegate's role these settings (ALTER ROLE … SET)",
            differs.join("; ")
        )))
    }
}

impl Database {
    /// Builds the pools (they connect lazily: a database that is down does not stop this).
    pub fn new(name: &str, config: std::sync::Arc<PostgresConfig>) -> Result<Self, SetupError> {
        let tls = config
            .tls
            .as_ref()
            .map(|roots| tls_config(name, roots).map(tokio_postgres_rustls::MakeRustlsConnect::new))
            .transpose()?;
        let primary = pool(name, &config.url, &config, tls.as_ref())?;
        let replica = config
            .replica_url
            .as_deref()
            .map(|url| pool(name, url, &config, tls.as_ref()))
            .transpose()?;
        Ok(Self {
            name: name.to_owned(),
            config,
            pool: primary,
            replica,
            tls,
        })
    }

    /// The database's name under `postgres`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings it was built from.
    pub fn config(&self) -> &std::sync::Arc<PostgresConfig> {
        &self.config
    }

    /// The pool pages and checks use (the primary's).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The read replica's pool, when one is configured.
    pub(crate) fn replica_pool(&self) -> Option<&Pool> {
        self.replica.as_ref()
    }

    /// The pool exports use: the read replica's when one is configured.
    pub fn export_pool(&self) -> &Pool {
        self.replica.as_ref().unwrap_or(&self.pool)
    }

    /// Each pool's counts, named `primary` and `replica`.
    pub(crate) fn pool_samples(&self) -> impl Iterator<Item = (&'static str, PoolSample)> {
        let sample = |pool: &Pool| {
            let status = pool.status();
            PoolSample {
                max: status.max_size,
                open: status.size,
                idle: status.available,
                waiting: status.waiting,
            }
        };
        std::iter::once(("primary", sample(&self.pool)))
            .chain(self.replica.as_ref().map(|r| ("replica", sample(r))))
    }

    /// The TLS its connections speak (a cancel request needs it too).
    pub(crate) fn tls(&self) -> Option<&tokio_postgres_rustls::MakeRustlsConnect> {
        self.tls.as_ref()
    }

    /// Whether statements are sent unnamed (behind PgBouncer in transaction mode).
    pub fn unnamed(&self) -> bool {
        self.config.statements == Statements::Unnamed
    }
}
