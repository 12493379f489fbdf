use std::time::Duration;

use super::super::{Closed, Settings};
use super::*;

fn connections() -> std::sync::Arc<Connections> {
    Connections::new(
        Settings {
            http2_idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            http2_max_resets: 10,
        },
        Closed::default(),
    )
}

fn evicts(open: &Connections) -> bool {
    open.evict().strong_count() > 0
}

#[tokio::test(start_paused = true)]
async fn newcomers_are_safe_for_a_second_and_slow_heads_go_first() {
    let open = connections();
    let silent = open.open();
    let arriving = open.open();
    arriving.0.bytes_arrived();
    assert!(!evicts(&open), "newcomers are not evictable at once");

    let idle = open.open();
    drop(idle.0.stream(false));
    tokio::time::advance(Duration::from_millis(10)).await;
    let busy = open.open();
    let _request = busy.0.stream(false);
    assert!(evicts(&open), "an idle keep-alive connection is");
    assert_eq!(idle.0.reason(), Some(Close::Evicted));

    tokio::time::advance(SLOW_HEAD.max(SILENT_NEWCOMER)).await;
    let fresh = open.open();
    fresh.0.bytes_arrived();
    assert!(evicts(&open));
    assert_eq!(
        arriving.0.reason(),
        Some(Close::EvictedAtOnce),
        "slow head first"
    );
    assert!(evicts(&open));
    assert_eq!(
        silent.0.reason(),
        Some(Close::EvictedAtOnce),
        "then the silent"
    );
    assert!(!evicts(&open), "a busy one and a fresh head are left");
    assert_eq!(busy.0.reason(), None);
    assert_eq!(fresh.0.reason(), None);
    assert_eq!(open.closed.evicted_slow_head.get(), 1);
    assert_eq!(open.closed.evicted_silent.get(), 1);
    assert_eq!(open.closed.evicted_idle.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_between_streams_is_idle_not_a_slow_head() {
    let open = connections();
    let conn = open.open();
    conn.0.http2();
    drop(conn.0.stream(true));
    // A PING's answer arrives with no stream open.
    conn.0.bytes_arrived();
    assert!(evicts(&open));
    assert_eq!(conn.0.reason(), Some(Close::Evicted), "GOAWAY, not a cut");
}
