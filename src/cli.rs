//! The command line: `run`, `check`, `demo`, `health` and `reload`. `main.rs` only parses arguments and
//! calls these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::server::{Overrides, Server, Signals, Source, signals, watch};

mod check;

pub(crate) use check::check;

/// `pagegate --version`: the crate's version and the commit it was built from (`unknown`
/// outside a git checkout; see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PAGEGATE_COMMIT"),
    ")"
);

/// pagegate: keeps list APIs alive when their tables hold millions of rows.
#[derive(Debug, Parser)]
#[command(name = "pagegate", version = VERSION, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// The YAML configuration file.
        #[arg(long, short, env = "PAGEGATE_CONFIG")]
        config: PathBuf,
        /// Where the proxy listens, in place of the file's `listen` (also on every reload).
        #[arg(long, env = "PAGEGATE_LISTEN")]
        listen: Option<SocketAddr>,
        /// Worker threads serving requests (default: one per CPU core). A sidecar given one
        /// core by its CPU limit is best served by one.
        #[arg(long, env = "PAGEGATE_WORKERS")]
        workers: Option<std::num::NonZeroUsize>,
        /// Where the admin listener listens, in place of the file's `admin.listen` (also on
        /// every reload).
        #[arg(long, env = "PAGEGATE_ADMIN_LISTEN")]
        admin_listen: Option<SocketAddr>,
        /// Do not reload when the file, or a TLS file it names, changes: only on SIGHUP and
        /// `POST /reload` (a renewed certificate is then served after one of them).
        #[arg(long)]
        no_watch: bool,
    },
    /// Validate a configuration file and print one line per route.
    Check {
        /// The YAML configuration file.
        #[arg(long, short, env = "PAGEGATE_CONFIG")]
        config: PathBuf,
        /// Refuse the file when a variable its secrets or database URLs name is unset, as `run`
        /// does. Without it, `check` lists those variables and validates the rest.
        #[arg(long)]
        strict_env: bool,
        /// The listen address `run` would use in place of the file's, as `run --listen`.
        #[arg(long, env = "PAGEGATE_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Run a built-in naive list API with pagegate in front of it.
    Demo {
        /// Where pagegate listens (default: the `listen` of config/demo.yaml, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the admin listener listens (default: 127.0.0.1:9090).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Where the naive backend listens (default: 127.0.0.1:8081).
        #[arg(long)]
        backend_listen: Option<SocketAddr>,
        /// Rows in the demo table.
        #[arg(long, default_value_t = crate::demo::DEFAULT_ROWS)]
        rows: u64,
        /// Also serve the demo table from this PostgreSQL (created and filled when absent) at
        /// /db/events: `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Exit 0 when pagegate's `/ready` answers 200, else 1: a HEALTHCHECK for images without curl.
    Health {
        /// The admin listener's address.
        #[arg(long, env = "PAGEGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Reload the running pagegate's config file (`POST /reload`): exit 0 once it runs, else
    /// print why it was refused and exit 1 (systemd's `ExecReload`).
    Reload {
        /// The admin listener's address (its `admin.allow` must admit this host).
        #[arg(long, env = "PAGEGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
}

/// Runs a subcommand to completion.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check {
            config,
            strict_env,
            listen,
        } => check(&config, strict_env, listen),
        Command::Run {
            config,
            listen,
            workers,
            admin_listen,
            no_watch,
        } => {
            let overrides: Overrides = Box::new(move |config: &mut Config| {
                if let Some(addr) = listen {
                    config.server.listen = addr;
                }
                if let Some(addr) = admin_listen {
                    config.server.admin_listen = Some(addr);
                }
            });
            let source = Source::new(config, overrides);
            let config = match source.load() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::FAILURE;
                }
            };
            // Outlives the runtime, so lines written as it drops the last bodies are kept.
            let Some(_log) = logging() else {
                return ExitCode::FAILURE;
            };
            let source = Some((source, !no_watch));
            block_on(serve(config, source, None), workers)
        }
        Command::Demo {
            listen,
            admin_listen,
            backend_listen,
            rows,
            postgres,
        } => {
            let Some(_log) = logging() else {
                return ExitCode::FAILURE;
            };
            let addrs = (listen, admin_listen, backend_listen);
            block_on(demo(addrs, rows, postgres), None)
        }
        Command::Health { admin } => block_on(health(admin), Some(std::num::NonZeroUsize::MIN)),
        Command::Reload { admin } => block_on(reload(admin), Some(std::num::NonZeroUsize::MIN)),
    }
}

/// Starts logging, or says why it cannot.
fn logging() -> Option<crate::telemetry::LogGuard> {
    match crate::telemetry::init() {
        Ok(guard) => Some(guard),
        Err(error) => {
            eprintln!("{error}");
            None
        }
    }
}

/// `pagegate health`: `GET /ready` on the admin listener.
async fn health(admin: SocketAddr) -> ExitCode {
    let wait = std::time::Duration::from_secs(5);
    match ask_admin(admin, http::Method::GET, "/ready", wait).await {
        Ok((http::StatusCode::OK, _)) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("{admin}/ready answered {status}");
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// `pagegate reload`: `POST /reload` on the admin listener, which answers once the new config
/// runs (table routes checked against their databases), or why it was refused.
async fn reload(admin: SocketAddr) -> ExitCode {
    let wait = std::time::Duration::from_secs(120);
    match ask_admin(admin, http::Method::POST, "/reload", wait).await {
        Ok((http::StatusCode::OK, body)) => {
            println!("{}", String::from_utf8_lossy(&body));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let why = body["detail"].as_str().unwrap_or("no detail given");
            eprintln!("{admin}/reload answered {status}: {why}");
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// One request to the admin listener: the status and (up to 1 MiB of) the body, or why none
/// came within `wait`.
async fn ask_admin(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    wait: std::time::Duration,
) -> Result<(http::StatusCode, bytes::Bytes), String> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .body(http_body_util::Empty::new())
        .map_err(|error| error.to_string())?;
    let ask = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>((status, body.to_bytes()))
    };
    match tokio::time::timeout(wait, ask).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("cannot reach {admin}{path}: {error}")),
        Err(_) => Err(format!(
            "{admin}{path} did not answer within {}",
            humantime::format_duration(wait)
        )),
    }
}

fn block_on(
    future: impl std::future::Future<Output = ExitCode>,
    workers: Option<std::num::NonZeroUsize>,
) -> ExitCode {
    let mut builder = match workers.map(std::num::NonZeroUsize::get) {
        // One worker: a current-thread runtime, which skips the work-stealing machinery.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the demo prints once it listens, from pagegate's and the admin listener's addresses.
type Banner = Box<dyn FnOnce(SocketAddr, Option<SocketAddr>) -> String + Send>;

/// Serves `config` until a signal drains it. With a source, SIGHUP and `POST /reload` reload it,
/// and so do the file's changes when `watch` (the bool) is set.
async fn serve(config: Config, source: Option<(Source, bool)>, banner: Option<Banner>) -> ExitCode {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Before the databases are checked: a SIGHUP meanwhile must not end the process, and a
    // SIGTERM or SIGINT ends it at once (nothing is served yet, so there is nothing to drain).
    let mut installed = Signals::install();
    let bound = match installed.as_mut() {
        Ok(early) => tokio::select! {
            bound = Server::bind(config.clone()) => bound,
            name = early.stop() => {
                eprintln!("pagegate: {name} while starting: stopped");
                return ExitCode::SUCCESS;
            }
        },
        Err(_) => Server::bind(config.clone()).await,
    };
    let mut server = match bound {
        Ok(server) => server,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((source, watched)) = source {
        let path = source.path().to_owned();
        server = server.with_source(source);
        if watched {
            // The file's changes reload it (a ConfigMap update, an edit), as SIGHUP does.
            tokio::spawn(watch(server.handle(), path));
        }
    }
    let addr = server.local_addr().unwrap_or(config.server.listen);
    let admin = server.admin_addr();
    match banner {
        Some(banner) => println!("{}", banner(addr, admin)),
        None => tracing::info!(%addr, ?admin, routes = config.routes.len(), "pagegate listening"),
    }
    // SIGTERM and SIGINT drain (a second one exits at once); SIGHUP reloads.
    tokio::spawn(signals(server.handle(), installed));
    server.run(std::future::pending()).await;
    ExitCode::SUCCESS
}

async fn demo(
    (listen, admin_listen, backend_listen): (
        Option<SocketAddr>,
        Option<SocketAddr>,
        Option<SocketAddr>,
    ),
    rows: u64,
    postgres: Option<String>,
) -> ExitCode {
    let mut yaml = crate::demo::DEMO_CONFIG.to_owned();
    if let Some(backend) = backend_listen {
        yaml = yaml.replace(crate::demo::DEFAULT_BACKEND, &format!("http://{backend}"));
    }
    let mut table_rows = None;
    if let Some(url) = &postgres {
        // The URL without its password, which must not end up in a terminal's scrollback.
        let shown = url.parse::<tokio_postgres::Config>().ok().map_or_else(
            || "the database".to_owned(),
            |c| format!("{:?} on {:?}", c.get_dbname().unwrap_or("?"), c.get_hosts()),
        );
        println!("preparing {} in {shown} …", crate::demo::postgres::TABLE);
        match crate::demo::postgres::prepare(url, rows).await {
            Ok(count) => table_rows = Some(count),
            Err(error) => {
                eprintln!("cannot prepare the demo table in {shown}: {error}");
                return ExitCode::FAILURE;
            }
        }
        yaml.push_str(&crate::demo::postgres::yaml(url));
    }
    let mut config = match Config::parse("config/demo.yaml (embedded)", &yaml) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(admin) = admin_listen {
        config.server.admin_listen = Some(admin);
    }
    let Some(backend) = crate::demo::backend_addr(&config) else {
        eprintln!("config/demo.yaml has no `demo` upstream");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(backend).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "cannot start the demo backend on {backend}: {error} (is another demo running?)"
            );
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(crate::demo::serve_backend(listener, rows));
    serve(
        config,
        None,
        Some(Box::new(move |proxy, admin| {
            let mut text = crate::demo::instructions(proxy, backend, admin);
            if let Some(rows) = table_rows {
                let more = crate::demo::postgres::instructions(proxy, rows);
                text = text.replace("\nPress Ctrl-C", &format!("{more}\nPress Ctrl-C"));
            }
            text
        })),
    )
    .await
}
