//! The conformance suite every [`Store`] backend must pass ([`run_all`], or one test per check
//! with [`conformance_tests!`](crate::conformance_tests)).
//!
//! Each check takes a fresh, empty store and panics with a message naming the broken rule. The
//! checks need a Tokio runtime (they spawn tasks and use timers); a multi-threaded one exercises
//! concurrency best.
//!
//! ```ignore
//! // tests/conformance_mybackend.rs: one #[tokio::test] per check.
//! capstan_store::conformance_tests!(|| async {
//!     std::sync::Arc::new(MyBackend::new_empty().await) as std::sync::Arc<dyn capstan_store::Store>
//! });
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::{
    Error, Event, EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    WatchStream,
};

/// One check: runs against a fresh, empty store and panics on failure.
pub type Check = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

/// How long a check waits for a watch event before calling the store stuck.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Generates one `#[tokio::test]` per conformance check, each on a store from `$make`, an
/// expression callable as `make().await` that returns an empty `Arc<dyn Store>`. The calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_checks!(with_checks tests ($make));
    };
}

/// The list of checks, in one place for both [`checks`] and [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    (expand tests ($make:expr) [$($check:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::Store> = ($make)().await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
    (expand list () [$($check:ident),* $(,)?]) => {
        ::std::vec![$(
            (::std::stringify!($check), {
                fn boxed(store: ::std::sync::Arc<dyn $crate::Store>) -> ::futures::future::BoxFuture<'static, ()> {
                    ::std::boxed::Box::pin($crate::conformance::$check(store))
                }
                boxed as $crate::conformance::Check
            })
        ),*]
    };
    (with_checks $mode:ident $args:tt) => {
        $crate::__conformance_checks! { expand $mode $args [
            revisions_start_at_one_and_increase_by_one,
            create_fails_when_the_key_exists,
            update_with_the_current_mod_revision_replaces_the_value,
            update_with_a_stale_mod_revision_conflicts_and_carries_the_current_value,
            update_of_a_missing_key_conflicts_without_a_current_value,
            delete_with_the_current_or_no_mod_revision_removes_the_key,
            delete_with_a_stale_mod_revision_conflicts_and_keeps_the_key,
            delete_of_a_missing_key_is_not_found,
            create_after_delete_gets_a_new_create_revision,
            get_returns_the_current_value_or_none,
            values_of_a_few_mebibytes_round_trip,
            list_returns_only_keys_under_the_prefix_in_key_order,
            list_pages_with_limit_and_start_after,
            list_at_a_past_revision_sees_the_values_of_then,
            list_at_a_future_revision_fails,
            watch_from_zero_replays_history_then_goes_live,
            watch_from_a_middle_revision_replays_only_later_events,
            watch_only_sees_keys_under_its_prefix,
            delete_events_carry_the_old_value,
            watch_from_a_future_revision_fails,
            watch_started_during_writes_sees_every_later_event_exactly_once,
            compaction_makes_old_revisions_fail_and_keeps_current_values,
            concurrent_creates_of_one_key_have_exactly_one_winner,
            concurrent_writers_get_gapless_revisions_and_lose_no_acknowledged_write,
            compare_and_swap_increments_from_many_writers_are_never_lost,
        ] }
    };
}

/// Every check with its name, in a sensible order.
pub fn checks() -> Vec<(&'static str, Check)> {
    crate::__conformance_checks!(with_checks list ())
}

/// Run every check, each on a fresh store from `make`. Panics with the name of the first check
/// that fails.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for (name, check) in checks() {
        let store = make().await;
        tracing::info!(check = name, "conformance check");
        if let Err(panic) = AssertUnwindSafe(check(store)).catch_unwind().await {
            panic!(
                "conformance check `{name}` failed: {}",
                panic_message(&*panic)
            );
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(non-text panic)".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: unexpected error: {err}"),
    }
}

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn text(kv: &KeyValue) -> String {
    String::from_utf8_lossy(&kv.value).into_owned()
}

fn keys(list: &ListResult) -> Vec<&str> {
    list.items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn create(store: &Arc<dyn Store>, key: &str, value: &str) -> KeyValue {
    ok(
        store.create(key, bytes(value)).await,
        &format!("create {key}"),
    )
}

async fn update(store: &Arc<dyn Store>, key: &str, value: &str, expected: Revision) -> KeyValue {
    ok(
        store.update(key, bytes(value), expected).await,
        &format!("update {key} at mod revision {expected}"),
    )
}

async fn list_at(store: &Arc<dyn Store>, prefix: &str, revision: Option<Revision>) -> ListResult {
    ok(
        store
            .list(
                prefix,
                ListOptions {
                    revision,
                    ..Default::default()
                },
            )
            .await,
        &format!("list {prefix} at {revision:?}"),
    )
}

async fn watch(store: &Arc<dyn Store>, prefix: &str, after: Revision) -> WatchStream {
    ok(
        store.watch(prefix, after).await,
        &format!("watch {prefix} after {after}"),
    )
}

async fn next_event(stream: &mut WatchStream, what: &str) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Err(_) => panic!("{what}: no watch event within {EVENT_TIMEOUT:?}"),
        Ok(None) => panic!("{what}: the watch stream ended"),
        Ok(Some(Err(err))) => panic!("{what}: the watch stream failed: {err}"),
        Ok(Some(Ok(event))) => event,
    }
}

/// Asserts an event's type, key, revision and value.
fn assert_event(event: &Event, event_type: EventType, key: &str, revision: Revision, value: &str) {
    assert_eq!(
        (
            event.event_type,
            event.kv.key.as_str(),
            event.revision(),
            text(&event.kv).as_str()
        ),
        (event_type, key, revision, value),
        "watch event (type, key, revision, value)"
    );
}

// ---------------------------------------------------------------------------------------------
// Revisions and writes

/// The first write gets revision 1 and every write the next one; failed writes use none.
pub async fn revisions_start_at_one_and_increase_by_one(store: Arc<dyn Store>) {
    assert_eq!(
        ok(store.current_revision().await, "current revision"),
        0,
        "an empty store is at revision 0"
    );
    assert_eq!(
        store.compacted_revision(),
        0,
        "an empty store has compacted nothing"
    );
    let a = create(&store, "/r/a", "1").await;
    assert_eq!(
        (a.create_revision, a.mod_revision),
        (1, 1),
        "the first write gets revision 1"
    );
    let a = update(&store, "/r/a", "2", 1).await;
    assert_eq!(
        (a.create_revision, a.mod_revision),
        (1, 2),
        "an update keeps the create revision"
    );
    let b = create(&store, "/r/b", "1").await;
    assert_eq!(b.mod_revision, 3);
    let deleted = ok(store.delete("/r/b", None).await, "delete /r/b");
    assert_eq!(deleted.mod_revision, 4, "a delete gets its own revision");
    assert_eq!(ok(store.current_revision().await, "current revision"), 4);
}

pub async fn create_fails_when_the_key_exists(store: Arc<dyn Store>) {
    create(&store, "/c/a", "first").await;
    match store.create("/c/a", bytes("second")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, "/c/a"),
        other => panic!("creating an existing key must fail with AlreadyExists, got {other:?}"),
    }
    let current = ok(store.get("/c/a").await, "get").expect("the key still exists");
    assert_eq!(
        text(&current),
        "first",
        "a failed create must not change the value"
    );
    let next = create(&store, "/c/b", "x").await;
    assert_eq!(
        next.mod_revision, 2,
        "a failed create must not use a revision"
    );
}

pub async fn update_with_the_current_mod_revision_replaces_the_value(store: Arc<dyn Store>) {
    let created = create(&store, "/u/a", "v1").await;
    let updated = update(&store, "/u/a", "v2", created.mod_revision).await;
    assert_eq!(text(&updated), "v2");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    let got = ok(store.get("/u/a").await, "get").expect("exists");
    assert_eq!(got, updated, "get returns what update answered");
}

pub async fn update_with_a_stale_mod_revision_conflicts_and_carries_the_current_value(
    store: Arc<dyn Store>,
) {
    let v1 = create(&store, "/u/a", "v1").await;
    let v2 = update(&store, "/u/a", "v2", v1.mod_revision).await;
    match store.update("/u/a", bytes("v3"), v1.mod_revision).await {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, "/u/a");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(
                current.as_ref(),
                Some(&v2),
                "Conflict carries the current value"
            );
        }
        other => panic!("an update with a stale mod revision must conflict, got {other:?}"),
    }
    let got = ok(store.get("/u/a").await, "get").expect("exists");
    assert_eq!(
        text(&got),
        "v2",
        "a conflicting update must not change the value"
    );
    assert_eq!(
        ok(store.current_revision().await, "current"),
        v2.mod_revision,
        "a conflict uses no revision"
    );
}

pub async fn update_of_a_missing_key_conflicts_without_a_current_value(store: Arc<dyn Store>) {
    let a = create(&store, "/u/a", "v1").await;
    ok(store.delete("/u/a", None).await, "delete");
    for key in ["/u/a", "/u/never"] {
        match store.update(key, bytes("v2"), a.mod_revision).await {
            Err(Error::Conflict { current: None, .. }) => {}
            other => {
                panic!("updating missing {key} must be Conflict with current None, got {other:?}")
            }
        }
        assert!(
            ok(store.get(key).await, "get").is_none(),
            "updating missing {key} must not create it"
        );
    }
}

pub async fn delete_with_the_current_or_no_mod_revision_removes_the_key(store: Arc<dyn Store>) {
    let a = create(&store, "/d/a", "va").await;
    let deleted = ok(
        store.delete("/d/a", Some(a.mod_revision)).await,
        "delete with matching revision",
    );
    assert_eq!(text(&deleted), "va", "delete returns the value the key had");
    assert_eq!(deleted.create_revision, a.create_revision);
    assert_eq!(
        deleted.mod_revision,
        a.mod_revision + 1,
        "delete returns its own revision as mod revision"
    );
    assert!(
        ok(store.get("/d/a").await, "get").is_none(),
        "a deleted key is gone"
    );

    create(&store, "/d/b", "vb").await;
    let deleted = ok(store.delete("/d/b", None).await, "unconditional delete");
    assert_eq!(text(&deleted), "vb");
    assert!(ok(store.get("/d/b").await, "get").is_none());
}

pub async fn delete_with_a_stale_mod_revision_conflicts_and_keeps_the_key(store: Arc<dyn Store>) {
    let v1 = create(&store, "/d/a", "v1").await;
    let v2 = update(&store, "/d/a", "v2", v1.mod_revision).await;
    match store.delete("/d/a", Some(v1.mod_revision)).await {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!((key.as_str(), expected), ("/d/a", v1.mod_revision));
            assert_eq!(
                current.as_ref(),
                Some(&v2),
                "Conflict carries the current value"
            );
        }
        other => panic!("a delete with a stale mod revision must conflict, got {other:?}"),
    }
    assert_eq!(
        ok(store.get("/d/a").await, "get"),
        Some(v2),
        "the key survives a conflicting delete"
    );
}

pub async fn delete_of_a_missing_key_is_not_found(store: Arc<dyn Store>) {
    for expected in [None, Some(1)] {
        match store.delete("/d/missing", expected).await {
            Err(Error::NotFound(key)) => assert_eq!(key, "/d/missing"),
            other => panic!(
                "deleting a missing key (expected {expected:?}) must be NotFound, got {other:?}"
            ),
        }
    }
    create(&store, "/d/a", "x").await;
    ok(store.delete("/d/a", None).await, "delete");
    assert!(
        matches!(store.delete("/d/a", None).await, Err(Error::NotFound(_))),
        "deleting twice must be NotFound"
    );
    assert_eq!(
        ok(store.current_revision().await, "current"),
        2,
        "failed deletes use no revision"
    );
}

pub async fn create_after_delete_gets_a_new_create_revision(store: Arc<dyn Store>) {
    let first = create(&store, "/k/a", "one").await;
    ok(store.delete("/k/a", None).await, "delete");
    let second = create(&store, "/k/a", "two").await;
    assert_eq!(
        second.create_revision, 3,
        "the new incarnation is created at its own revision"
    );
    assert_ne!(second.create_revision, first.create_revision);
    let updated = update(&store, "/k/a", "three", second.mod_revision).await;
    assert_eq!(updated.create_revision, second.create_revision);
}

pub async fn get_returns_the_current_value_or_none(store: Arc<dyn Store>) {
    assert!(
        ok(store.get("/g/a").await, "get").is_none(),
        "a missing key is None"
    );
    let a = create(&store, "/g/a", "v1").await;
    create(&store, "/g/ab", "other").await;
    assert_eq!(
        ok(store.get("/g/a").await, "get"),
        Some(a.clone()),
        "get is exact, not by prefix"
    );
    let a2 = update(&store, "/g/a", "v2", a.mod_revision).await;
    assert_eq!(ok(store.get("/g/a").await, "get"), Some(a2));
    assert!(
        ok(store.get("/g/").await, "get").is_none(),
        "a prefix is not a key"
    );
}

pub async fn values_of_a_few_mebibytes_round_trip(store: Arc<dyn Store>) {
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let mut stream = watch(&store, "/big/", 0).await;
    let created = ok(
        store.create("/big/a", big.clone()).await,
        "create a 3 MiB value",
    );
    assert_eq!(&*created.value, &big[..]);
    let got = ok(store.get("/big/a").await, "get").expect("exists");
    assert!(*got.value == big[..], "get returns the large value intact");
    let listed = list_at(&store, "/big/", None).await;
    assert!(
        *listed.items[0].value == big[..],
        "list returns the large value intact"
    );
    let event = next_event(&mut stream, "large value event").await;
    assert!(
        *event.kv.value == big[..],
        "watch delivers the large value intact"
    );
    let empty = create(&store, "/big/empty", "").await;
    assert!(empty.value.is_empty(), "an empty value is a value");
    assert_eq!(
        ok(store.get("/big/empty").await, "get").map(|kv| kv.value.len()),
        Some(0)
    );
}

// ---------------------------------------------------------------------------------------------
// Lists

pub async fn list_returns_only_keys_under_the_prefix_in_key_order(store: Arc<dyn Store>) {
    for key in [
        "/a/b/2", "/a/bc", "/a/b/1", "/a/b", "/a/c/1", "/a/b/0/x", "/a/b/10",
    ] {
        create(&store, key, key).await;
    }
    let listed = list_at(&store, "/a/b/", None).await;
    assert_eq!(
        keys(&listed),
        vec!["/a/b/0/x", "/a/b/1", "/a/b/10", "/a/b/2"],
        "list /a/b/ must return exactly its keys in ascending order (not /a/bc or /a/b)"
    );
    assert_eq!(
        listed.revision, 7,
        "a current list is served at the current revision"
    );
    assert_eq!(listed.remaining, 0);
    for kv in &listed.items {
        assert_eq!(text(kv), kv.key, "each item carries its own value");
    }
    assert_eq!(keys(&list_at(&store, "/a/bc", None).await), vec!["/a/bc"]);
    assert_eq!(
        keys(&list_at(&store, "", None).await),
        vec!["/a/b", "/a/b/0/x", "/a/b/1", "/a/b/10", "/a/b/2", "/a/bc", "/a/c/1"],
        "the empty prefix lists everything"
    );
    let none = list_at(&store, "/zzz/", None).await;
    assert!(none.items.is_empty());
    assert_eq!(none.revision, 7, "an empty list still reports the revision");
}

pub async fn list_pages_with_limit_and_start_after(store: Arc<dyn Store>) {
    for i in 0..10 {
        create(&store, &format!("/l/k{i:02}"), "v").await;
    }
    create(&store, "/l2/outside", "v").await;
    create(&store, "/k/outside", "v").await;
    let page = |limit: usize, start_after: Option<&str>, revision: Option<Revision>| {
        let store = store.clone();
        let start_after = start_after.map(str::to_owned);
        async move {
            ok(
                store
                    .list(
                        "/l/",
                        ListOptions {
                            revision,
                            limit: Some(limit),
                            start_after,
                        },
                    )
                    .await,
                "list a page",
            )
        }
    };
    let first = page(3, None, None).await;
    assert_eq!(keys(&first), vec!["/l/k00", "/l/k01", "/l/k02"]);
    assert_eq!(
        first.remaining, 7,
        "remaining counts the keys after the page"
    );
    let second = page(3, Some("/l/k02"), Some(first.revision)).await;
    assert_eq!(keys(&second), vec!["/l/k03", "/l/k04", "/l/k05"]);
    assert_eq!(second.remaining, 4);

    // Keys created between pages do not appear in pages served at the first page's revision.
    create(&store, "/l/k035", "late").await;
    ok(store.delete("/l/k07", None).await, "delete between pages");
    let mut all = keys(&first)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut after = first.items.last().map(|kv| kv.key.clone());
    loop {
        let next = page(3, after.as_deref(), Some(first.revision)).await;
        assert_eq!(
            next.revision, first.revision,
            "pages at a revision are served at it"
        );
        all.extend(next.items.iter().map(|kv| kv.key.clone()));
        if next.remaining == 0 {
            break;
        }
        after = next.items.last().map(|kv| kv.key.clone());
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/l/k{i:02}")).collect();
    assert_eq!(
        all, expected,
        "paging at a fixed revision yields every key of then exactly once"
    );

    let unlimited = ok(
        store
            .list(
                "/l/",
                ListOptions {
                    limit: Some(0),
                    ..Default::default()
                },
            )
            .await,
        "list with limit 0",
    );
    assert_eq!(
        unlimited.items.len(),
        10,
        "limit 0 means no limit (9 old + 1 late)"
    );
    assert_eq!(unlimited.remaining, 0);
    let past_end = page(3, Some("/l/k99"), None).await;
    assert!(
        past_end.items.is_empty() && past_end.remaining == 0,
        "a cursor past the end gives nothing"
    );
    let exact = page(10, None, None).await;
    assert_eq!(
        (exact.items.len(), exact.remaining),
        (10, 0),
        "a full last page has nothing remaining"
    );
}

pub async fn list_at_a_past_revision_sees_the_values_of_then(store: Arc<dyn Store>) {
    create(&store, "/p/a", "a1").await; // 1
    create(&store, "/p/b", "b1").await; // 2
    update(&store, "/p/a", "a2", 1).await; // 3
    ok(store.delete("/p/b", None).await, "delete /p/b"); // 4
    create(&store, "/p/c", "c1").await; // 5
    create(&store, "/p/b", "b2").await; // 6

    let values = |list: &ListResult| -> Vec<(String, String, Revision, Revision)> {
        list.items
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv),
                    kv.create_revision,
                    kv.mod_revision,
                )
            })
            .collect()
    };
    let s = |k: &str, v: &str, c: Revision, m: Revision| (k.to_owned(), v.to_owned(), c, m);

    let at2 = list_at(&store, "/p/", Some(2)).await;
    assert_eq!(at2.revision, 2);
    assert_eq!(
        values(&at2),
        vec![s("/p/a", "a1", 1, 1), s("/p/b", "b1", 2, 2)],
        "list at 2"
    );
    let at3 = list_at(&store, "/p/", Some(3)).await;
    assert_eq!(
        values(&at3),
        vec![s("/p/a", "a2", 1, 3), s("/p/b", "b1", 2, 2)],
        "list at 3 sees the update"
    );
    let at4 = list_at(&store, "/p/", Some(4)).await;
    assert_eq!(
        values(&at4),
        vec![s("/p/a", "a2", 1, 3)],
        "list at 4 does not see the deleted key"
    );
    let at5 = list_at(&store, "/p/", Some(5)).await;
    assert_eq!(
        values(&at5),
        vec![s("/p/a", "a2", 1, 3), s("/p/c", "c1", 5, 5)]
    );
    let at6 = list_at(&store, "/p/", Some(6)).await;
    assert_eq!(
        values(&at6),
        values(&list_at(&store, "/p/", None).await),
        "list at the current revision"
    );
    assert_eq!(
        values(&at6),
        vec![
            s("/p/a", "a2", 1, 3),
            s("/p/b", "b2", 6, 6),
            s("/p/c", "c1", 5, 5)
        ]
    );
    let at0 = list_at(&store, "/p/", Some(0)).await;
    assert!(at0.items.is_empty(), "nothing existed at revision 0");

    let paged = ok(
        store
            .list(
                "/p/",
                ListOptions {
                    revision: Some(2),
                    limit: Some(1),
                    start_after: None,
                },
            )
            .await,
        "paged past list",
    );
    assert_eq!(
        (keys(&paged), paged.remaining),
        (vec!["/p/a"], 1),
        "remaining is counted at the revision"
    );
}

pub async fn list_at_a_future_revision_fails(store: Arc<dyn Store>) {
    create(&store, "/f/a", "v").await;
    match store
        .list(
            "/f/",
            ListOptions {
                revision: Some(2),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (2, 1))
        }
        other => {
            panic!("listing at a future revision must fail with FutureRevision, got {other:?}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watches

pub async fn watch_from_zero_replays_history_then_goes_live(store: Arc<dyn Store>) {
    create(&store, "/w/a", "a1").await;
    update(&store, "/w/a", "a2", 1).await;
    ok(store.delete("/w/a", Some(2)).await, "delete");
    let mut stream = watch(&store, "/w/", 0).await;

    let e1 = next_event(&mut stream, "history 1").await;
    assert_event(&e1, EventType::Put, "/w/a", 1, "a1");
    assert_eq!(e1.prev, None, "a create has no previous value");
    let e2 = next_event(&mut stream, "history 2").await;
    assert_event(&e2, EventType::Put, "/w/a", 2, "a2");
    assert_eq!(
        e2.prev.as_ref().map(|p| (text(p), p.mod_revision)),
        Some(("a1".into(), 1)),
        "update's prev"
    );
    let e3 = next_event(&mut stream, "history 3").await;
    assert_event(&e3, EventType::Delete, "/w/a", 3, "a2");

    create(&store, "/w/b", "b1").await;
    let live = next_event(&mut stream, "live event").await;
    assert_event(&live, EventType::Put, "/w/b", 4, "b1");
    assert_eq!(live.kv.create_revision, 4);
}

pub async fn watch_from_a_middle_revision_replays_only_later_events(store: Arc<dyn Store>) {
    for i in 1..=5 {
        create(&store, &format!("/m/{i}"), &i.to_string()).await;
    }
    let mut stream = watch(&store, "/m/", 3).await;
    assert_event(
        &next_event(&mut stream, "history").await,
        EventType::Put,
        "/m/4",
        4,
        "4",
    );
    assert_event(
        &next_event(&mut stream, "history").await,
        EventType::Put,
        "/m/5",
        5,
        "5",
    );
    create(&store, "/m/6", "6").await;
    assert_event(
        &next_event(&mut stream, "live").await,
        EventType::Put,
        "/m/6",
        6,
        "6",
    );

    let mut at_head = watch(&store, "/m/", 6).await;
    create(&store, "/m/7", "7").await;
    assert_event(
        &next_event(&mut at_head, "watch from the current revision").await,
        EventType::Put,
        "/m/7",
        7,
        "7",
    );
}

pub async fn watch_only_sees_keys_under_its_prefix(store: Arc<dyn Store>) {
    create(&store, "/a/bc", "no").await; // 1
    create(&store, "/a/b/1", "yes").await; // 2
    create(&store, "/x", "no").await; // 3
    let mut stream = watch(&store, "/a/b/", 0).await;
    create(&store, "/a/b", "no").await; // 4
    create(&store, "/a/b/2", "yes").await; // 5
    create(&store, "/a/bcd/2", "no").await; // 6
    create(&store, "/a/b/3", "yes").await; // 7
    let seen: Vec<(String, Revision)> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let event = next_event(&mut stream, "prefix watch").await;
            seen.push((event.kv.key.clone(), event.revision()));
        }
        seen
    };
    assert_eq!(
        seen,
        vec![
            ("/a/b/1".into(), 2),
            ("/a/b/2".into(), 5),
            ("/a/b/3".into(), 7)
        ],
        "a watch on /a/b/ sees only its keys, from history and live"
    );
    let mut everything = watch(&store, "", 5).await;
    assert_eq!(
        next_event(&mut everything, "empty prefix").await.kv.key,
        "/a/bcd/2"
    );
    assert_eq!(
        next_event(&mut everything, "empty prefix").await.kv.key,
        "/a/b/3"
    );
}

pub async fn delete_events_carry_the_old_value(store: Arc<dyn Store>) {
    let mut stream = watch(&store, "/e/", 0).await;
    let created = create(&store, "/e/a", "v1").await;
    let updated = update(&store, "/e/a", "v2", created.mod_revision).await;
    let deleted = ok(
        store.delete("/e/a", Some(updated.mod_revision)).await,
        "delete",
    );
    next_event(&mut stream, "create").await;
    next_event(&mut stream, "update").await;
    let event = next_event(&mut stream, "delete").await;
    assert_eq!(event.event_type, EventType::Delete);
    assert_eq!(
        event.kv,
        KeyValue {
            mod_revision: deleted.mod_revision,
            ..updated.clone()
        },
        "a delete event's kv is the old value at the delete's revision"
    );
    assert_eq!(
        event.kv, deleted,
        "the delete event matches what delete returned"
    );
    assert_eq!(
        event.prev,
        Some(updated.clone()),
        "a delete event's prev is the value before"
    );

    let mut replay = watch(&store, "/e/", 2).await;
    let replayed = next_event(&mut replay, "replayed delete").await;
    assert_eq!(
        replayed, event,
        "a replayed delete event equals the live one"
    );
}

pub async fn watch_from_a_future_revision_fails(store: Arc<dyn Store>) {
    create(&store, "/f/a", "v").await;
    match store.watch("/f/", 2).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (2, 1))
        }
        Err(other) => {
            panic!("a watch from a future revision must fail with FutureRevision, got {other}")
        }
        Ok(_) => {
            panic!("a watch from a future revision must fail with FutureRevision, got a stream")
        }
    }
}

pub async fn watch_started_during_writes_sees_every_later_event_exactly_once(
    store: Arc<dyn Store>,
) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 100;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    ok(
                        store.create(&format!("/c/{w}/{i:03}"), bytes("v")).await,
                        "concurrent create",
                    );
                }
            })
        })
        .collect();
    // Join in the middle of the burst.
    let start = loop {
        let current = ok(store.current_revision().await, "current");
        if current >= (WRITERS * PER_WRITER / 4) as Revision {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let mut stream = watch(&store, "/c/", start).await;
    for writer in writers {
        writer.await.expect("writer task");
    }
    let last = (WRITERS * PER_WRITER) as Revision;
    let mut expected = start + 1;
    while expected <= last {
        let event = next_event(&mut stream, "event after the join").await;
        assert_eq!(
            event.revision(),
            expected,
            "a watch must deliver every revision after {start} exactly once and in order"
        );
        expected += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction

pub async fn compaction_makes_old_revisions_fail_and_keeps_current_values(store: Arc<dyn Store>) {
    create(&store, "/k/a", "a1").await; // 1
    update(&store, "/k/a", "a2", 1).await; // 2
    create(&store, "/k/b", "b1").await; // 3
    ok(store.delete("/k/b", None).await, "delete /k/b"); // 4
    create(&store, "/k/c", "c1").await; // 5
    update(&store, "/k/c", "c2", 5).await; // 6

    ok(store.compact(4).await, "compact to 4");
    assert_eq!(store.compacted_revision(), 4);
    match store
        .list(
            "/k/",
            ListOptions {
                revision: Some(3),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (3, 4)),
        other => {
            panic!("a list before the compacted revision must fail with Compacted, got {other:?}")
        }
    }
    match store.watch("/k/", 3).await {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, 4),
        Err(other) => {
            panic!("a watch before the compacted revision must fail with Compacted, got {other}")
        }
        Ok(_) => {
            panic!("a watch before the compacted revision must fail with Compacted, got a stream")
        }
    }
    let at4 = list_at(&store, "/k/", Some(4)).await;
    assert_eq!(
        at4.items
            .iter()
            .map(|kv| (kv.key.as_str(), text(kv)))
            .collect::<Vec<_>>(),
        vec![("/k/a", "a2".to_owned())],
        "the compacted revision itself can still be listed"
    );
    let mut stream = watch(&store, "/k/", 4).await;
    let e5 = next_event(&mut stream, "event after the compacted revision").await;
    assert_event(&e5, EventType::Put, "/k/c", 5, "c1");
    let e6 = next_event(&mut stream, "event after the compacted revision").await;
    assert_event(&e6, EventType::Put, "/k/c", 6, "c2");
    assert_eq!(e6.prev.map(|p| p.mod_revision), Some(5));

    let current = list_at(&store, "/k/", None).await;
    assert_eq!(
        current
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), text(kv)))
            .collect::<Vec<_>>(),
        vec![("/k/a", "a2".to_owned()), ("/k/c", "c2".to_owned())],
        "compaction never removes current values"
    );
    assert_eq!(
        ok(store.get("/k/a").await, "get").map(|kv| kv.mod_revision),
        Some(2)
    );

    ok(
        store.compact(2).await,
        "compacting to an older revision does nothing",
    );
    assert_eq!(store.compacted_revision(), 4);
    assert!(
        matches!(store.compact(7).await, Err(Error::FutureRevision { .. })),
        "compacting ahead of the store must fail with FutureRevision"
    );
    ok(store.compact(6).await, "compact to the current revision");
    assert_eq!(list_at(&store, "/k/", Some(6)).await.items.len(), 2);
    let deleted = ok(
        store.delete("/k/a", Some(2)).await,
        "delete after compaction",
    );
    assert_eq!(
        deleted.mod_revision, 7,
        "revisions continue after compaction"
    );
    let mut after = watch(&store, "/k/", 6).await;
    let event = next_event(&mut after, "delete after compaction").await;
    assert_event(&event, EventType::Delete, "/k/a", 7, "a2");
    assert_eq!(
        event.prev.map(|p| p.mod_revision),
        Some(2),
        "the old value survived compaction"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency

pub async fn concurrent_creates_of_one_key_have_exactly_one_winner(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                (
                    i,
                    store
                        .create("/race/key", bytes(&format!("writer {i}")))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (i, Ok(kv)) => winners.push((i, kv)),
            (_, Err(Error::AlreadyExists(_))) => {}
            (i, Err(other)) => {
                panic!("writer {i}: a losing create must fail with AlreadyExists, got {other}")
            }
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 concurrent creates of one key must win"
    );
    let (i, kv) = &winners[0];
    let got = ok(store.get("/race/key").await, "get").expect("exists");
    assert_eq!(
        text(&got),
        format!("writer {i}"),
        "the stored value is the winner's"
    );
    assert_eq!(&got, kv);
    assert_eq!(
        ok(store.current_revision().await, "current"),
        1,
        "losers use no revision"
    );
}

pub async fn concurrent_writers_get_gapless_revisions_and_lose_no_acknowledged_write(
    store: Arc<dyn Store>,
) {
    const WRITERS: usize = 16;
    const PER_WRITER: usize = 40;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..PER_WRITER {
                    let key = format!("/g/{w:02}/{i:03}");
                    let kv = ok(store.create(&key, bytes(&key)).await, "concurrent create");
                    acked.push(kv);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("writer task"));
    }
    let total = (WRITERS * PER_WRITER) as Revision;
    let mut revisions: Vec<Revision> = acked.iter().map(|kv| kv.mod_revision).collect();
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (1..=total).collect::<Vec<_>>(),
        "concurrent writes must get distinct, gapless revisions"
    );
    assert_eq!(ok(store.current_revision().await, "current"), total);

    let listed = list_at(&store, "/g/", None).await;
    assert_eq!(
        listed.items.len(),
        acked.len(),
        "every acknowledged write is listed"
    );
    acked.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        listed.items, acked,
        "each listed item is exactly what its create answered"
    );

    let mut stream = watch(&store, "/g/", 0).await;
    for expected in 1..=total {
        let event = next_event(&mut stream, "replay of concurrent writes").await;
        assert_eq!(
            event.revision(),
            expected,
            "the history has every revision, in order"
        );
    }
}

pub async fn compare_and_swap_increments_from_many_writers_are_never_lost(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const INCREMENTS: usize = 10;
    create(&store, "/cas/counter", "0").await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    let mut current =
                        ok(store.get("/cas/counter").await, "get").expect("counter exists");
                    loop {
                        let n: usize = text(&current).parse().expect("counter is a number");
                        match store
                            .update(
                                "/cas/counter",
                                bytes(&(n + 1).to_string()),
                                current.mod_revision,
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(Error::Conflict {
                                current: Some(newer),
                                ..
                            }) => {
                                conflicts += 1;
                                current = newer;
                            }
                            Err(other) => panic!("increment failed: {other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    let counter = ok(store.get("/cas/counter").await, "get").expect("exists");
    assert_eq!(
        text(&counter),
        (WRITERS * INCREMENTS).to_string(),
        "compare-and-swap must not lose an increment"
    );
    assert_eq!(counter.mod_revision, (WRITERS * INCREMENTS + 1) as Revision);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_listed_once() {
        let names: Vec<_> = checks().into_iter().map(|(name, _)| name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate check names");
        assert!(names.len() >= 20);
    }

    #[test]
    fn panic_messages_are_recovered_from_both_payload_kinds() {
        let text: Box<dyn Any + Send> = Box::new("plain");
        let owned: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(&*text), "plain");
        assert_eq!(panic_message(&*owned), "owned");
        assert_eq!(
            panic_message(&*Box::new(3) as &(dyn Any + Send)),
            "(non-text panic)"
        );
    }
}
