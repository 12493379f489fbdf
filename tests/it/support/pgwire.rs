//! A relay between pagegate and a real PostgreSQL that reads the frontend's messages as they
//! pass and records the name and text of every statement it asks the server to parse (the
//! `Parse` message), so a test sees what PgBouncer in transaction mode would see (named
//! statements that live on in a server session, or unnamed ones that do not) and which
//! statements ran. It can also drop the startup packet's `options`, as PgBouncer does with
//! `ignore_startup_parameters = options`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The relay: connect to [`Relay::url`] instead of the database.
pub struct Relay {
    pub url: String,
    parsed: Arc<Mutex<Vec<(String, String)>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    /// A relay to the server of `url` (`postgres://user@host:port/db`).
    pub async fn start(url: &str) -> Self {
        Self::start_with(url, false).await
    }

    /// A relay that drops `options` from each connection's startup packet.
    pub async fn dropping_options(url: &str) -> Self {
        Self::start_with(url, true).await
    }

    async fn start_with(url: &str, drop_options: bool) -> Self {
        let authority = url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the url")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let relay_url = url.replace(&authority, &format!("127.0.0.1:{port}"));
        let parsed = Arc::new(Mutex::new(Vec::new()));
        let names = Arc::clone(&parsed);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let server = TcpStream::connect(&authority).await.expect("connect db");
                let names = Arc::clone(&names);
                tokio::spawn(relay(client, server, names, drop_options));
            }
        });
        Self {
            url: relay_url,
            parsed,
            accepted,
        }
    }

    /// Connections opened through the relay so far (cancel requests included).
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The statement names of every `Parse` so far (`""` for an unnamed statement).
    pub fn parsed(&self) -> Vec<String> {
        let parsed = self.parsed.lock().expect("lock");
        parsed.iter().map(|(name, _)| name.clone()).collect()
    }

    /// How many `COPY` statements were parsed so far.
    pub fn copies(&self) -> usize {
        let parsed = self.parsed.lock().expect("lock");
        parsed
            .iter()
            .filter(|(_, sql)| sql.starts_with("COPY ("))
            .count()
    }

    /// The text of every statement parsed so far.
    pub fn statements(&self) -> Vec<String> {
        let parsed = self.parsed.lock().expect("lock");
        parsed.iter().map(|(_, sql)| sql.clone()).collect()
    }
}

/// The startup message's body (protocol version, then `key\0value\0` pairs, then `\0`) without
/// its `options` pair.
fn without_options(body: &[u8]) -> Vec<u8> {
    let (version, pairs) = body.split_at(4.min(body.len()));
    let mut fields = pairs.split(|b| *b == 0);
    let mut out = version.to_vec();
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        if key.is_empty() {
            break;
        }
        if key != b"options" {
            out.extend_from_slice(key);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
    }
    out.push(0);
    out
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    names: Arc<Mutex<Vec<(String, String)>>>,
    drop_options: bool,
) {
    let (mut from_client, mut to_server) = (client, server);
    let (mut server_read, mut server_write) = to_server.split();
    let (mut client_read, mut client_write) = from_client.split();
    let upstream = async {
        // The startup message: a length, then that many bytes less four.
        let mut length = [0u8; 4];
        client_read.read_exact(&mut length).await?;
        let mut body = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
        client_read.read_exact(&mut body).await?;
        if drop_options {
            body = without_options(&body);
        }
        let length = u32::try_from(body.len() + 4).expect("length").to_be_bytes();
        server_write.write_all(&length).await?;
        server_write.write_all(&body).await?;
        loop {
            let mut head = [0u8; 5];
            client_read.read_exact(&mut head).await?;
            let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; length.saturating_sub(4)];
            client_read.read_exact(&mut body).await?;
            if head[0] == b'P' {
                let cstring = |from: usize| {
                    let rest = body.get(from..).unwrap_or_default();
                    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    (
                        String::from_utf8_lossy(&rest[..end]).into_owned(),
                        from + end + 1,
                    )
                };
                let (name, after) = cstring(0);
                let (sql, _) = cstring(after);
                names.lock().expect("lock").push((name, sql));
            }
            server_write.write_all(&head).await?;
            server_write.write_all(&body).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    let _ = tokio::join!(upstream, downstream);
}
