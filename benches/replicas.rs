//! Replicas on one Postgres: a link issued and redeemed, and the time from a webhook delivered on
//! one replica to the other replica's cache dropping the fact.
//!
//! Run: `GHAUTHZ_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench --features
//! world,postgres --bench replicas` (without the variable it says it was skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ghauthz::store::{IssueLimit, PgStore, PgStoreOptions};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, Capability, Clock, LinkConfig, ManualClock, Principal, WebhookSecret};
use hmac::Mac;

const SECRET: &str = "It's a Secret to Everybody";

fn main() {
    let Ok(url) = std::env::var("GHAUTHZ_TEST_POSTGRES") else {
        eprintln!("skipped: set GHAUTHZ_TEST_POSTGRES to a Postgres URL to run the replica benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = World::load("fixtures/worlds/acme.toml").unwrap();
    let clock = ManualClock::new(world.now().unwrap());
    let mock = rt.block_on(MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone()))).unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let opts = PgStoreOptions::new(url).schema(format!("bench_{}", nanos % 1_000_000_000));
    // The issue limit guards a mailbox; a benchmark issuing thousands of links lifts it.
    let links = LinkConfig::default().with_issue_limit(IssueLimit::new(u32::MAX, Duration::from_secs(1)));
    let replica = |seed: bool| {
        let store = rt.block_on(PgStore::connect_with(opts.clone())).unwrap();
        if seed {
            rt.block_on(store.seed_once(&world.app_records(), clock.now())).unwrap();
        }
        let _rt = rt.enter();
        let authz = Authorizer::builder(mock.github_config())
            .clock(Arc::new(clock.clone()))
            .store(Arc::new(store))
            .links(links.clone())
            .webhook_secret(WebhookSecret::new(SECRET.into()).unwrap())
            .build()
            .unwrap();
        let start = Instant::now();
        while authz.stats().resyncs == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the replica does not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        authz
    };
    let (a, b) = (replica(true), replica(false));
    let dash = AppId("dash".into());
    let carol = Principal::github(world.user("carol").unwrap());
    let dash_app = world.app("dash").unwrap();
    let body = std::fs::read("fixtures/webhooks/member_removed.json").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut delivery = 0u64;

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("replicas");
    g.measurement_time(Duration::from_secs(5)).sample_size(30);
    g.bench_function("link_issue_and_redeem_postgres", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let link = a.issue_link(&dash, "dana@example.com").await.unwrap();
                    black_box(a.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("webhook_on_a_to_cache_drop_on_b", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: B caches carol's fact again.
                    b.check(&CheckRequest::new(&carol, &dash_app, Capability::Edit)).await.unwrap();
                    assert!(b.check_cached(&CheckRequest::new(&carol, &dash_app, Capability::Edit)).is_some());
                    delivery += 1;
                    let mut h = http::HeaderMap::new();
                    h.insert("x-github-event", "member".parse().unwrap());
                    h.insert("x-github-delivery", format!("bench-{nanos}-{delivery}").parse().unwrap());
                    h.insert("x-hub-signature-256", signature.parse().unwrap());
                    let start = Instant::now();
                    a.handle_webhook(&h, &body).await.unwrap();
                    while b.check_cached(&CheckRequest::new(&carol, &dash_app, Capability::Edit)).is_some() {
                        tokio::task::yield_now().await;
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
    c.final_summary();
}
