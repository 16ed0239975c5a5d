//! The HTTP surface under load: the AuthZEN routes served over a socket (the router `ghauthz
//! serve` mounts, on its own runtime), driven by a small tokio + hyper load generator over
//! kept-alive HTTP/1.1 connections, while viewer revocations and signed webhook deliveries
//! stream in; beside it, the same checks made in process, in the same run.
//!
//! Scenario: 200 users × 50 repositories (10,000 (user, repository) pairs, uniform keys), all
//! 200 users writers of every repository (a roster of two pages), one private app per
//! repository, 20 invited viewers per app, each signed in; the cache warm. Each load: single
//! evaluations, then batches of 10 evaluations, at 1, 8 and 64 connections, for
//! `GHAUTHZ_BENCH_SECONDS` each (default 3), as fast as answers come; then single evaluations
//! offered at 20,000 a second over 64 connections (the target's load), five times. One request
//! in five asks for a viewer's session, the rest for a GitHub user by id. Meanwhile a viewer is
//! removed every 50 ms and a `member` webhook delivery arrives every 20 ms, each naming another
//! (user, repository): the next check of that pair asks GitHub (the mock GitHub, in this
//! process, on these cores) for the account and the roster again.
//!
//! Counted: throughput (evaluations a second), latency p50 / p99 / p99.9 per request, errors
//! (anything but a 200, or a batch item with an error, or a delivery not applied: must be 0),
//! stale allows (an allow for a viewer whose removal had returned before the request was sent:
//! must be 0), the viewers removed so far, and the deliveries applied during the load.
//!
//! Run: `cargo bench --features http,world --bench serve_load`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ghauthz::http::{ApiKeys, Service};
use ghauthz::store::MemoryStore;
use ghauthz::store::prelude::*;
use ghauthz::world::MockGithub;
use ghauthz::{
    AppId, Authorizer, Capability, ChangedBy, CheckRequest, Clock as _, LinkConfig, SessionConfig, SessionKeys,
};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

#[allow(dead_code, reason = "the helpers other benches use")]
mod common;

const USERS: usize = 200;
const REPOS: usize = 50;
const VIEWERS: usize = 20;
const SECRET: &str = "bench-webhook-secret";
const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

fn seconds() -> u64 {
    std::env::var("GHAUTHZ_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// What the load asks about: GitHub users by id and viewers' sessions, on apps.
struct Fixture {
    tokens: Vec<Vec<String>>,
    /// When viewer `r * VIEWERS + v`'s removal returned: nanoseconds since `epoch`, 0 while invited.
    revoked_at: Vec<AtomicU64>,
    epoch: Instant,
    keys: Vec<(usize, usize)>,
    /// `evaluation(i)` for each key, serialized once: the generator spends its time sending.
    bodies: Vec<(String, Option<usize>)>,
}

/// One evaluation: a GitHub user (4 in 5) or a viewer (1 in 5). The viewer's index, if one.
fn evaluation(f: &Fixture, i: usize) -> (Value, Option<usize>) {
    let (u, r) = f.keys[i % f.keys.len()];
    let resource = json!({"type": "app", "id": format!("a{r}")});
    if i % 5 == 4 {
        let v = u % VIEWERS;
        let subject = json!({"type": "viewer_session", "id": f.tokens[r][v]});
        (json!({"subject": subject, "action": {"name": "view"}, "resource": resource}), Some(r * VIEWERS + v))
    } else {
        let subject = json!({"type": "github_user", "id": (1000 + u).to_string()});
        (json!({"subject": subject, "action": {"name": "edit"}, "resource": resource}), None)
    }
}

/// An answer, as far as the generator reads it: a decision, an error in its context, or a
/// batch's answers.
#[derive(serde::Deserialize)]
struct Answer {
    decision: Option<bool>,
    context: Option<AnswerContext>,
    evaluations: Option<Vec<Answer>>,
}

#[derive(serde::Deserialize)]
struct AnswerContext {
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    evaluations: u64,
    errors: u64,
    stale_allows: u64,
}

/// One kept-alive connection sending requests one after another until `stop`: as fast as
/// answers come (`pace` `None`), or one for each permit `pace` is given (an offered rate, the
/// permits handed out evenly by a pacing thread; a closed `pace` stops the connection).
async fn connection(
    addr: std::net::SocketAddr,
    f: Arc<Fixture>,
    batch: usize,
    seed: usize,
    pace: Option<Arc<tokio::sync::Semaphore>>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut t = Tally::default();
    let mut i = seed.wrapping_mul(7919);
    while !stop.load(Ordering::Relaxed) {
        if let Some(pace) = &pace {
            match pace.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
        }
        let mut viewers = Vec::with_capacity(batch);
        let (path, body) = if batch == 1 {
            let (body, viewer) = &f.bodies[i % f.bodies.len()];
            viewers.push(*viewer);
            i += 1;
            ("/access/v1/evaluation", Bytes::from(body.clone()))
        } else {
            let mut body = String::from(r#"{"evaluations":["#);
            for k in 0..batch {
                let (item, viewer) = &f.bodies[(i + k) % f.bodies.len()];
                if k > 0 {
                    body.push(',');
                }
                body.push_str(item);
                viewers.push(*viewer);
            }
            body.push_str("]}");
            i += batch;
            ("/access/v1/evaluations", Bytes::from(body))
        };
        let request = http::Request::post(path)
            .header("host", "bench")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        // Counted from the send; the achieved rate (printed) shows whether the server kept up
        // with the offered one.
        let sent = Instant::now();
        let sent_ns = Instant::now().duration_since(f.epoch).as_nanos() as u64;
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => {
                t.errors += 1;
                break;
            }
        };
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        t.latencies_us.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if status != 200 {
            t.errors += 1;
            continue;
        }
        let answer: Answer = serde_json::from_slice(&bytes).unwrap();
        let decisions: Vec<&Answer> = match &answer.evaluations {
            None => vec![&answer],
            Some(items) => items.iter().collect(),
        };
        if decisions.len() != viewers.len() {
            t.errors += 1;
        }
        for (d, viewer) in decisions.iter().zip(&viewers) {
            t.evaluations += 1;
            if d.decision.is_none() || d.context.as_ref().is_some_and(|c| c.error.is_some()) {
                t.errors += 1;
            }
            if let Some(v) = viewer {
                let revoked = f.revoked_at[*v].load(Ordering::Acquire);
                if d.decision == Some(true) && revoked != 0 && revoked < sent_ns {
                    t.stale_allows += 1;
                }
            }
        }
    }
    t
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() {
    // The server's worker threads (`GHAUTHZ_BENCH_SERVER_THREADS`, default 2).
    let server_threads = std::env::var("GHAUTHZ_BENCH_SERVER_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let world = common::world(USERS, REPOS, VIEWERS);
    let mock = server_rt.block_on(MockGithub::start(world.clone())).unwrap();
    let store = Arc::new(MemoryStore::new());
    server_rt.block_on(store.seed_once(&world.app_records(), ghauthz::SystemClock.now())).unwrap();
    let authz = {
        let _rt = server_rt.enter();
        Authorizer::builder(mock.github_config())
            .cache(
                ghauthz::CacheConfig::default()
                    .with_role_ttl(Duration::from_secs(3600))
                    .with_record_ttl(Duration::from_secs(3600)),
            )
            .links(
                LinkConfig::default()
                    .with_issue_limit(ghauthz::store::IssueLimit::new(u32::MAX, Duration::from_secs(1))),
            )
            .sessions(
                SessionKeys::generate().unwrap(),
                SessionConfig::default().with_ttl(Duration::from_secs(24 * 3600)),
            )
            .store(store)
            .webhook_secret(ghauthz::WebhookSecret::new(SECRET.into()).unwrap())
            .build()
            .unwrap()
    };
    while !authz.stats().feed_listening {
        std::thread::sleep(Duration::from_millis(5));
    }
    let service =
        Service::new(authz.clone(), ApiKeys::parse(&format!("all {KEY}")).unwrap(), "http://bench".parse().unwrap());
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let router = service.router();
    server_rt.spawn(async move { axum::serve(listener, router).await });

    // Warm: every pair's fact and every user's account, every viewer signed in and checked.
    let tokens = server_rt.block_on(async {
        for u in 0..USERS {
            let user = world.user(&format!("u{u}")).unwrap();
            for r in 0..REPOS {
                let id = AppId(format!("a{r}"));
                let req = CheckRequest::github_id(user.id, None, &id, Capability::Edit);
                assert!(authz.check(&req).await.unwrap().is_allowed());
            }
        }
        let mut tokens = Vec::new();
        for r in 0..REPOS {
            let id = AppId(format!("a{r}"));
            let mut row = Vec::new();
            for v in 0..VIEWERS {
                let link = authz.issue_link(&id, &format!("v{v}.a{r}@example.com")).await.unwrap();
                let token = authz.redeem_link(link.token.expose_secret(), None).await.unwrap().token;
                let token = token.expose_secret().to_owned();
                assert!(authz.check(&CheckRequest::session(&token, &id, Capability::View)).await.unwrap().is_allowed());
                row.push(token);
            }
            tokens.push(row);
        }
        tokens
    });
    let mut fixture = Fixture {
        tokens,
        revoked_at: (0..REPOS * VIEWERS).map(|_| AtomicU64::new(0)).collect(),
        epoch: Instant::now(),
        keys: common::uniform_keys(1 << 16, USERS, REPOS),
        bodies: Vec::new(),
    };
    fixture.bodies = (0..fixture.keys.len())
        .map(|i| {
            let (body, viewer) = evaluation(&fixture, i);
            (body.to_string(), viewer)
        })
        .collect();
    let f = Arc::new(fixture);

    // In process, the same run: the check a Rust caller makes, by id, on the warm cache.
    let in_process_ns = server_rt.block_on(async {
        let users: Vec<_> =
            (0..USERS).map(|u| ghauthz::Principal::github(world.user(&format!("u{u}")).unwrap())).collect();
        let ids: Vec<AppId> = (0..REPOS).map(|r| AppId(format!("a{r}"))).collect();
        let n = 200_000;
        let start = Instant::now();
        for i in 0..n {
            let (u, r) = f.keys[i % f.keys.len()];
            std::hint::black_box(authz.check(&CheckRequest::new(&users[u], &ids[r], Capability::Edit)).await.unwrap());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    });
    let by_id_ns = server_rt.block_on(async {
        let ids: Vec<AppId> = (0..REPOS).map(|r| AppId(format!("a{r}"))).collect();
        let n = 200_000;
        let start = Instant::now();
        for i in 0..n {
            let (u, r) = f.keys[i % f.keys.len()];
            let req = CheckRequest::github_id(ghauthz::UserId(1000 + u as u64), None, &ids[r], Capability::Edit);
            std::hint::black_box(authz.check(&req).await.unwrap());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    });

    // What a delivery costs the checks after it: the (user, repository) it names asked of
    // GitHub again (here the account and the repository's two-page roster, from the mock in
    // this process).
    let refetch_us = server_rt.block_on(async {
        let n = 200u64;
        let start = Instant::now();
        for k in 0..n {
            let (user, repo) = (ghauthz::UserId(1000 + k % USERS as u64), k % REPOS as u64);
            let inv = ghauthz::Invalidation::UserOnRepo(user, ghauthz::RepoId(10_000 + repo));
            authz.invalidate(inv).await.unwrap();
            let id = AppId(format!("a{repo}"));
            assert!(
                authz.check(&CheckRequest::github_id(user, None, &id, Capability::Edit)).await.unwrap().is_allowed()
            );
        }
        start.elapsed().as_micros() as f64 / n as f64
    });

    // The load generator's threads (`GHAUTHZ_BENCH_CLIENT_THREADS`, default 1): on a 2-core
    // machine they share the cores with the server's two.
    let client_threads = std::env::var("GHAUTHZ_BENCH_CLIENT_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "serve_load: {USERS} users x {REPOS} repositories, {VIEWERS} viewers per app, warm cache; {} s per load; server {server_threads} threads, load generator {client_threads}",
        seconds()
    );
    println!("in process: check by Principal {in_process_ns:.0} ns, check by GitHub id {by_id_ns:.0} ns (one thread)");
    println!("in process: an invalidation and the check after it, its facts asked again: {refetch_us:.0} µs");
    println!(
        "{:>6} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>7} {:>6} {:>7} {:>7}",
        "batch", "conns", "offered", "evals/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "stale", "revoked", "applied"
    );
    let mut revoked_total = 0usize;
    let mut single_p50_ms = f64::NAN;
    // (batch, connections, offered evaluations a second: none for as fast as answers come)
    let all_loads = [
        (1, 1, None),
        (1, 8, None),
        (1, 64, None),
        (10, 1, None),
        (10, 8, None),
        (10, 64, None),
        (1, 64, Some(20_000u32)),
    ];
    // The target's load alone (`GHAUTHZ_BENCH_TARGET_ONLY`), run `GHAUTHZ_BENCH_REPEAT` times
    // (default 5: its tail is judged over several runs, not one); without the revocation and
    // delivery streams (`GHAUTHZ_BENCH_NO_STREAMS`), to see what they cost.
    let target_only = std::env::var("GHAUTHZ_BENCH_TARGET_ONLY").is_ok();
    let repeat: usize = std::env::var("GHAUTHZ_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let streams = std::env::var("GHAUTHZ_BENCH_NO_STREAMS").is_err();
    let loads: Vec<_> = all_loads
        .into_iter()
        .filter(|l| !target_only || l.2.is_some())
        .flat_map(|l| std::iter::repeat_n(l, if l.2.is_some() { repeat } else { 1 }))
        .collect();
    for (run, (batch, conns, offered)) in loads.into_iter().enumerate() {
        {
            let stop = Arc::new(AtomicBool::new(false));
            // An offered rate: a thread hands out one permit every 1/rate s, round the
            // connections, waking every 50 µs (tokio's timer wakes on millisecond ticks, which
            // would send in bursts of 20).
            let paces: Option<Vec<Arc<tokio::sync::Semaphore>>> =
                offered.map(|_| (0..conns).map(|_| Arc::new(tokio::sync::Semaphore::new(0))).collect());
            let pacer = offered.zip(paces.clone()).map(|(rate, paces)| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("pacer".into())
                    .spawn(move || {
                        let start = Instant::now();
                        let mut handed = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                            while handed < due {
                                paces[handed as usize % paces.len()].add_permits(1);
                                handed += 1;
                            }
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        paces.iter().for_each(|p| p.close());
                    })
                    .unwrap()
            });
            // The streams: a viewer removed every 50 ms, a signed delivery every 20 ms.
            let revocations = {
                let (authz, f, stop) = (authz.clone(), f.clone(), stop.clone());
                let start = revoked_total;
                server_rt.spawn(async move {
                    let mut n = start;
                    while streams && !stop.load(Ordering::Relaxed) && n < REPOS * VIEWERS {
                        let (r, v) = (n / VIEWERS, n % VIEWERS);
                        let email = format!("v{v}.a{r}@example.com");
                        authz.remove_viewer(&ChangedBy::Operator, &AppId(format!("a{r}")), &email).await.unwrap();
                        f.revoked_at[n].store(f.epoch.elapsed().as_nanos() as u64, Ordering::Release);
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    n
                })
            };
            let deliveries = {
                let (service, stop) = (service.clone(), stop.clone());
                server_rt.spawn(async move {
                    use tower::ServiceExt as _;
                    let mut n = 0u64;
                    let mut failed = 0u64;
                    let mut applied = 0u64;
                    while streams && !stop.load(Ordering::Relaxed) {
                        let body = format!(
                            r#"{{"action":"edited","member":{{"id":{}}},"repository":{{"id":{}}}}}"#,
                            1000 + n % USERS as u64,
                            10_000 + n % REPOS as u64
                        );
                        let request = http::Request::post("/webhooks/github")
                            .header("x-github-event", "member")
                            .header("x-github-delivery", format!("d-{run}-{n}"))
                            .header("x-hub-signature-256", signature(body.as_bytes()))
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from(body))
                            .unwrap();
                        let response = service.router().oneshot(request).await.unwrap();
                        let ok = response.status() == 200;
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        // Each delivery's id is new: every one is applied, none a duplicate.
                        match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["applied"].as_u64()) {
                            Some(1) if ok => applied += 1,
                            _ => failed += 1,
                        }
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    (applied, failed)
                })
            };
            let started = Instant::now();
            let tasks: Vec<_> = (0..conns)
                .map(|c| {
                    let pace = paces.as_ref().map(|p| p[c].clone());
                    client_rt.spawn(connection(addr, f.clone(), batch, c * 131 + batch, pace, stop.clone()))
                })
                .collect();
            std::thread::sleep(Duration::from_secs(seconds()));
            stop.store(true, Ordering::Relaxed);
            if let Some(pacer) = pacer {
                pacer.join().unwrap();
            }
            let mut all = Tally::default();
            for t in tasks {
                let t = client_rt.block_on(t).unwrap();
                all.latencies_us.extend(t.latencies_us);
                all.evaluations += t.evaluations;
                all.errors += t.errors;
                all.stale_allows += t.stale_allows;
            }
            let elapsed = started.elapsed().as_secs_f64();
            revoked_total = server_rt.block_on(revocations).unwrap();
            let (applied, failed) = server_rt.block_on(deliveries).unwrap();
            all.latencies_us.sort_unstable();
            if (batch, conns, offered) == (1, 1, None) {
                single_p50_ms = percentile(&all.latencies_us, 0.50);
            }
            println!(
                "{batch:>6} {conns:>5} {:>8} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>6} {:>7} {:>7}",
                offered.map_or("max".to_owned(), |r| r.to_string()),
                all.evaluations as f64 / elapsed,
                percentile(&all.latencies_us, 0.50),
                percentile(&all.latencies_us, 0.99),
                percentile(&all.latencies_us, 0.999),
                all.errors + failed,
                all.stale_allows,
                revoked_total,
                applied,
            );
        }
    }
    println!(
        "HTTP overhead: one evaluation at 1 connection, p50 {:.1} µs = {:.0}x the in-process check by GitHub id ({by_id_ns:.0} ns)",
        single_p50_ms * 1000.0,
        single_p50_ms * 1e6 / by_id_ns
    );
}

fn signature(body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
