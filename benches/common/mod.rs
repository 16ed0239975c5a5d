//! What the hot-path benchmarks share: the uniform keys, running an operation on several threads
//! at once, and reading criterion's medians back.

use std::time::{Duration, Instant};

/// `n` uniform random (user, repository) indices below (`users`, `repos`), the same every run.
pub(crate) fn uniform_keys(n: usize, users: usize, repos: usize) -> Vec<(usize, usize)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % users as u64) as usize, ((x >> 32) % repos as u64) as usize)
        })
        .collect()
}

/// `iters` operations on each of `threads` threads at once; the time of the slowest.
pub(crate) fn on_threads(threads: usize, iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let op = &op;
    let barrier = std::sync::Barrier::new(threads);
    let barrier = &barrier;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        op(i.wrapping_mul(7).wrapping_add(t * 9973));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).max().unwrap_or_default()
    })
}

/// The median criterion estimated for `group/name` in this run, in ns (NaN if absent).
pub(crate) fn median_ns(group: &str, name: &str) -> f64 {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let read = || -> Option<f64> {
        let text = std::fs::read_to_string(format!("{dir}/criterion/{group}/{name}/new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    read().unwrap_or(f64::NAN)
}

/// The benchmarks' world: `users` users `u0..` (ids from 1000), all members of the organization
/// `bench` whose base permission is `write`, `repos` private repositories `bench/r0..` (ids from
/// 10,000), one private app `a<r>` per repository, and `viewers` invited addresses
/// `v<v>.a<r>@example.com` per app.
pub(crate) fn world(users: usize, repos: usize, viewers: usize) -> ghauthz::world::World {
    let mut t = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
    for u in 0..users {
        t += &format!("[[users]]\nid = {}\nlogin = \"u{u}\"\n", 1000 + u);
    }
    let members: Vec<String> = (0..users).map(|u| format!("\"u{u}\"")).collect();
    t += &format!(
        "[[orgs]]\nid = 1\nlogin = \"bench\"\nmembers = [{}]\nbase_permission = \"write\"\n",
        members.join(",")
    );
    for r in 0..repos {
        let invited: Vec<String> = (0..viewers).map(|v| format!("\"v{v}.a{r}@example.com\"")).collect();
        t += &format!("[[repos]]\nid = {}\nowner = \"bench\"\nname = \"r{r}\"\nprivate = true\n", 10_000 + r);
        t += &format!(
            "[[apps]]\nid = \"a{r}\"\nrepo = \"bench/r{r}\"\nrepo_id = {}\nbranch = \"main\"\nmain_file = \"app.py\"\nvisibility = \"private\"\ndeployed_by = \"u0\"\nviewers = [{}]\n",
            10_000 + r,
            invited.join(",")
        );
    }
    ghauthz::world::World::from_toml_str(&t, ".").expect("bench world")
}
