//! Differential property test: random sequences of store operations give the same observable
//! results on the SQLite and Postgres stores as on the in-memory store.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use ghauthz::CheckRequest;
use std::sync::Arc;
use std::time::Duration;

use crate::common;

use ghauthz::store::{
    Actor, AppRecord, AuditAction, AuditEvent, AuditFilter, AuditOutcome, Broadcast, DeployOutcome, IssueLimit,
    IssueOutcome, LinkRecord, MemoryStore, Redemption, SqliteStore, Store, StoreError,
};
use ghauthz::{AppId, Email, RepoId, Timestamp, UserId, Visibility};
use proptest::prelude::*;

const APPS: usize = 3;
const EMAILS: usize = 3;
const LIMIT: IssueLimit = IssueLimit::new(2, Duration::from_secs(60));

#[derive(Debug, Clone)]
enum Op {
    PutApp { app: usize, by: u64 },
    AddViewer { app: usize, email: usize },
    RemoveViewer { app: usize, email: usize },
    IssueLink { app: usize, email: usize, token: u8 },
    UseLink { token: u8 },
    Advance { secs: u64 },
    DeleteApp { app: usize },
    DeleteAccount { by: u64 },
    Delivery { id: u8 },
    Deploy { app: usize, by: u64, branch: usize },
    SetVisibility { app: usize, public: bool },
    Refuse { app: usize, by: u64 },
    Audit { app: Option<usize>, since_secs: u64, limit: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..APPS, 1..3u64).prop_map(|(app, by)| Op::PutApp { app, by }),
        (0..APPS, 0..EMAILS).prop_map(|(app, email)| Op::AddViewer { app, email }),
        (0..APPS, 0..EMAILS).prop_map(|(app, email)| Op::RemoveViewer { app, email }),
        (0..APPS, 0..EMAILS, 0..6u8).prop_map(|(app, email, token)| Op::IssueLink { app, email, token }),
        (0..6u8).prop_map(|token| Op::UseLink { token }),
        (1..90u64).prop_map(|secs| Op::Advance { secs }),
        (0..APPS).prop_map(|app| Op::DeleteApp { app }),
        (1..3u64).prop_map(|by| Op::DeleteAccount { by }),
        (0..4u8).prop_map(|id| Op::Delivery { id }),
        (0..APPS, 1..3u64, 0..2usize).prop_map(|(app, by, branch)| Op::Deploy { app, by, branch }),
        (0..APPS, any::<bool>()).prop_map(|(app, public)| Op::SetVisibility { app, public }),
        (0..APPS, 1..4u64).prop_map(|(app, by)| Op::Refuse { app, by }),
        (proptest::option::of(0..APPS), 0..300u64, 1..5u32).prop_map(|(app, since_secs, limit)| Op::Audit {
            app,
            since_secs,
            limit
        }),
    ]
}

fn app_id(i: usize) -> AppId {
    AppId(format!("app{i}"))
}

/// App `i`'s record, deployed by user `by`.
fn record(i: usize, visibility: Visibility, by: u64) -> AppRecord {
    AppRecord {
        id: app_id(i),
        owner: "acme".into(),
        repo: format!("repo{i}"),
        repo_id: RepoId(i as u64 + 1),
        branch: "main".into(),
        main_file: "app.py".into(),
        visibility,
        deployed_by: UserId(by),
    }
}

fn email(i: usize) -> Email {
    Email::parse(&format!("user{i}@example.com")).unwrap()
}

/// What a caller can observe after an operation.
#[derive(Debug, PartialEq)]
enum Seen {
    Unit,
    Bool(bool),
    Issue(Result<IssueOutcome, StoreError>),
    Apps(Vec<AppId>),
    Deploy(DeployOutcome),
    Visibility(Option<bool>),
    Audit(Vec<AuditEvent>),
}

async fn apply(store: &dyn Store, op: &Op, now: &mut Timestamp) -> Seen {
    match *op {
        Op::PutApp { app, by } => {
            store.seed_app(&record(app, Visibility::Private, by)).await.unwrap();
            Seen::Unit
        }
        Op::AddViewer { app, email: e } => {
            if store.app(&app_id(app)).await.unwrap().is_none() {
                return Seen::Unit; // the authorizer never adds a viewer to a missing app
            }
            Seen::Bool(store.add_viewer(&app_id(app), &email(e), &Actor::Operator, *now).await.unwrap())
        }
        Op::RemoveViewer { app, email: e } => {
            Seen::Bool(store.remove_viewer(&app_id(app), &email(e), &Actor::Github(UserId(9)), *now).await.unwrap())
        }
        Op::IssueLink { app, email: e, token } => {
            if store.app(&app_id(app)).await.unwrap().is_none() {
                return Seen::Unit;
            }
            let mut hash = [0u8; 32];
            hash[0] = token;
            hash[1] = now.0 as u8;
            hash[2] = (now.0 >> 8) as u8;
            if store.link(&hash).await.unwrap().is_some() {
                return Seen::Unit;
            }
            let link = LinkRecord {
                hash,
                app: app_id(app),
                email: email(e),
                issued_at: *now,
                expires_at: now.plus(Duration::from_secs(120)),
                used_at: None,
                grant: None,
            };
            Seen::Issue(store.issue_link(&link, LIMIT).await)
        }
        Op::UseLink { token } => {
            // Use the most recent link issued with this token byte, if any.
            let mut hash = [0u8; 32];
            hash[0] = token;
            hash[1] = now.0 as u8;
            hash[2] = (now.0 >> 8) as u8;
            Seen::Bool(store.use_link(&Redemption::new(hash, *now)).await.unwrap())
        }
        Op::Advance { secs } => {
            *now = now.plus(Duration::from_secs(secs));
            Seen::Unit
        }
        Op::DeleteApp { app } => {
            let event = AuditEvent::new(*now, &Actor::Github(UserId(1)), &app_id(app), AuditAction::Delete);
            Seen::Bool(store.delete_app(&app_id(app), &event).await.unwrap())
        }
        Op::Deploy { app, by, branch } => {
            let record = AppRecord { branch: format!("b{branch}"), ..record(app, Visibility::Public, by) };
            let event = AuditEvent::new(*now, &Actor::Github(UserId(by)), &app_id(app), AuditAction::Deploy)
                .with_detail(record.coordinates());
            Seen::Deploy(store.deploy_app(&record, &event).await.unwrap())
        }
        Op::SetVisibility { app, public } => {
            let visibility = if public { Visibility::Public } else { Visibility::Private };
            let event = AuditEvent::new(*now, &Actor::Operator, &app_id(app), AuditAction::Visibility)
                .with_detail(visibility.as_str());
            Seen::Visibility(store.set_visibility(&app_id(app), visibility, &event).await.unwrap())
        }
        Op::Refuse { app, by } => {
            let event = AuditEvent::new(*now, &Actor::Github(UserId(by)), &app_id(app), AuditAction::Deploy)
                .with_outcome(AuditOutcome::Denied)
                .with_detail("github_role");
            store.record(&event, Some(UserId(by))).await.unwrap();
            Seen::Unit
        }
        Op::Audit { app, since_secs, limit } => {
            let mut filter = AuditFilter::new().since(Timestamp(1_000_000).plus(Duration::from_secs(since_secs)));
            if let Some(app) = app {
                filter = filter.for_app(app_id(app));
            }
            Seen::Audit(store.audit(&filter.limit(limit)).await.unwrap())
        }
        Op::DeleteAccount { by } => {
            let mut ids = store.delete_account(UserId(by), ghauthz::Timestamp(0)).await.unwrap();
            ids.sort();
            Seen::Apps(ids)
        }
        Op::Delivery { id } => {
            let b = Broadcast::invalidations(1, vec![]);
            Seen::Bool(store.record_delivery(&format!("delivery-{id}"), *now, &b).await.unwrap())
        }
    }
}

async fn state(store: &dyn Store) -> (Vec<AppRecord>, Vec<(AppId, Vec<Email>)>, Vec<AuditEvent>, usize) {
    let apps = store.apps().await.unwrap();
    let mut viewers = Vec::new();
    for i in 0..APPS {
        viewers.push((app_id(i), store.viewers(&app_id(i)).await.unwrap()));
    }
    (apps, viewers, store.audit_log().await.unwrap(), store.deleted_apps().await.unwrap().len())
}

/// Applies `ops` to `store` and to a fresh in-memory store, comparing every observation.
async fn same_as_memory(store: &dyn Store, ops: &[Op]) -> Result<(), TestCaseError> {
    let memory = MemoryStore::new();
    let (mut t1, mut t2) = (Timestamp(1_000_000), Timestamp(1_000_000));
    for (i, op) in ops.iter().enumerate() {
        let a = apply(&memory, op, &mut t1).await;
        let b = apply(store, op, &mut t2).await;
        prop_assert_eq!(a, b, "step {}: {:?}", i, op);
    }
    prop_assert_eq!(state(&memory).await, state(store).await);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_behaves_like_memory(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = SqliteStore::open(dir.path().join("db")).await.unwrap();
            same_as_memory(&sqlite, &ops).await
        })?;
    }

    #[test]
    fn postgres_behaves_like_memory(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let Some(pg) = common::pg_store().await else { return Ok(()) };
            let result = same_as_memory(&pg, &ops).await;
            pg.close().await;
            result
        })?;
    }
}

// ---- two cached authorizers over one store ----

#[derive(Debug, Clone)]
enum Change {
    Deploy {
        app: usize,
        public: bool,
    },
    Delete {
        app: usize,
        on: usize,
    },
    Invite {
        app: usize,
        email: usize,
        on: usize,
    },
    Remove {
        app: usize,
        email: usize,
        on: usize,
    },
    /// Check every session on every app on authorizer `on`, filling its cache.
    Check {
        on: usize,
    },
    /// Wait until both authorizers have heard the store's feed, then compare.
    Drain,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..APPS, any::<bool>()).prop_map(|(app, public)| Change::Deploy { app, public }),
        (0..APPS, 0..2usize).prop_map(|(app, on)| Change::Delete { app, on }),
        (0..APPS, 0..EMAILS, 0..2usize).prop_map(|(app, email, on)| Change::Invite { app, email, on }),
        (0..APPS, 0..EMAILS, 0..2usize).prop_map(|(app, email, on)| Change::Remove { app, email, on }),
        (0..2usize).prop_map(|on| Change::Check { on }),
        (0..2usize).prop_map(|on| Change::Check { on }),
        Just(Change::Drain),
    ]
}

/// Every session on every app, and nobody on every app, on both authorizers: cached and fresh
/// decisions must be the same.
async fn compare(authz: &[ghauthz::Authorizer; 2], tokens: &[String]) -> Result<(), TestCaseError> {
    use ghauthz::{Capability, Principal};
    for a in authz {
        for i in 0..APPS {
            let mut seen = Vec::new();
            for t in tokens {
                let cached = a.check(&CheckRequest::session(t, &app_id(i), Capability::View)).await.unwrap();
                let fresh = a.check(&CheckRequest::session(t, &app_id(i), Capability::View).fresh()).await.unwrap();
                seen.push((cached.is_allowed(), cached.reason().kind(), fresh.is_allowed(), fresh.reason().kind()));
            }
            let cached =
                a.check(&CheckRequest::new(&Principal::Anonymous, &app_id(i), Capability::View)).await.unwrap();
            let fresh =
                a.check(&CheckRequest::new(&Principal::Anonymous, &app_id(i), Capability::View).fresh()).await.unwrap();
            seen.push((cached.is_allowed(), cached.reason().kind(), fresh.is_allowed(), fresh.reason().kind()));
            for (c, ck, f, fk) in seen {
                prop_assert_eq!((c, ck), (f, fk), "app{}: cached and fresh disagree", i);
            }
        }
    }
    Ok(())
}

/// Applies `changes` through two authorizers sharing `store`, with checks in between; at every
/// drain, and at the end, no cached check of either allows what a fresh read denies (or the
/// reverse).
async fn cached_agrees_with_fresh(
    store: Arc<dyn Store>,
    changes: &[Change],
    drain: Duration,
) -> Result<(), TestCaseError> {
    use ghauthz::{Authorizer, Capability, ChangedBy, ManualClock, Principal};
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(world.now().unwrap());
    let mock = ghauthz::world::MockGithub::start_with_clock(world, Arc::new(clock.clone())).await.unwrap();
    let keys = ghauthz::SessionKeys::generate().unwrap();
    let build = || {
        Authorizer::builder(mock.github_config())
            .clock(Arc::new(clock.clone()))
            .store(store.clone())
            .sessions(keys.clone(), ghauthz::SessionConfig::default())
            .build()
            .unwrap()
    };
    let authz = [build(), build()];
    common::wait_until("both follow the feed", Duration::from_secs(5), || {
        authz.iter().all(|a| a.stats().feed_listening)
    })
    .await;
    let mut tokens: Vec<String> = Vec::new();
    for change in changes {
        match *change {
            Change::Deploy { app, public } => {
                let visibility = if public { Visibility::Public } else { Visibility::Private };
                store.seed_app(&record(app, visibility, 1)).await.unwrap();
            }
            Change::Delete { app, on } => {
                let _ = authz[on].delete_app(&ChangedBy::Operator, &app_id(app)).await;
            }
            Change::Invite { app, email: e, on } => {
                let a = &authz[on];
                if a.add_viewer(&ChangedBy::Operator, &app_id(app), email(e).as_str()).await.is_ok() {
                    let link = a.issue_link(&app_id(app), email(e).as_str()).await;
                    if let Ok(link) = link {
                        let session = a.redeem_link(link.token.expose_secret(), None).await.unwrap();
                        tokens.push(session.token.expose_secret().to_owned());
                    }
                }
            }
            Change::Remove { app, email: e, on } => {
                let _ = authz[on].remove_viewer(&ChangedBy::Operator, &app_id(app), email(e).as_str()).await;
            }
            Change::Check { on } => {
                for t in &tokens {
                    for i in 0..APPS {
                        authz[on].check(&CheckRequest::session(t, &app_id(i), Capability::View)).await.unwrap();
                    }
                }
                for i in 0..APPS {
                    authz[on]
                        .check(&CheckRequest::new(&Principal::Anonymous, &app_id(i), Capability::View))
                        .await
                        .unwrap();
                }
            }
            Change::Drain => {
                tokio::time::sleep(drain).await;
                compare(&authz, &tokens).await?;
            }
        }
    }
    tokio::time::sleep(drain).await;
    compare(&authz, &tokens).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn two_cached_authorizers_on_memory_agree_with_fresh_reads(changes in proptest::collection::vec(change(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(cached_agrees_with_fresh(Arc::new(MemoryStore::new()), &changes, Duration::from_millis(25)))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn two_cached_authorizers_on_sqlite_agree_with_fresh_reads(changes in proptest::collection::vec(change(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = SqliteStore::open(dir.path().join("db")).await.unwrap();
            cached_agrees_with_fresh(Arc::new(sqlite), &changes, Duration::from_millis(500)).await
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn two_cached_authorizers_on_postgres_agree_with_fresh_reads(changes in proptest::collection::vec(change(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let Some(pg) = common::pg_store().await else { return Ok(()) };
            cached_agrees_with_fresh(Arc::new(pg), &changes, Duration::from_millis(250)).await
        })?;
    }
}
