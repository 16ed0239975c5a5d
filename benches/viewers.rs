//! Viewer sign-in costs: a link issued and redeemed on an SQLite file, and a Google ID token
//! verified with a warm JWKS. Run: `cargo bench --features world,sqlite --bench viewers`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ghauthz::store::{IssueLimit, SqliteStore, Store};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, LinkConfig, ManualClock};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = World::load("fixtures/worlds/acme.toml").unwrap();
    let clock = ManualClock::new(world.now().unwrap());
    let mock = rt.block_on(MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone()))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(dir.path().join("bench.db"))).unwrap());
    rt.block_on(store.seed_once(&world.app_records(), world.now().unwrap())).unwrap();
    // The issue limit guards a mailbox; a benchmark issuing thousands of links lifts it.
    let links = LinkConfig::default().with_issue_limit(IssueLimit::new(u32::MAX, Duration::from_secs(1)));
    let authz = {
        let _rt = rt.enter();
        Authorizer::builder(mock.github_config())
            .clock(Arc::new(clock))
            .store(store)
            .links(links)
            .google(mock.google_config().unwrap())
            .build()
            .unwrap()
    };
    let dash = AppId("dash".into());

    let now = world.now().unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": "https://accounts.google.com", "aud": "1234-test.apps.googleusercontent.com", "sub": "42",
        "email": "dana@example.com", "email_verified": true, "iat": now, "exp": now + 3600
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let pem = std::fs::read("fixtures/keys/google-test.pem").unwrap();
    let id_token =
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap();
    rt.block_on(authz.verify_google_id_token(&id_token)).unwrap(); // warm the JWKS

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("viewers");
    g.measurement_time(Duration::from_secs(5)).sample_size(30);
    g.bench_function("link_issue_and_redeem_sqlite", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
                    black_box(authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("google_id_token_verify_warm_jwks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(authz.verify_google_id_token(&id_token).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    c.final_summary();
}
