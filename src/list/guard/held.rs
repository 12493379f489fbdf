//! A held page on its way to the client, which the budget can cut from outside.
//!
//! A page's pieces (slices of the held bytes, which carry the page's reservation) wait in a
//! cell shared with the budget's list of pages in flight. hyper is handed copies of at most
//! [`FRAME`] bytes, and at most the page's in-flight allowance of them at once (a second,
//! small reservation, [`IN_FLIGHT`] at most): a copy is dropped once written to the socket, and
//! only then is the next handed over. So the held bytes and the copies hyper holds are both
//! counted under `max_held_bytes`, and the time since the last copy was written (or handed
//! over) is how long the client has taken nothing: its *stall*.
//!
//! When the budget is full and a request waits, the page stalled the longest (at least
//! [`HELD_UNREAD`]) is cut: its pieces are dropped at once, releasing the held bytes'
//! reservation; on HTTP/1 its connection is closed (which drops hyper's copies); on HTTP/2 the
//! stream alone is reset when hyper next asks (hyper parks a stream that has no window and has
//! no hook to reset it sooner, and the connection's send-stall check closes a connection none
//! of whose streams take anything). The allowance is given back at the cut too: the copies a
//! cut stream leaves parked in the HTTP/2 connection (at most [`IN_FLIGHT`], often less) are
//! no longer counted, so that a page of the whole budget fits again at once; they go with
//! the stream. A page stays listed, and cuttable, until its last copy is written, so a page
//! that hyper could take whole is as cuttable as a large one.
//!
//! Only when a page fills its reservation to within a frame (a page as large as the whole
//! budget or share) is there no allowance: it is handed over as slices of the held bytes,
//! which keep their reservation until written, so the count stays true, but a cut frees it
//! only when hyper lets go.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::Body as HttpBody;
use http_body::{Frame, SizeHint};

use super::budget::{HeldBudget, Reservation};
use crate::BoxError;
use crate::client_addr::Closer;
use crate::config::defaults::HELD_UNREAD;
use crate::sync::lock;

/// Largest frame handed to hyper (16 KiB, HTTP/2's default frame size): the unit in which a
/// client's progress is seen.
pub(super) const FRAME: usize = 16 * 1024;
/// Most bytes of one page handed to hyper and not yet written (two frames, 32 KiB), reserved
/// beside the held bytes.
pub(super) const IN_FLIGHT: usize = 2 * FRAME;

/// The page was cut to make room for another request.
#[derive(Debug, thiserror::Error)]
#[error("the client took nothing of its list page for too long while others waited for room")]
pub(crate) struct HeldCut;

/// How a held page is sent on its connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sending {
    /// Closes the connection (HTTP/1); `None` on HTTP/2, where a cut resets the stream alone.
    pub close: Option<Closer>,
}

/// What the budget's list, the body and the copies in flight share.
pub(super) struct HeldPage {
    pieces: Mutex<VecDeque<Bytes>>,
    /// The reservation of the copies in flight (given back at a cut), and its size in bytes
    /// (0: hand out slices).
    reserved: Mutex<Option<Reservation>>,
    allowance: usize,
    /// Bytes handed to hyper as copies and not yet written.
    in_flight: AtomicUsize,
    /// Woken when a copy is written, or the page is cut.
    waker: AtomicWaker,
    /// Milliseconds after the budget's epoch of the client's last progress.
    progress: AtomicU64,
    cut: AtomicBool,
    close: Option<Closer>,
    budget: Arc<HeldBudget>,
    id: u64,
}

impl std::fmt::Debug for HeldPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldPage")
            .field("id", &self.id)
            .field("in_flight", &self.in_flight)
            .field("progress", &self.progress)
            .field("cut", &self.cut)
            .finish_non_exhaustive()
    }
}

impl HeldPage {
    /// Milliseconds (after the budget's epoch) since which the client has taken nothing, or
    /// 0 when nothing of the page is left to take.
    pub(super) fn stalled_since(&self) -> u64 {
        if self.in_flight.load(Ordering::Acquire) == 0 && lock(&self.pieces).is_empty() {
            return 0;
        }
        self.progress.load(Ordering::Relaxed)
    }

    /// The page was cut (it stays listed until its last copy is gone).
    pub(super) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Cuts the page: its pieces (and so the held bytes' reservation) go now, its connection
    /// too on HTTP/1, and the body fails when next asked.
    pub(super) fn cut(&self) {
        if self.cut.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.pieces).clear();
        drop(lock(&self.reserved).take());
        if let Some(close) = &self.close {
            (close.0)();
        }
        self.waker.wake();
    }

    fn progressed(&self) {
        self.progress.store(self.budget.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for HeldPage {
    fn drop(&mut self) {
        self.budget.unlist(self.id);
    }
}

/// `bytes` carrying `reservation`: released when the last slice of them is dropped.
pub(super) fn reserved(bytes: Bytes, reservation: Reservation) -> Bytes {
    Bytes::from_owner(Reserved {
        bytes,
        _reservation: reservation,
    })
}

/// Held bytes and the reservation they occupy under `max_held_bytes`.
struct Reserved {
    bytes: Bytes,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A copy handed to hyper; written (or dropped with the connection) when dropped.
struct InFlight {
    data: Vec<u8>,
    page: Arc<HeldPage>,
}

impl AsRef<[u8]> for InFlight {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.page
            .in_flight
            .fetch_sub(self.data.len(), Ordering::AcqRel);
        self.page.progressed();
        self.page.waker.wake();
    }
}

/// The body of a held page.
#[derive(Debug)]
pub(crate) struct HeldBody {
    page: Arc<HeldPage>,
}

impl HeldBody {
    /// A body of `pieces`, listed in `budget` until its last byte is written; `allowance`
    /// reserves the copies in flight (see the module's documentation).
    pub(super) fn new(
        budget: &Arc<HeldBudget>,
        pieces: Vec<Bytes>,
        allowance: Option<Reservation>,
        sending: Sending,
    ) -> Self {
        let bytes = allowance
            .as_ref()
            .map_or(0, |a| usize::try_from(a.kib()).unwrap_or(usize::MAX) * 1024);
        let page = budget.list(|id| HeldPage {
            pieces: Mutex::new(pieces.into_iter().filter(|p| !p.is_empty()).collect()),
            reserved: Mutex::new(allowance),
            allowance: bytes,
            in_flight: AtomicUsize::new(0),
            waker: AtomicWaker::new(),
            // Stalled from the start: an HTTP/2 client that grants no window at all is never
            // asked for a frame, and must be as cuttable as one that stops later.
            progress: AtomicU64::new(budget.now_ms()),
            cut: AtomicBool::new(false),
            close: sending.close,
            budget: Arc::clone(budget),
            id,
        });
        Self { page }
    }

    /// The next frame, `Ok(None)` at the end, `Err(())` while the allowance is used up.
    fn next(&self) -> Result<Option<Bytes>, ()> {
        let mut pieces = lock(&self.page.pieces);
        let Some(piece) = pieces.front_mut() else {
            return Ok(None);
        };
        let take = piece.len().min(FRAME);
        let frame = if self.page.allowance < take {
            // No allowance for a copy: a slice keeps the held bytes (and their reservation).
            piece.slice(..take)
        } else {
            let in_flight = self.page.in_flight.load(Ordering::Acquire);
            if in_flight + take > self.page.allowance {
                return Err(());
            }
            self.page.in_flight.fetch_add(take, Ordering::AcqRel);
            Bytes::from_owner(InFlight {
                data: piece[..take].to_vec(),
                page: Arc::clone(&self.page),
            })
        };
        if take == piece.len() {
            pieces.pop_front();
        } else {
            *piece = piece.slice(take..);
        }
        Ok(Some(frame))
    }
}

impl HttpBody for HeldBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let page = &self.page;
        // Registered before looking, so a copy written meanwhile wakes this task.
        page.waker.register(cx.waker());
        if page.is_cut() {
            return Poll::Ready(Some(Err(Box::new(HeldCut))));
        }
        match self.next() {
            Ok(Some(frame)) => {
                page.progressed();
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            // A cut between the check above and `next` emptied the pieces: still a cut.
            Ok(None) if page.is_cut() => Poll::Ready(Some(Err(Box::new(HeldCut)))),
            Ok(None) => Poll::Ready(None),
            Err(()) => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.page.is_cut() && lock(&self.page.pieces).is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(lock(&self.page.pieces).iter().map(|p| p.len() as u64).sum())
    }
}

/// Whether a page stalled since `since` may be cut at `now` (milliseconds).
pub(super) fn stalled_enough(since: u64, now: u64) -> bool {
    since != 0 && u128::from(now.saturating_sub(since)) >= HELD_UNREAD.as_millis()
}

#[cfg(test)]
mod tests;
