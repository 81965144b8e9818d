//! Watch streams ([`start`]): replay from the SQLite log while the hub's ring does not reach back
//! far enough, then attach to the hub for its recent history and the live events.
//!
//! The stream is a state machine (`Phase`) driven by `step` through `stream::unfold`. It
//! remembers the last revision it yielded and drops anything not newer, so the hand-over from the
//! log to the hub can never deliver an event twice or out of order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::hub::{Attach, Subscription};
use super::read::{self, ReadPool};
use super::Shared;
use crate::{Error, Event, Result, Revision, WatchStream};

/// Log rows read per replay query.
const REPLAY_PAGE: usize = 512;

/// How long a watch waits for a committed revision to be published before calling it future.
/// Publishing follows the commit within microseconds; this only matters if the writer died.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

enum Phase {
    /// Try the hub; go to `Replay` if its ring does not reach back to `covered`.
    Attach,
    /// Read the next page of the log after `covered`.
    Replay,
    Live(Subscription),
    Done,
}

struct State {
    shared: Arc<Shared>,
    reads: Arc<ReadPool>,
    prefix: String,
    /// The revision of the last event yielded (or the starting revision).
    delivered: Revision,
    /// Every event for the prefix up to this revision has been yielded or is in `buffer`.
    covered: Revision,
    buffer: VecDeque<Arc<Event>>,
    phase: Phase,
}

/// A watch of keys under `prefix` after `after`. Fails here, not in the stream, when `after` is
/// compacted or ahead of the store.
pub(crate) async fn start(
    shared: Arc<Shared>,
    reads: Arc<ReadPool>,
    prefix: String,
    after: Revision,
) -> Result<WatchStream> {
    let compacted = shared.compacted.load(std::sync::atomic::Ordering::Acquire);
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let mut state = State {
        shared,
        reads,
        prefix,
        delivered: after,
        covered: after,
        buffer: VecDeque::new(),
        phase: Phase::Attach,
    };
    // Take the first steps now so that a compacted or future revision is this call's error.
    while matches!(state.phase, Phase::Attach | Phase::Replay) && state.buffer.is_empty() {
        advance(&mut state).await?;
    }
    Ok(futures::stream::unfold(state, step).boxed())
}

/// Yield the next event, moving between phases as needed.
async fn step(mut state: State) -> Option<(Result<Event>, State)> {
    loop {
        if let Some(event) = state.buffer.pop_front() {
            if event.revision() <= state.delivered {
                continue;
            }
            state.delivered = event.revision();
            return Some((Ok(Event::clone(&event)), state));
        }
        if matches!(state.phase, Phase::Done) {
            return None;
        }
        if let Err(err) = advance(&mut state).await {
            state.phase = Phase::Done;
            return Some((Err(err), state));
        }
    }
}

/// One transition: fill the buffer or change phase.
async fn advance(state: &mut State) -> Result<()> {
    match &mut state.phase {
        Phase::Done => Ok(()),
        Phase::Live(subscription) => {
            let event = subscription.next(state.delivered).await?;
            state.covered = state.covered.max(event.revision());
            state.buffer.push_back(event);
            Ok(())
        }
        Phase::Replay => {
            let (prefix, after) = (state.prefix.clone(), state.covered);
            let page = state
                .reads
                .run(move |conn| read::history_page(conn, &prefix, after, REPLAY_PAGE))
                .await?;
            state.buffer.extend(page.events);
            state.covered = state.covered.max(page.covered);
            state.phase = Phase::Attach;
            Ok(())
        }
        Phase::Attach => {
            let hub = state.shared.hub.clone();
            match hub.attach(&state.prefix, state.covered) {
                Attach::Attached {
                    history,
                    subscription,
                } => {
                    state.buffer.extend(history);
                    state.phase = Phase::Live(subscription);
                    Ok(())
                }
                Attach::TooOld => {
                    state.phase = Phase::Replay;
                    Ok(())
                }
                Attach::NotYetPublished => {
                    // Either it gets published (attach again) or the commit failed (then it is
                    // reported as future on the next attempt).
                    if tokio::time::timeout(PUBLISH_WAIT, hub.wait_published(state.covered))
                        .await
                        .is_err()
                    {
                        return Err(Error::FutureRevision {
                            requested: state.covered,
                            current: hub.head(),
                        });
                    }
                    Ok(())
                }
                Attach::Future { current } => Err(Error::FutureRevision {
                    requested: state.covered,
                    current,
                }),
                Attach::Closed => Err(Error::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::sqlite::hub::Hub;
    use crate::{EventType, KeyValue};

    fn event(rev: Revision) -> Arc<Event> {
        Arc::new(Event {
            event_type: EventType::Put,
            kv: KeyValue {
                key: format!("/k/{rev}"),
                value: Arc::from(&b"v"[..]),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        })
    }

    fn shared(head: Revision, compacted: Revision) -> Arc<Shared> {
        Arc::new(Shared {
            hub: Arc::new(Hub::new(head, 10, usize::MAX, 10)),
            compacted: AtomicI64::new(compacted),
        })
    }

    #[tokio::test]
    async fn events_handed_over_twice_are_yielded_once_in_order() {
        let state = State {
            shared: shared(0, 0),
            reads: Arc::new(ReadPool::new(Vec::new())),
            prefix: "/k/".into(),
            delivered: 0,
            covered: 3,
            // As if the log replay and the hub's history overlapped.
            buffer: [1, 2, 3, 2, 3, 4].into_iter().map(event).collect(),
            phase: Phase::Done,
        };
        let revisions: Vec<Revision> = futures::stream::unfold(state, step)
            .map(|event| event.expect("event").revision())
            .collect()
            .await;
        assert_eq!(revisions, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_compacted_or_future_revision_fails_the_call_not_the_stream() {
        let reads = Arc::new(ReadPool::new(Vec::new()));
        let compacted = start(shared(10, 5), reads.clone(), "/".into(), 4).await;
        assert!(matches!(
            compacted,
            Err(Error::Compacted {
                requested: 4,
                compacted: 5
            })
        ));
        let future = start(shared(10, 5), reads, "/".into(), 11).await;
        assert!(matches!(
            future,
            Err(Error::FutureRevision {
                requested: 11,
                current: 10
            })
        ));
    }

    #[tokio::test]
    async fn a_watch_at_the_head_goes_live_without_touching_the_log() {
        let shared = shared(3, 0);
        // No read connections: any log access would fail.
        let mut stream = start(
            shared.clone(),
            Arc::new(ReadPool::new(Vec::new())),
            "/k/".into(),
            3,
        )
        .await
        .expect("watch");
        shared.hub.publish(&[event(4)]);
        let got = stream
            .next()
            .await
            .expect("an event")
            .expect("not an error");
        assert_eq!(got.revision(), 4);
    }
}
