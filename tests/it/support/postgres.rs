//! A real PostgreSQL for a test: `DATABASE_URL` when set, else a fresh cluster the test starts
//! itself (initdb + pg_ctl of the machine's PostgreSQL, in a temporary directory, on a free
//! port; as the `postgres` user when running as root, since PostgreSQL refuses to run as root),
//! stopped and removed when dropped. Its absence fails the test with the install command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::redis::free_port;

pub struct Postgres {
    pub url: String,
    /// A prefix that makes this test's table names its own (a shared DATABASE_URL).
    pub prefix: String,
    dir: Option<PathBuf>,
    bin: PathBuf,
}

/// The directory of the machine's PostgreSQL server programs (the newest version installed).
fn bindir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server found under /usr/lib/postgresql: install it with `apt-get install postgresql` (.ci/run does), or set DATABASE_URL")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// A server program's command, as `postgres` when this process is root, its output silenced.
fn command(bin: &Path, program: &str, args: &[&str]) -> Command {
    let path = bin.join(program);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    command.args(args).stdout(Stdio::null());
    command
}

/// Runs a server program; it must succeed.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let status = command(bin, program, args)
        .stderr(Stdio::inherit())
        .status();
    let status =
        status.unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", bin.display()));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Postgres {
    pub fn start() -> Self {
        let prefix = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Self {
                url,
                prefix,
                dir: None,
                bin: PathBuf::new(),
            };
        }
        Self::start_own(prefix, None)
    }

    /// A cluster of the test's own that speaks TLS with this certificate and key (PEM).
    pub fn start_tls(certificate: &str, key: &str) -> Self {
        Self::start_own(
            format!(
                "t{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            Some((certificate, key)),
        )
    }

    /// A cluster of the test's own even when DATABASE_URL is set (a test that stops it).
    pub fn start_owned() -> Self {
        Self::start_own(
            format!(
                "t{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            None,
        )
    }

    fn start_own(prefix: String, tls: Option<(&str, &str)>) -> Self {
        let bin = bindir();
        let dir = std::env::temp_dir().join(format!("pagegate-pg-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        run(
            &bin,
            "initdb",
            &[
                "-D",
                data,
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let port = free_port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        if let Some((certificate, key)) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert_file, certificate).expect("write certificate");
            std::fs::write(&key_file, key).expect("write key");
            // PostgreSQL wants its key readable by its own user alone.
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod key");
            if is_root() {
                let status = Command::new("chown")
                    .arg("postgres")
                    .args([&cert_file, &key_file])
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown postgres the key and certificate");
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_file.display(),
                key_file.display()
            ));
        }
        let log = dir.join("log");
        run(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
        );
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            prefix,
            dir: Some(dir),
            bin,
        }
    }

    /// A name of this test's own: `{prefix}_{base}`.
    pub fn name(&self, base: &str) -> String {
        format!("{}_{base}", self.prefix)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url));
        tokio::spawn(connection);
        client
    }

    pub async fn execute(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    }

    /// A table `(id bigint PRIMARY KEY, blob text NOT NULL)` named after `base`, with ids 1 to
    /// `rows` and each blob the SQL expression `blob` of `g` (the id), such as
    /// `repeat('w', 20480)`: rows as wide as a test needs.
    pub async fn wide_table(&self, base: &str, rows: u32, blob: &str) -> String {
        let t = self.name(base);
        self.execute(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, blob text NOT NULL);
             INSERT INTO {t} SELECT g, {blob} FROM generate_series(1, {rows}) g;"
        ))
        .await;
        t
    }

    /// Stops the server (the database "goes down"); [`Self::restart`] brings it back.
    pub fn stop(&self) {
        if let Some(dir) = &self.dir {
            let data = dir.join("data");
            // `fast`: sessions are cut, committed data kept (an immediate stop may lose the
            // last commits made with synchronous_commit off).
            run(
                &self.bin,
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().expect("utf-8"),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
            );
        }
    }

    pub fn restart(&self) {
        let Some(dir) = &self.dir else { return };
        let data = dir.join("data");
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .expect("port");
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        let log = dir.join("log");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let data = dir.join("data");
            let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
            let _ = command(&self.bin, "pg_ctl", &args)
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// RFC 4180 records (quoted fields may hold commas, quotes and newlines).
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

/// RFC 4180 records whose fields tell NULL (an empty unquoted field, as `COPY` writes it) from
/// the empty string (`""`).
pub fn csv_fields(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let mut field = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '\n' {
                break;
            }
            field.push(c);
            chars.next();
        }
        record.push((quoted || !field.is_empty()).then_some(field));
        if chars.next() != Some(',') {
            records.push(std::mem::take(&mut record));
        }
    }
    records
}
