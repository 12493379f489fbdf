//! Requests in flight on a route, in total and per client key. A slot is held until the
//! answer's body has been sent or dropped ([`SlotBody`]): a streamed export keeps its slot to
//! its last byte, a client that aborts frees it at once. Requests may wait in a bounded queue
//! for a slot, for a bounded time, one client holding at most its own limit's worth of places
//! ([`super::queue`]).
//!
//! Hand-written: tower's `ConcurrencyLimit` decides in `poll_ready` (cloned services would each
//! have their own) and releases when the response head leaves, and has no per-key limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

use super::ClientKey;
use super::queue::{Capped, NoPlace, Places, Tally};
use crate::limit::config::Queue;

/// Which limit has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The client's own.
    PerClient(u32),
    /// The route's total.
    Total(u32),
}

impl Full {
    /// The limit that is full.
    pub(crate) fn limit(self) -> u32 {
        match self {
            Self::PerClient(n) | Self::Total(n) => n,
        }
    }
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// No slot was free and no queue place either.
    Full(Full),
    /// It waited the queue's timeout.
    Waited(Full, Duration),
}

/// A route's concurrency slots.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Each tenant class's per-client cap (class 0: the default).
    per_client: Vec<Option<u32>>,
    total: Option<u32>,
    queue: Option<(Queue, Arc<Places>)>,
    in_flight: Mutex<Tally>,
    freed: Notify,
}

/// One taken slot, local or a shared lease; dropping it frees it (each is held only for its
/// `Drop`).
#[derive(Debug)]
pub(crate) enum Slot {
    /// In this process's [`Slots`].
    Local(#[allow(dead_code)] LocalSlot),
    /// A lease in Redis, renewed until dropped.
    Lease(#[allow(dead_code)] super::shared::Lease),
    /// One shared with an upgraded connection's tunnel: free when both have let go.
    Shared(#[allow(dead_code)] Arc<Slot>),
}

/// A slot in this process's [`Slots`]; dropping it frees it and wakes the queue.
#[derive(Debug)]
pub(crate) struct LocalSlot {
    slots: Arc<Slots>,
    key: ClientKey,
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.key);
        self.slots.freed.notify_waiters();
    }
}

impl Slots {
    /// The slots of one class.
    #[cfg(test)]
    pub(crate) fn new(
        per_client: Option<u32>,
        total: Option<u32>,
        queue: Option<Queue>,
    ) -> Option<Arc<Self>> {
        Self::tiered(&[per_client], total, queue)
    }

    /// The slots of a route whose classes' per-client caps are `per_client` (the default's
    /// first), which also cap one client's places in the queue.
    pub(crate) fn tiered(
        per_client: &[Option<u32>],
        total: Option<u32>,
        queue: Option<Queue>,
    ) -> Option<Arc<Self>> {
        (per_client.iter().any(Option::is_some) || total.is_some()).then(|| {
            Arc::new(Self {
                per_client: per_client.to_vec(),
                total,
                queue: queue.map(|q| (q, Places::new(q.size.get(), per_client.to_vec()))),
                in_flight: Mutex::new(Tally::default()),
                freed: Notify::new(),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot now, or which limit is full.
    pub(crate) fn try_take(self: &Arc<Self>, key: ClientKey) -> Result<Slot, Full> {
        // A class out of range has the default's cap.
        let class = if key.class() < self.per_client.len() {
            key.class()
        } else {
            0
        };
        let per_client = self.per_client.get(class).copied().flatten();
        self.lock()
            .add(key, self.total, per_client)
            .map_err(|capped| match capped {
                Capped::Total(n) => Full::Total(n),
                Capped::Client(n) => Full::PerClient(n),
            })?;
        Ok(Slot::Local(LocalSlot {
            slots: Arc::clone(self),
            key,
        }))
    }

    /// Whether a refused request may wait in the queue.
    pub(crate) fn queues(&self) -> bool {
        self.queue.is_some()
    }

    /// Waits in the queue for a slot (after [`Self::try_take`] found none).
    pub(crate) async fn wait(self: Arc<Self>, key: ClientKey, full: Full) -> Result<Slot, NoSlot> {
        let Some((queue, places)) = &self.queue else {
            return Err(NoSlot::Full(full));
        };
        let queue = *queue;
        // The place is given back however the wait ends, a client that leaves included.
        let _place = match places.take(key) {
            Ok(place) => place,
            Err(NoPlace::Full) => return Err(NoSlot::Full(full)),
            Err(NoPlace::ClientFull(cap)) => return Err(NoSlot::Full(Full::PerClient(cap))),
        };
        tokio::time::timeout(queue.timeout, async {
            loop {
                let freed = self.freed.notified();
                tokio::pin!(freed);
                // Registered before the check, so a slot freed in between is not missed.
                freed.as_mut().enable();
                if let Ok(slot) = self.try_take(key) {
                    return slot;
                }
                freed.await;
            }
        })
        .await
        .map_err(|_| NoSlot::Waited(full, queue.timeout))
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.lock().total()
    }
}

pin_project! {
    /// An answer's body holding its request's slot until it ends or is dropped.
    pub struct SlotBody<B> {
        #[pin]
        inner: B,
        slot: Option<Slot>,
    }
}

impl<B> SlotBody<B> {
    pub(crate) fn new(inner: B, slot: Slot) -> Self {
        Self {
            inner,
            slot: Some(slot),
        }
    }
}

impl<B> HttpBody for SlotBody<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            // The last byte has left (or the body failed): the slot is free now, not when
            // hyper gets round to dropping the body.
            *this.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
