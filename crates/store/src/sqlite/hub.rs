//! The watch hub: a bounded ring of recent events and the live subscribers, fed by the writer
//! ([`Hub::publish`]) and joined by watches ([`Hub::attach`]).
//!
//! Joining copies the ring's history and registers the subscriber under one lock, and publishing
//! appends to the ring and fans out under the same lock, so a watcher sees every event after the
//! revision it joined at exactly once, with no gap between history and live events.
//!
//! The writer never waits for a watcher: each subscriber has a bounded channel, and one that is
//! full when an event arrives is dropped and told it lagged (its stream then ends with
//! [`Error::Compacted`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use crate::{Error, Event, Revision};

pub(crate) struct Hub {
    inner: Mutex<Inner>,
    /// The newest published revision, readable without the lock.
    head: AtomicI64,
    /// The newest revision the writer is committing or has committed (≥ `head`). A watch that
    /// asks for a revision in `(head, inflight]` waits for it to be published instead of failing:
    /// a reader may already see a commit that the writer has not published yet.
    inflight: AtomicI64,
    published: Notify,
    subscriber_buffer: usize,
}

struct Inner {
    ring: VecDeque<Arc<Event>>,
    /// The ring keeps at most this many events...
    capacity: usize,
    /// ...and at most this many bytes of values (objects can be megabytes).
    max_bytes: usize,
    bytes: usize,
    /// The ring holds every event with a revision in `(floor, head]`.
    floor: Revision,
    head: Revision,
    subscribers: Vec<Subscriber>,
    next_id: u64,
    closed: bool,
}

struct Subscriber {
    id: u64,
    prefix: String,
    sender: mpsc::Sender<Arc<Event>>,
    end: Arc<Mutex<Option<End>>>,
}

/// Why the hub stopped feeding a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Its channel was full when the event at this revision arrived.
    Lagged(Revision),
    /// The store closed.
    Closed,
}

/// The outcome of [`Hub::attach`].
pub(crate) enum Attach {
    /// Events after the revision asked for, then live ones through the subscription.
    Attached {
        history: Vec<Arc<Event>>,
        subscription: Subscription,
    },
    /// The ring no longer reaches back to the revision: read the log first.
    TooOld,
    /// The revision is committed but not yet published: wait for [`Hub::wait_published`].
    NotYetPublished,
    /// The revision is ahead of the store.
    Future {
        current: Revision,
    },
    Closed,
}

impl Hub {
    /// A hub whose history starts at `head` (events up to it are only in the log), keeping up
    /// to `capacity` events and `max_bytes` of values.
    pub(crate) fn new(
        head: Revision,
        capacity: usize,
        max_bytes: usize,
        subscriber_buffer: usize,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity.min(1 << 16)),
                capacity,
                max_bytes,
                bytes: 0,
                floor: head,
                head,
                subscribers: Vec::new(),
                next_id: 0,
                closed: false,
            }),
            head: AtomicI64::new(head),
            inflight: AtomicI64::new(head),
            published: Notify::new(),
            subscriber_buffer: subscriber_buffer.max(1),
        }
    }

    pub(crate) fn head(&self) -> Revision {
        self.head.load(Ordering::Acquire)
    }

    /// The writer is about to commit revisions up to `revision`.
    pub(crate) fn begin_commit(&self, revision: Revision) {
        self.inflight.store(revision, Ordering::Release);
    }

    /// The commit announced by [`Hub::begin_commit`] failed: nothing new will be published.
    pub(crate) fn abort_commit(&self) {
        self.inflight.store(self.head(), Ordering::Release);
        self.published.notify_waiters();
    }

    /// Append committed events (in revision order, contiguous after the head) and hand them to
    /// the subscribers whose prefix they match.
    pub(crate) fn publish(&self, events: &[Arc<Event>]) {
        let Some(last) = events.last() else { return };
        {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            for event in events {
                inner.ring.push_back(event.clone());
                inner.bytes += event.kv.value.len();
                while inner.ring.len() > inner.capacity
                    || (inner.bytes > inner.max_bytes && !inner.ring.is_empty())
                {
                    if let Some(oldest) = inner.ring.pop_front() {
                        inner.floor = oldest.revision();
                        inner.bytes -= oldest.kv.value.len();
                    }
                }
                inner.subscribers.retain(|sub| {
                    if !event.kv.key.starts_with(&sub.prefix) {
                        return true;
                    }
                    match sub.sender.try_send(event.clone()) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            *sub.end.lock() = Some(End::Lagged(event.revision()));
                            false
                        }
                        // The stream was dropped; its guard will find nothing to remove.
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                });
            }
            inner.head = last.revision();
            self.head.store(inner.head, Ordering::Release);
        }
        self.published.notify_waiters();
    }

    /// Join at `after`: the ring's events for `prefix` after it, and a subscription for the rest.
    pub(crate) fn attach(self: &Arc<Self>, prefix: &str, after: Revision) -> Attach {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Attach::Closed;
        }
        if after > inner.head {
            return if after <= self.inflight.load(Ordering::Acquire) {
                Attach::NotYetPublished
            } else {
                Attach::Future {
                    current: inner.head,
                }
            };
        }
        if after < inner.floor {
            return Attach::TooOld;
        }
        // The ring is contiguous by revision, so the first event after `after` is at a known index.
        let skip = inner.ring.front().map_or(0, |first| {
            usize::try_from(after + 1 - first.revision()).unwrap_or(0)
        });
        let history = inner
            .ring
            .iter()
            .skip(skip)
            .filter(|event| event.revision() > after && event.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (sender, receiver) = mpsc::channel(self.subscriber_buffer);
        let end = Arc::new(Mutex::new(None));
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.push(Subscriber {
            id,
            prefix: prefix.to_owned(),
            sender,
            end: end.clone(),
        });
        Attach::Attached {
            history,
            subscription: Subscription {
                hub: self.clone(),
                id,
                receiver,
                end,
            },
        }
    }

    /// Wait until `revision` is published or will not be (the commit failed or the store closed).
    pub(crate) async fn wait_published(&self, revision: Revision) {
        loop {
            let notified = self.published.notified();
            tokio::pin!(notified);
            // Registered before checking, so a publish between the check and the await still wakes us.
            notified.as_mut().enable();
            if self.head() >= revision
                || self.inflight.load(Ordering::Acquire) < revision
                || self.inner.lock().closed
            {
                return;
            }
            notified.await;
        }
    }

    /// End every subscription with [`End::Closed`] and refuse new ones.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        for sub in inner.subscribers.drain(..) {
            *sub.end.lock() = Some(End::Closed);
        }
        drop(inner);
        self.published.notify_waiters();
    }

    fn unsubscribe(&self, id: u64) {
        self.inner.lock().subscribers.retain(|sub| sub.id != id);
    }

    #[cfg(test)]
    fn subscriber_count(&self) -> usize {
        self.inner.lock().subscribers.len()
    }
}

/// A live feed of published events; dropping it unsubscribes.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    receiver: mpsc::Receiver<Arc<Event>>,
    end: Arc<Mutex<Option<End>>>,
}

impl Subscription {
    /// The next event, or `Err` once the hub stopped feeding this subscription and every event it
    /// did send has been received. `last` is the revision the watcher has seen, for the error.
    pub(crate) async fn next(&mut self, last: Revision) -> Result<Arc<Event>, Error> {
        match self.receiver.recv().await {
            Some(event) => Ok(event),
            None => Err(match *self.end.lock() {
                Some(End::Lagged(missed)) => Error::Compacted {
                    requested: last + 1,
                    compacted: missed,
                },
                Some(End::Closed) | None => Error::Closed,
            }),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventType, KeyValue};

    fn event(rev: Revision, key: &str) -> Arc<Event> {
        Arc::new(Event {
            event_type: EventType::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Arc::from(&b"v"[..]),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        })
    }

    fn attached(attach: Attach) -> (Vec<Revision>, Subscription) {
        match attach {
            Attach::Attached {
                history,
                subscription,
            } => (history.iter().map(|e| e.revision()).collect(), subscription),
            _ => panic!("expected to attach"),
        }
    }

    #[tokio::test]
    async fn attaching_returns_ring_history_after_the_revision_then_live_events() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 10));
        hub.publish(&[event(1, "/a/1"), event(2, "/b/1"), event(3, "/a/2")]);
        let (history, mut sub) = attached(hub.attach("/a/", 1));
        assert_eq!(history, vec![3]);
        hub.publish(&[event(4, "/a/3"), event(5, "/b/2")]);
        assert_eq!(sub.next(3).await.expect("live").revision(), 4);
    }

    #[test]
    fn a_revision_older_than_the_ring_must_be_read_from_the_log() {
        let hub = Arc::new(Hub::new(0, 2, usize::MAX, 10));
        hub.publish(&[event(1, "/a"), event(2, "/a"), event(3, "/a")]);
        assert!(matches!(hub.attach("/", 0), Attach::TooOld));
        let (history, _sub) = attached(hub.attach("/", 1));
        assert_eq!(history, vec![2, 3]);
    }

    #[test]
    fn a_hub_opened_on_existing_data_sends_older_revisions_to_the_log() {
        let hub = Arc::new(Hub::new(5, 10, usize::MAX, 10));
        assert!(matches!(hub.attach("/", 4), Attach::TooOld));
        let (history, _sub) = attached(hub.attach("/", 5));
        assert!(history.is_empty());
    }

    #[test]
    fn a_revision_ahead_of_the_head_is_future_unless_it_is_being_committed() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 10));
        assert!(matches!(hub.attach("/", 1), Attach::Future { current: 0 }));
        hub.begin_commit(2);
        assert!(matches!(hub.attach("/", 2), Attach::NotYetPublished));
        hub.abort_commit();
        assert!(matches!(hub.attach("/", 2), Attach::Future { current: 0 }));
    }

    #[tokio::test]
    async fn waiting_for_a_revision_returns_once_it_is_published() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 10));
        hub.begin_commit(1);
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_published(1).await }
        });
        tokio::task::yield_now().await;
        hub.publish(&[event(1, "/a")]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }

    #[tokio::test]
    async fn a_full_subscriber_is_dropped_with_lagged_and_does_not_block_publishing() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 2));
        let (_, mut slow) = attached(hub.attach("/", 0));
        let (_, mut other) = attached(hub.attach("/b", 0));
        hub.publish(&[
            event(1, "/a"),
            event(2, "/a"),
            event(3, "/a"),
            event(4, "/b"),
        ]);
        assert_eq!(hub.subscriber_count(), 1, "the slow subscriber is gone");
        assert_eq!(slow.next(0).await.expect("1").revision(), 1);
        assert_eq!(slow.next(1).await.expect("2").revision(), 2);
        match slow.next(2).await {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (3, 3)),
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert_eq!(other.next(0).await.expect("4").revision(), 4);
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 10));
        let (_, sub) = attached(hub.attach("/", 0));
        assert_eq!(hub.subscriber_count(), 1);
        drop(sub);
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[tokio::test]
    async fn closing_ends_subscriptions_with_closed_and_refuses_new_ones() {
        let hub = Arc::new(Hub::new(0, 10, usize::MAX, 10));
        let (_, mut sub) = attached(hub.attach("/", 0));
        hub.close();
        assert!(matches!(sub.next(0).await, Err(Error::Closed)));
        assert!(matches!(hub.attach("/", 0), Attach::Closed));
    }

    #[test]
    fn the_ring_also_gives_up_old_events_to_stay_within_its_byte_budget() {
        // Each test event carries one byte of value.
        let hub = Arc::new(Hub::new(0, 10, 2, 10));
        hub.publish(&[event(1, "/a"), event(2, "/a"), event(3, "/a")]);
        assert!(matches!(hub.attach("/", 0), Attach::TooOld));
        let (history, _sub) = attached(hub.attach("/", 1));
        assert_eq!(history, vec![2, 3]);
    }

    #[test]
    fn a_hub_without_history_still_tracks_its_floor() {
        let hub = Arc::new(Hub::new(0, 0, usize::MAX, 10));
        hub.publish(&[event(1, "/a"), event(2, "/a")]);
        assert!(matches!(hub.attach("/", 1), Attach::TooOld));
        let (history, _sub) = attached(hub.attach("/", 2));
        assert!(history.is_empty());
    }
}
