//! Shared set-up: a world, its mock GitHub, and an authorizer on a manual clock.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a different part")]

use ghauthz::CheckRequest;
use std::path::PathBuf;
use std::sync::Arc;

use ghauthz::world::{MockGithub, World};
use ghauthz::{App, Authorizer, CacheConfig, Clock, GithubConfig, ManualClock, Policy, Principal, Timestamp};

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

pub fn fixture(name: &str) -> World {
    World::load(fixture_path(&format!("worlds/{name}"))).expect("fixture world loads")
}

/// acme.toml, edited.
pub fn acme_with(edit: impl Fn(String) -> String) -> World {
    let text = std::fs::read_to_string(fixture_path("worlds/acme.toml")).expect("acme.toml");
    World::from_toml_str(&edit(text), fixture_path("worlds")).expect("the edited world loads")
}

/// acme.toml without carol's direct role on acme/dashboard.
pub fn acme_without_carol_on_dashboard() -> World {
    acme_with(|t| t.replace(r#"roles = { carol = "write", dave"#, r#"roles = { dave"#))
}

/// Redeems `token` on `authz` `n` times at once; (successes, `already_used` refusals). Any
/// other outcome fails the test.
pub async fn redeem_concurrently(authz: &Authorizer, token: &str, n: usize) -> (usize, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (authz, token) = (authz.clone(), token.to_owned());
        tasks.spawn(async move { authz.redeem_link(&token, None).await });
    }
    let (mut ok, mut used) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("the task ran") {
            Ok(_) => ok += 1,
            Err(ghauthz::LinkError::AlreadyUsed) => used += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    (ok, used)
}

/// Waits until `cond` holds; fails the test if it does not within `limit`. Returns how long it took.
pub async fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// Waits until `cond` (async) holds, checking every 5 ms; fails the test after `limit`. Returns
/// how long it took.
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: std::time::Duration,
    mut cond: impl FnMut() -> F,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Checks again and again while the check fails *unavailable* (any other failure fails the
/// test), for at most `limit`; the first decision.
pub async fn check_until_available(
    authz: &Authorizer,
    principal: &Principal,
    app: &ghauthz::AppId,
    cap: ghauthz::Capability,
    limit: std::time::Duration,
) -> ghauthz::Decision {
    let start = std::time::Instant::now();
    loop {
        match authz.check(&CheckRequest::new(principal, app, cap)).await {
            Ok(d) => return d,
            Err(e) => {
                assert!(e.is_unavailable(), "{e:?}");
                assert!(start.elapsed() < limit, "still unavailable after {limit:?}: {e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

pub struct Env {
    pub world: World,
    pub mock: MockGithub,
    pub authz: Authorizer,
    pub clock: ManualClock,
}

impl Env {
    pub fn user(&self, login: &str) -> Principal {
        Principal::github(self.world.user(login).expect("user in world"))
    }

    pub fn app(&self, id: &str) -> App {
        self.world.app(id).expect("app in world")
    }

    pub fn advance_secs(&self, s: u64) {
        self.clock.advance(std::time::Duration::from_secs(s));
    }
}

pub struct Opts {
    pub policy: Policy,
    pub cache: CacheConfig,
    pub github: Box<dyn Fn(&MockGithub) -> GithubConfig>,
    pub store: Option<Arc<dyn ghauthz::store::Store>>,
    pub webhook_secret: Option<&'static str>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            cache: CacheConfig::default(),
            github: Box::new(|m| m.github_config()),
            store: None,
            webhook_secret: None,
        }
    }
}

pub async fn env(world: World) -> Env {
    env_with(world, Opts::default()).await
}

/// Options that ask GitHub per user, never from a repository's roster.
pub fn per_user() -> Opts {
    Opts { cache: CacheConfig::default().with_rosters(false), ..Default::default() }
}

pub async fn env_with(world: World, opts: Opts) -> Env {
    let clock = ManualClock::new(world.now().unwrap_or(Timestamp(1_795_000_000_000)));
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.expect("mock starts");
    let mut builder =
        Authorizer::builder((opts.github)(&mock)).policy(opts.policy).cache(opts.cache).clock(Arc::new(clock.clone()));
    if let Some(store) = opts.store {
        builder = builder.store(store);
    }
    if let Some(secret) = opts.webhook_secret {
        builder = builder.webhook_secret(ghauthz::WebhookSecret::new(secret.into()).expect("a secret"));
    }
    let authz = builder.build().expect("authorizer builds");
    Env { world, mock, authz, clock }
}

/// An authorizer on `store` (seeded from acme.toml), with Google sign-in against the mock.
pub struct Viewers {
    pub authz: Authorizer,
    pub world: World,
    pub mock: MockGithub,
    pub clock: ManualClock,
}

pub async fn viewers_on(store: Arc<dyn ghauthz::store::Store>) -> Viewers {
    viewers_with(store, Policy::default()).await
}

pub async fn viewers_with(store: Arc<dyn ghauthz::store::Store>, policy: Policy) -> Viewers {
    let world = fixture("acme.toml");
    let clock = ManualClock::new(world.now().expect("acme.toml sets now"));
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.expect("mock starts");
    store.seed_once(&world.app_records(), clock.now()).await.expect("store seeds");
    let authz = Authorizer::builder(mock.github_config())
        .policy(policy)
        .clock(Arc::new(clock.clone()))
        .store(store)
        .google(mock.google_config().expect("acme.toml has [google]"))
        .build()
        .expect("authorizer builds");
    Viewers { authz, world, mock, clock }
}

/// The audience acme.toml's `[google]` accepts.
pub const GOOGLE_AUD: &str = "1234-test.apps.googleusercontent.com";

/// The claims of a valid Google ID token for `email`, issued at `now` (seconds).
pub fn google_claims(now: u64, email: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": "https://accounts.google.com", "aud": GOOGLE_AUD, "sub": "110169484474386276334",
        "email": email, "email_verified": true, "iat": now, "exp": now + 3600
    })
}

/// `claims` signed as Google signs (RS256, `kid` in the header) with `fixtures/keys/<key>.pem`.
pub fn sign_google(claims: &serde_json::Value, key: &str, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let pem = std::fs::read(fixture_path(&format!("keys/{key}.pem"))).expect("test key");
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"))
        .expect("signs")
}

/// A valid Google ID token for `email`, signed by the key acme.toml's JWKS lists.
pub fn google_token(now: u64, email: &str) -> String {
    sign_google(&google_claims(now, email), "google-test", "test-key-1")
}

/// [`google_token`] carrying `nonce`, as Google signs the nonce its button was given.
#[allow(dead_code, reason = "not every test binary signs in through the pages")]
pub fn google_token_with_nonce(now: u64, email: &str, nonce: &str) -> String {
    let mut claims = google_claims(now, email);
    claims["nonce"] = serde_json::json!(nonce);
    sign_google(&claims, "google-test", "test-key-1")
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// The environment variable that names the Postgres the tests use (`.ci/run` sets it).
pub const PG_ENV: &str = "GHAUTHZ_TEST_POSTGRES";

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// The test Postgres URL; `None`, said once on stderr, when `GHAUTHZ_TEST_POSTGRES` is unset.
pub fn pg_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("skipped: {PG_ENV} is unset, so the Postgres tests do not run"));
            None
        }
    }
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// A schema no other test uses.
pub fn fresh_schema() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// A Postgres store in a schema of its own; `None` (skipped) without `GHAUTHZ_TEST_POSTGRES`.
pub async fn pg_store() -> Option<ghauthz::store::PgStore> {
    let url = pg_url()?;
    let opts = ghauthz::store::PgStoreOptions::new(url).schema(fresh_schema());
    Some(ghauthz::store::PgStore::connect_with(opts).await.expect("the test Postgres is reachable"))
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// Which store a shared suite runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// What keeps a store's backing alive for the test (a temporary folder).
pub type Guard = Option<tempfile::TempDir>;

#[cfg(all(feature = "sqlite", feature = "postgres"))]
/// A fresh, empty store of `backend`; `None` when the backend is not available here (Postgres
/// without `GHAUTHZ_TEST_POSTGRES`), which the caller reports as skipped.
pub async fn store_of(backend: Backend) -> Option<(Arc<dyn ghauthz::store::Store>, Guard)> {
    match backend {
        Backend::Memory => Some((Arc::new(ghauthz::store::MemoryStore::new()), None)),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = ghauthz::store::SqliteStore::open(dir.path().join("ghauthz.db")).await.expect("opens");
            Some((Arc::new(store), Some(dir)))
        }
        Backend::Postgres => Some((Arc::new(pg_store().await?), None)),
    }
}

/// GitHub's `X-Hub-Signature-256` of `body` under `secret`: `sha256=` and the hex HMAC. The one
/// webhook signing helper of the tests.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers of a GitHub delivery of `event` signed with `secret`.
pub fn webhook_headers(event: &str, delivery: &str, secret: &str, body: &[u8]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-github-event", event.parse().expect("an event name"));
    h.insert("x-github-delivery", delivery.parse().expect("a delivery id"));
    h.insert("content-type", http::HeaderValue::from_static("application/json"));
    h.insert("x-hub-signature-256", webhook_signature(secret, body).parse().expect("a signature"));
    h
}

/// Which of `needles` are readable in the raw bytes of the SQLite store at `db` (the database
/// file, its `-wal` and its `-shm`), as `(file, needle)` pairs.
pub fn left_in_store_files(db: &std::path::Path, needles: &[&[u8]]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = db.as_os_str().to_owned();
        file.push(suffix);
        let Ok(bytes) = std::fs::read(&file) else { continue };
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == *needle) {
                found.push((PathBuf::from(&file).display().to_string(), String::from_utf8_lossy(needle).into_owned()));
            }
        }
    }
    found
}
