//! Generated bodies: large streams produced on demand, never held whole.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use pagegate::Body;

/// `total` bytes of a repeating pattern, in `chunk`-sized frames, produced as they are polled.
pub fn pattern(total: u64, chunk: usize) -> Body {
    let block: Bytes = (0..chunk)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let frames = futures_util::stream::unfold(total, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(block.len() as u64) as usize;
            let frame: Result<_, pagegate::BoxError> = Ok(http_body::Frame::data(block.slice(..n)));
            Some((frame, left - n as u64))
        }
    });
    StreamBody::new(frames).boxed()
}

/// A JSON array of `items` objects `{"id":N,"pad":"…"}` with ids `first..`, streamed in frames.
pub fn json_items(first: u64, items: u64, pad: usize) -> Body {
    let padding = "x".repeat(pad);
    let frames = futures_util::stream::unfold((0u64, false), move |(done, closed)| {
        let padding = padding.clone();
        async move {
            if closed {
                return None;
            }
            let mut out = String::new();
            if done == 0 {
                out.push('[');
            }
            let end = items.min(done + 256);
            for i in done..end {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{{\"id\":{},\"pad\":\"{padding}\"}}", first + i));
            }
            let finished = end == items;
            if finished {
                out.push(']');
            }
            let frame: Result<_, pagegate::BoxError> = Ok(http_body::Frame::data(Bytes::from(out)));
            Some((frame, (end, finished)))
        }
    });
    StreamBody::new(frames).boxed()
}

/// `chunks` copies of `row`, one every `every`: an export that streams for a while.
pub fn slow_rows(chunks: u32, every: std::time::Duration, row: &'static [u8]) -> Body {
    let frames = futures_util::stream::unfold(0u32, move |n| async move {
        if n == chunks {
            return None;
        }
        tokio::time::sleep(every).await;
        let frame: Result<_, pagegate::BoxError> =
            Ok(http_body::Frame::data(Bytes::from_static(row)));
        Some((frame, n + 1))
    });
    StreamBody::new(frames).boxed()
}

/// How an HTTP/2 response body ends, read to its end (its window given back as it is read, so
/// the server is asked for the rest): the error that cut it (a reset, or the connection's
/// end), or `None` if it ended cleanly. Panics if it has not ended within `limit`.
pub async fn h2_cut(body: &mut h2::RecvStream, limit: std::time::Duration) -> Option<h2::Error> {
    tokio::time::timeout(limit, async {
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                }
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        }
    })
    .await
    .expect("the stream ended in time")
}
