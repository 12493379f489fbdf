//! Every default value of the configuration, one documented constant each.
//!
//! `config/reference.yaml` shows the same values; the config tests check that they agree.

use std::time::Duration;

/// Address the proxy listens on when `listen` is not set.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// How long open requests may finish after SIGTERM/SIGINT before they are cut (10 seconds).
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long `/ready` answers 503 after SIGTERM while traffic is still served (5 seconds):
/// Kubernetes keeps routing to a terminating pod until its endpoints update.
pub(crate) const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Most connections the admin listener serves at once: probes and scrapes, not clients.
pub(crate) const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 16;
/// The `service.name` of pagegate's spans.
pub(crate) const DEFAULT_TRACES_SERVICE_NAME: &str = "pagegate";
/// The share of new traces pagegate samples (1.0: all); a request's sampled parent decides for
/// its own trace.
pub(crate) const DEFAULT_TRACES_SAMPLE_RATIO: f64 = 1.0;
/// Peers the admin verbs answer: loopback only, as linkerd's admin does.
pub(crate) const DEFAULT_ADMIN_ALLOW: [&str; 2] = ["127.0.0.1/32", "::1/128"];
/// Time a client has to send a whole request head, from when its connection starts waiting for
/// one: a new connection's first bytes, and an idle HTTP/1 keep-alive connection's next request
/// (10 seconds).
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a write to a client may wait: a client that reads nothing for this long is
/// disconnected, releasing its held page and upstream connection (30 seconds).
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How far another replica's clock may run ahead of this one's when a cursor it minted is
/// read here (5 minutes): a cursor whose expiry lies further out than `ttl` from now was
/// minted under a longer ttl, or none.
pub(crate) const CURSOR_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// How many `send_timeout`s an HTTP/2 stream's frame may wait in all while the socket is full
/// (4): the time behind a full socket is the link's, watched by the socket's own stall timeout,
/// up to this bound.
pub(crate) const FULL_SOCKET_GRACE: u32 = 4;
/// Smallest `send_buffer` (4 KiB): below it Linux rounds up anyway.
pub(crate) const MIN_SEND_BUFFER: u64 = 4 * 1024;
/// Largest `send_buffer` (64 MiB): kernel memory per connection.
pub(crate) const MAX_SEND_BUFFER: u64 = 64 * 1024 * 1024;
/// Connections the kernel queues for accepting, as `TcpListener::bind` sets (1024).
pub(crate) const LISTEN_BACKLOG: u32 = 1024;
/// Interval of HTTP/2 keep-alive PINGs to clients (20 seconds).
pub(crate) const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Time an HTTP/2 client has to answer a PING before its connection is closed (20 seconds).
pub(crate) const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Time an HTTP/2 connection may stay open with no stream in flight before it gets GOAWAY and is
/// closed: PINGs alone do not keep it (60 seconds).
pub(crate) const DEFAULT_HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Streams one HTTP/2 connection may cancel (RST_STREAM before its answer ended) within
/// [`HTTP2_RESET_WINDOW`]; beyond it the connection gets GOAWAY and is closed (100). A
/// "rapid reset" client paced under the h2 crate's own pending-reset limit is cut here.
pub(crate) const DEFAULT_HTTP2_MAX_RESETS: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(100).expect("not zero");
/// The window `http2_max_resets` counts over: a connection whose client cancelled more than
/// `http2_max_resets` streams within any such window is closed (10 seconds).
pub(crate) const HTTP2_RESET_WINDOW: Duration = Duration::from_secs(10);
/// Control frames (SETTINGS, PING, PRIORITY, RST_STREAM, WINDOW_UPDATE) one HTTP/2 client may
/// send per [`HTTP2_CONTROL_WINDOW`] beyond those its streams and downloads explain; past it
/// the connection gets GOAWAY `ENHANCE_YOUR_CALM` and is closed (1,000).
pub(crate) const HTTP2_MAX_CONTROL_FRAMES: u32 = 1_000;
/// The window [`HTTP2_MAX_CONTROL_FRAMES`] counts over (10 seconds). It slides: the count is
/// this window's plus the last one's, weighted by how much of it is still within 10 s.
pub(crate) const HTTP2_CONTROL_WINDOW: Duration = Duration::from_secs(10);
/// Control frames each stream a client opens explains: a PRIORITY, a WINDOW_UPDATE and a
/// RST_STREAM (3).
pub(crate) const FREE_PER_STREAM: u64 = 3;
/// WINDOW_UPDATEs or PINGs each DATA frame pagegate sends explains: the stream's and the
/// connection's window, or a gRPC bandwidth-probe PING (2).
pub(crate) const FREE_PER_DATA: u64 = 2;
/// Whether one access-log event is written per request, when its response body ends (true).
pub(crate) const DEFAULT_ACCESS_LOG: bool = true;
/// Most client connections served at once; further accepts wait (4,096). Each may also hold a
/// connection to its upstream, so this needs about 8,200 open files.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
/// At `max_connections`, a connection whose head is still incomplete this long after its
/// first byte may be closed to make room for a newcomer (1 second).
pub(crate) const SLOW_HEAD: Duration = Duration::from_secs(1);
/// At `max_connections`, a connection that has sent nothing this long since it was accepted
/// may be closed to make room for a newcomer (1 second).
pub(crate) const SILENT_NEWCOMER: Duration = Duration::from_secs(1);
/// Longest a newcomer waits for a `max_connections` slot when no connection can be evicted;
/// then it is answered 503 `overloaded` with `Retry-After` (2 seconds).
pub(crate) const ACCEPT_WAIT: Duration = Duration::from_secs(2);
/// Newcomers that may wait for a slot at once, at least (1,024; more when `max_connections` is
/// larger, fewer when the open-files limit leaves no room). Each holds a socket and, once
/// answered, at most `max_head_bytes` of head.
pub(crate) const WAITING_ROOM_MIN: usize = 1_024;
/// When the held-page budget is full and a request waits, a page whose client has made no
/// progress for this long may be cut to make room, the one stalled the longest first (1 second).
pub(crate) const HELD_UNREAD: Duration = Duration::from_secs(1);
/// Open files pagegate keeps for itself beyond two per client connection: listeners, the log,
/// the runtime's own descriptors (64).
pub(crate) const RESERVED_FILES: u64 = 64;

/// `Retry-After` of a 503 `overloaded` (held pages at `max_held_bytes`, or every connection
/// slot busy): load of this kind clears within a second or two (1 second).
pub(crate) const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After an `accept` fails (EMFILE with no file descriptor left, ENOBUFS, ENOMEM), how long a
/// listener waits before it accepts again, so it never spins on a failure that persists (50 ms).
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Largest request head (request line and headers) a client may send (32 KiB, as nginx's
/// `large_client_header_buffers 4 8k`); bigger heads get 431 and the connection is closed.
pub(crate) const DEFAULT_MAX_HEAD_BYTES: u64 = 32 * 1024;

/// With `key: header_and_client` and no `rate.per_address`, one address's rate is this many
/// times `rate.per_client` (requests and burst alike): room for a few users behind one NAT,
/// while rotating the header gains at most this factor.
pub(crate) const DEFAULT_PER_ADDRESS_FACTOR: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(4).expect("not zero");

/// Most clients whose rate-limit state one route keeps (100,000: about 6 MiB). Beyond it, clients
/// whose buckets are full are forgotten (they lose nothing); with none to forget, new clients
/// share one bucket until some are.
pub(crate) const DEFAULT_LIMIT_MAX_CLIENTS: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(100_000).expect("not zero");
/// Longest wait for one Redis answer before a route's `on_redis_error` applies (50 ms): a
/// limit must not become the slowest part of a request.
pub(crate) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest wait for one answer of the Envoy rate-limit service before a route's
/// `on_store_error` applies (20 ms, Envoy's own default for its rate-limit filter).
pub(crate) const DEFAULT_RLS_TIMEOUT: Duration = Duration::from_millis(20);
/// How often a running answer's `cost.response` is sent to the rate-limit service while it
/// streams (1 second): the service's counters trail a long export by at most this much
/// rather than by the whole export.
pub(crate) const DEFAULT_COST_EVERY: Duration = Duration::from_secs(1);
/// Prefix of every Redis key pagegate writes (`pagegate`).
pub(crate) const DEFAULT_REDIS_KEY_PREFIX: &str = "pagegate";
/// Life of a Redis concurrency lease unless renewed (10 seconds); leases are renewed every
/// third of it while the body streams, so a replica that dies frees its slots within it.
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Longest a queued request waits for a concurrency slot (10 seconds).
pub(crate) const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections kept at most per database (16).
pub(crate) const DEFAULT_PG_POOL_SIZE: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(16).expect("not zero");
/// Time to open a database connection, and to wait for a free one (5 seconds).
pub(crate) const DEFAULT_PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one statement may run: a page, or one export chunk (10 seconds).
pub(crate) const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// `application_name` of pagegate's database sessions (`pagegate`).
pub(crate) const DEFAULT_PG_APPLICATION_NAME: &str = "pagegate";
/// Rows a table page has when the request names no `limit` (100).
pub(crate) const DEFAULT_TABLE_DEFAULT_LIMIT: u32 = 100;
/// Most rows a table page may have (1,000).
pub(crate) const DEFAULT_TABLE_MAX_LIMIT: u32 = 1_000;
/// Rows per export chunk: one short keyset query each (10,000).
pub(crate) const DEFAULT_CHUNK_ROWS: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(10_000).expect("not zero");
/// Most bytes of a table route's page: it ends after the row that reaches them, with a next
/// cursor from there (8 MiB, as a list route's `max_bytes`).
pub(crate) const DEFAULT_PAGE_BYTES: u64 = 8 * 1024 * 1024;
/// Most bytes of an export chunk: a chunk ends after the row that reaches it (16 MiB).
pub(crate) const DEFAULT_CHUNK_BYTES: u64 = 16 * 1024 * 1024;
/// Export chunks fetched at once, each a key range on a connection of the route's share (2).
pub(crate) const DEFAULT_EXPORT_PARALLEL: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(2).expect("not zero");

/// Whether `Location` and `Content-Location` pointing at an upstream are rewritten to paths on
/// pagegate, so clients are never sent around it to the backend (true).
pub(crate) const DEFAULT_REWRITE_REDIRECTS: bool = true;
/// Whether an upstream reads a format extension as a format (`/events.json` as `/events`,
/// Rails and Django REST framework format suffixes), so routes match that reading too (true).
pub(crate) const DEFAULT_FORMAT_SUFFIXES: bool = true;
/// Time allowed to open a TCP connection to an upstream (2 seconds).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed from sending a request until the upstream's response head arrives (30 seconds).
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed between two body frames, in either direction (60 seconds).
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle pooled upstream connection is kept (4 seconds). Keep it below the upstream's
/// own keep-alive timeout (Node.js: 5 s) so pagegate never reuses a connection the upstream closes.
pub(crate) const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Most idle pooled connections kept per upstream (32).
pub(crate) const DEFAULT_POOL_MAX_IDLE: usize = 32;

/// Query parameter that carries the page size (`limit`).
pub(crate) const DEFAULT_LIMIT_PARAM: &str = "limit";
/// Query parameter that carries the offset when neither `offset_param` nor `page_param` is set.
pub(crate) const DEFAULT_OFFSET_PARAM: &str = "offset";
/// Number of the first page for page-style routes (`page=1` is offset 0).
pub(crate) const DEFAULT_FIRST_PAGE: u64 = 1;
/// Page size injected when a list request names none (100 items).
pub(crate) const DEFAULT_DEFAULT_LIMIT: u64 = 100;
/// Largest page size a client may ask for (1,000 items).
pub(crate) const DEFAULT_MAX_LIMIT: u64 = 1_000;
/// Deepest offset a client may ask for (10,000 rows); deeper pages must use cursors.
pub(crate) const DEFAULT_MAX_OFFSET: u64 = 10_000;
/// Largest list response pagegate holds and relays (8 MiB); bigger responses are cut.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Upper bound for `max_bytes` (256 MiB): a page is held in memory, so it must stay small.
pub(crate) const MAX_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes all held list pages may reserve together (256 MiB); a page that cannot get its
/// `max_bytes` within [`DEFAULT_HOLD_WAIT`] is answered 503.
pub(crate) const DEFAULT_MAX_HELD_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes one client's held list pages may reserve together (64 MiB, a quarter of the
/// default `max_held_bytes`; never more than `max_held_bytes`), so clients that hold pages
/// and never read them cannot fill the whole budget.
pub(crate) const DEFAULT_MAX_HELD_BYTES_PER_CLIENT: u64 = 64 * 1024 * 1024;
/// How long a list request waits for room under `max_held_bytes` before a 503 (2 seconds).
pub(crate) const DEFAULT_HOLD_WAIT: Duration = Duration::from_secs(2);

/// Query parameter clients send keyset cursors in (`cursor`).
pub(crate) const DEFAULT_CURSOR_PARAM: &str = "cursor";
/// Shortest accepted cursor secret (32 bytes, the HMAC-SHA256 block half).
pub(crate) const MIN_SECRET_LEN: usize = 32;
