//! A held page on its way to the client, which the budget can cut from outside.
//!
//! A page's pieces (slices of the held bytes, which carry its reservation) wait in a cell
//! shared with the budget's list of pages in flight. hyper asks for the next frame only when the
//! client has taken the last one (HTTP/1: when its write buffer has room; HTTP/2: when the
//! stream has window), so the time since a frame was handed over without hyper asking again is
//! how long the page has gone unread. When the budget is full and a request waits, the page
//! unread the longest (at least [`HELD_UNREAD`]) is cut: its pieces are dropped at once,
//! releasing its reservation; on HTTP/1 its connection is closed (hyper's write buffer holds a
//! slice of the page); on HTTP/2 the frames handed over are copies, so nothing of the page
//! outlives the cut, and the stream alone is reset when hyper next asks (hyper parks a stream
//! that has no window and has no hook to reset it sooner; the connection's send-stall check
//! still closes a connection none of whose streams take anything).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::budget::{HeldBudget, lock};
use crate::BoxError;
use crate::client::Closer;
use crate::config::defaults::HELD_UNREAD;

/// Largest frame handed to hyper on HTTP/1 (a slice, not a copy): small enough that hyper asks
/// again as the client reads (64 KiB).
const H1_FRAME: usize = 64 * 1024;
/// Largest frame handed to hyper on HTTP/2, copied (16 KiB, HTTP/2's default frame size).
const H2_FRAME: usize = 16 * 1024;

/// The page was cut to make room for another request.
#[derive(Debug, thiserror::Error)]
#[error("the client took nothing of its list page for too long while others waited for room")]
pub struct HeldCut;

/// What the budget's list and the body share.
pub(super) struct HeldPage {
    pieces: Mutex<VecDeque<Bytes>>,
    /// Milliseconds after the budget's epoch since a frame waits to be taken (0: none waits).
    unread_since: AtomicU64,
    cut: AtomicBool,
    /// HTTP/2: frames are copies of at most [`H2_FRAME`] bytes.
    h2: bool,
    /// HTTP/1: closes the connection.
    close: Option<Closer>,
}

impl std::fmt::Debug for HeldPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldPage")
            .field("unread_since", &self.unread_since)
            .field("cut", &self.cut)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl HeldPage {
    /// Milliseconds (after the budget's epoch) since a frame waits, 0 when none does.
    pub(super) fn unread_since(&self) -> u64 {
        self.unread_since.load(Ordering::Relaxed)
    }

    /// The page was cut (it may stay listed until hyper asks it again).
    pub(super) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Cuts the page: its pieces (and so its reservation) go now, its connection too on
    /// HTTP/1, and the body fails when next asked.
    pub(super) fn cut(&self) {
        if self.cut.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.pieces).clear();
        if let Some(close) = &self.close {
            (close.0)();
        }
    }
}

/// The body of a held page.
#[derive(Debug)]
pub struct HeldBody {
    page: Arc<HeldPage>,
    budget: Arc<HeldBudget>,
    id: u64,
}

impl HeldBody {
    /// A body of `pieces`, listed in `budget` until it ends. `h2`: frames are copied;
    /// `close`: how to close the connection (HTTP/1).
    pub(super) fn new(
        budget: &Arc<HeldBudget>,
        pieces: Vec<Bytes>,
        h2: bool,
        close: Option<Closer>,
    ) -> Self {
        let page = Arc::new(HeldPage {
            pieces: Mutex::new(pieces.into_iter().filter(|p| !p.is_empty()).collect()),
            // Waiting from the start: an HTTP/2 client that grants no window at all is never
            // asked for a frame, and must be as cuttable as one that stops later.
            unread_since: AtomicU64::new(budget.now_ms()),
            cut: AtomicBool::new(false),
            h2,
            close: if h2 { None } else { close },
        });
        let id = budget.list(&page);
        Self {
            page,
            budget: Arc::clone(budget),
            id,
        }
    }

    fn next(&self) -> Option<Bytes> {
        let mut pieces = lock(&self.page.pieces);
        let piece = pieces.front_mut()?;
        let most = if self.page.h2 { H2_FRAME } else { H1_FRAME };
        let take = piece.len().min(most);
        let frame = if self.page.h2 {
            // A copy: nothing hyper holds keeps the page (and its reservation) alive.
            Bytes::copy_from_slice(&piece[..take])
        } else {
            piece.slice(..take)
        };
        if take == piece.len() {
            pieces.pop_front();
        } else {
            *piece = piece.slice(take..);
        }
        Some(frame)
    }
}

impl HttpBody for HeldBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // hyper asks again: the client took the last frame.
        self.page.unread_since.store(0, Ordering::Relaxed);
        if self.page.cut.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(HeldCut))));
        }
        let Some(frame) = self.next() else {
            // A cut between the check above and `next` emptied the pieces: still a cut.
            if self.page.cut.load(Ordering::Acquire) {
                return Poll::Ready(Some(Err(Box::new(HeldCut))));
            }
            return Poll::Ready(None);
        };
        if !self.is_end_stream() {
            let now = self.budget.now_ms();
            self.page.unread_since.store(now, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        !self.page.cut.load(Ordering::Acquire) && lock(&self.page.pieces).is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(lock(&self.page.pieces).iter().map(|p| p.len() as u64).sum())
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.budget.unlist(self.id);
    }
}

/// How long a page must have gone unread before it may be cut, in milliseconds.
pub(super) fn unread_enough(since: u64, now: u64) -> bool {
    since != 0 && u128::from(now.saturating_sub(since)) >= HELD_UNREAD.as_millis()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn pieces() -> Vec<Bytes> {
        vec![
            Bytes::from(vec![b'a'; 40_000]),
            Bytes::new(),
            Bytes::from_static(b"]"),
        ]
    }

    #[tokio::test]
    async fn frames_are_bounded_exact_and_end_with_the_last() {
        let budget = HeldBudget::new(1 << 20, 1 << 20);
        for (h2, sizes) in [
            (true, vec![16_384, 16_384, 7_232, 1]),
            (false, vec![40_000, 1]),
        ] {
            let mut body = HeldBody::new(&budget, pieces(), h2, None);
            assert_eq!(body.size_hint().exact(), Some(40_001));
            let mut got = Vec::new();
            while let Some(frame) = body.frame().await {
                got.push(frame.expect("data").into_data().expect("data").len());
            }
            assert_eq!(got, sizes, "h2: {h2}");
            assert!(body.is_end_stream());
        }
    }

    #[tokio::test]
    async fn a_cut_page_drops_its_pieces_closes_http1_and_fails_when_asked() {
        let budget = HeldBudget::new(1 << 20, 1 << 20);
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        let close = Closer(Arc::new(move || flag.store(true, Ordering::SeqCst)));
        let owner = Bytes::from(vec![b'x'; 100_000]);
        let mut body = HeldBody::new(&budget, vec![owner.slice(..)], false, Some(close));
        assert_ne!(body.page.unread_since(), 0, "unread until hyper first asks");
        let first = body.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data").len(), H1_FRAME);
        assert_ne!(body.page.unread_since(), 0, "a frame waits for the client");
        body.page.cut();
        assert!(
            closed.load(Ordering::SeqCst),
            "HTTP/1: the connection is closed"
        );
        assert!(
            lock(&body.page.pieces).is_empty(),
            "the page's pieces are gone"
        );
        assert!(!body.is_end_stream(), "a cut page did not end");
        assert!(body.frame().await.expect("an error").is_err());
    }
}
