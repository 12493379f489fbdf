//! Access-log events captured as JSON from a subscriber set on this thread: in-process
//! services and a proxy on the default (one-thread) test runtime both log into it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The captured log lines.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A dispatcher that lives as long as the tests, so a capture is never the only one
/// registered. With just one, tracing-core works out a callsite's interest from the default
/// of the thread that reaches it first: a test without a capture, running beside one, then
/// caches "never" for the access log's callsite, and the capture sees no event.
static SECOND_DISPATCHER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();

/// Starts capturing; the guard stops it.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    SECOND_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

impl Captured {
    /// The access-log events so far (their fields).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.events("request")
    }

    /// Everything logged so far, as written.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// The events so far whose message is `message` (their fields).
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json line"))
            .filter(|event| event["fields"]["message"] == message)
            .map(|event| event["fields"].clone())
            .collect()
    }

    /// The outcomes logged for `path`, in order, once there are `n` of them (an event is
    /// written when its body ends); panics if they do not come within 2 s.
    pub async fn outcomes(&self, path: &str, n: usize) -> Vec<String> {
        let mut outcomes = Vec::new();
        for _ in 0..100 {
            outcomes = self
                .requests()
                .into_iter()
                .filter(|e| e["path"] == path)
                .map(|e| e["outcome"].as_str().expect("outcome").to_owned())
                .collect();
            if outcomes.len() >= n {
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{} access-log events for {path}, not {n}: {outcomes:?}",
            outcomes.len()
        )
    }

    /// The outcome logged for `path`, waiting for its event (written when the body ends).
    pub async fn outcome(&self, path: &str) -> String {
        for _ in 0..100 {
            if let Some(event) = self.requests().into_iter().find(|e| e["path"] == path) {
                return event["outcome"].as_str().expect("outcome").to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no access-log event for {path}: {:?}", self.requests())
    }
}
