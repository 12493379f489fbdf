//! HTTP/2 control-frame flood guard: counts the SETTINGS, PING, PRIORITY, RST_STREAM and
//! WINDOW_UPDATE frames a client sends, from their frame headers as the bytes pass, and cuts a
//! connection that sends more than [`HTTP2_MAX_CONTROL_FRAMES`] per [`HTTP2_CONTROL_WINDOW`].
//!
//! Each of those frames makes h2 do work (an answer to write, a tree to update) at no cost to a
//! client that reads the answers, so a flood burns about one core per connection. Frames a
//! normal exchange explains are free:
//!
//! * each HEADERS frame the client sends opens a stream and earns [`FREE_PER_STREAM`] frames
//!   (a PRIORITY, a stream WINDOW_UPDATE, a RST_STREAM);
//! * each DATA frame pagegate sends earns [`FREE_PER_DATA`] WINDOW_UPDATEs or PINGs (the
//!   stream's and the connection's window; gRPC's bandwidth probe PINGs as data arrives), so a
//!   download of any size, read by a client that grants window after every frame, is never
//!   cut.
//!
//! Past the bound the client gets GOAWAY `ENHANCE_YOUR_CALM` (when no frame of pagegate's is
//! half written) and the connection is closed. Only HTTP/2 connections carry this state; HTTP/1
//! pays one branch per read.
//!
//! Hand-written: hyper and h2 expose no frame hooks, and this needs only the 9-byte frame
//! header (RFC 9113 §4.1), not a codec.

use tokio::time::Instant;

use crate::config::defaults::{
    FREE_PER_DATA, FREE_PER_STREAM, HTTP2_CONTROL_WINDOW, HTTP2_MAX_CONTROL_FRAMES,
};

/// Most free frames a connection may have in hand, of either kind: the bound itself.
const CREDIT_CAP: u64 = HTTP2_MAX_CONTROL_FRAMES as u64;

/// Length of an HTTP/2 frame header.
const HEAD: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
/// GOAWAY's error code for a peer that "is exhibiting a behavior that might be generating
/// excessive load" (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Walks a byte stream frame by frame, seeing each frame's header once.
#[derive(Debug, Default)]
struct Walker {
    head: [u8; HEAD],
    /// Bytes of `head` filled so far.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
}

impl Walker {
    /// Feeds `bytes`, calling `seen(type, stream)` for every completed frame header.
    fn feed(&mut self, mut bytes: &[u8], mut seen: impl FnMut(u8, u32)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEAD - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEAD {
                let h = self.head;
                self.have = 0;
                self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                seen(h[3], stream);
            }
        }
    }

    /// Between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }
}

/// One HTTP/2 connection's frame accounting.
#[derive(Debug)]
pub(super) struct Frames {
    inbound: Walker,
    outbound: Walker,
    /// The highest stream the client opened (GOAWAY's last-stream-id).
    last_stream: u32,
    /// Free control frames earned by streams the client opened.
    stream_credit: u64,
    /// Free WINDOW_UPDATEs and PINGs earned by DATA frames pagegate sent.
    window_credit: u64,
    /// Counted frames in the current window, and when it began.
    counted: u32,
    /// Counted frames in the window before: the count slides, estimated from the two, so a
    /// burst across a window's edge counts whole.
    previous: u32,
    /// The bound was passed: the connection is over.
    over: bool,
    since: Instant,
}

impl Frames {
    pub(super) fn new() -> Self {
        Self {
            inbound: Walker::default(),
            outbound: Walker::default(),
            last_stream: 0,
            stream_credit: 0,
            window_credit: 0,
            counted: 0,
            previous: 0,
            over: false,
            since: Instant::now(),
        }
    }

    /// Bytes the client sent (after the preface); true when they flood.
    pub(super) fn read(&mut self, bytes: &[u8]) -> bool {
        let mut flood = false;
        let mut inbound = std::mem::take(&mut self.inbound);
        inbound.feed(bytes, |kind, stream| {
            flood |= self.inbound_frame(kind, stream);
        });
        self.inbound = inbound;
        flood
    }

    /// Bytes pagegate wrote to the client.
    pub(super) fn wrote(&mut self, bytes: &[u8]) {
        let credit = &mut self.window_credit;
        self.outbound.feed(bytes, |kind, _| {
            if kind == DATA {
                // Capped: a long download cannot bank credit for a later burst.
                *credit = credit.saturating_add(FREE_PER_DATA).min(CREDIT_CAP);
            }
        });
    }

    fn inbound_frame(&mut self, kind: u8, stream: u32) -> bool {
        let free = match kind {
            HEADERS => {
                self.last_stream = self.last_stream.max(stream);
                self.stream_credit = self
                    .stream_credit
                    .saturating_add(FREE_PER_STREAM)
                    .min(CREDIT_CAP);
                return false;
            }
            WINDOW_UPDATE | PING if self.window_credit > 0 => {
                self.window_credit -= 1;
                return false;
            }
            PRIORITY | RST_STREAM | WINDOW_UPDATE => &mut self.stream_credit,
            // Answers to pagegate's own SETTINGS and keep-alive PINGs count too: there are few.
            SETTINGS | PING => return self.count(),
            _ => return false,
        };
        if *free > 0 {
            *free -= 1;
            return false;
        }
        self.count()
    }

    /// Counts one frame; true past the bound, over a sliding window: this window's count
    /// plus the last one's, weighted by how much of it the sliding window still covers.
    fn count(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.since);
        if elapsed >= HTTP2_CONTROL_WINDOW {
            let next = elapsed < 2 * HTTP2_CONTROL_WINDOW;
            self.previous = if next { self.counted } else { 0 };
            self.since = if next {
                self.since + HTTP2_CONTROL_WINDOW
            } else {
                now
            };
            self.counted = 0;
        }
        self.counted += 1;
        let into = now.duration_since(self.since).as_secs_f64();
        let left = 1.0 - into / HTTP2_CONTROL_WINDOW.as_secs_f64();
        let carried = f64::from(self.previous) * left.max(0.0);
        self.over |= carried + f64::from(self.counted) > f64::from(HTTP2_MAX_CONTROL_FRAMES);
        self.over
    }

    /// The bound was passed.
    pub(super) fn over(&self) -> bool {
        self.over
    }

    /// GOAWAY `ENHANCE_YOUR_CALM`, when it can go out whole between pagegate's frames.
    pub(super) fn goaway(&self) -> Option<[u8; HEAD + 8]> {
        if !self.outbound.at_boundary() {
            return None;
        }
        let mut frame = [0u8; HEAD + 8];
        frame[2] = 8; // length
        frame[3] = 0x7; // GOAWAY, flags 0, stream 0
        frame[HEAD..HEAD + 4].copy_from_slice(&self.last_stream.to_be_bytes());
        frame[HEAD + 4..].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        Some(frame)
    }
}

#[cfg(test)]
mod tests;
