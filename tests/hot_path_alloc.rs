//! A cache hit allocates nothing. Counted with dhat as the global allocator, so this
//! file holds one test only.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

mod common;

use ghauthz::CheckRequest;
use std::hint::black_box;

use ghauthz::Capability;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn a_cache_hit_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let env = rt.block_on(common::env(common::fixture("acme.toml")));
    let (carol, rick, dash) = (env.user("carol"), env.user("rick"), env.app("dash"));
    // carol's check fetches the repository's roster; rick's is answered from it.
    for (p, source) in [(&carol, ghauthz::Source::Github), (&rick, ghauthz::Source::Cache)] {
        let first = rt.block_on(env.authz.check(&CheckRequest::new(p, &dash, Capability::Edit))).unwrap();
        assert_eq!((first.is_allowed(), first.source()), (true, source));
    }

    let before = dhat::HeapStats::get();
    for _ in 0..1000 {
        // rick's decision carries a custom role name: shared, not copied.
        black_box(env.authz.check_cached(&CheckRequest::new(black_box(&carol), &dash, Capability::Edit)).unwrap());
        black_box(env.authz.check_cached(&CheckRequest::new(black_box(&rick), &dash, Capability::Edit)).unwrap());
    }
    let sync_blocks = dhat::HeapStats::get().total_blocks - before.total_blocks;

    // `block_on` may allocate once for itself; what matters is that hits add nothing.
    let async_blocks = |hits: usize| {
        let before = dhat::HeapStats::get();
        rt.block_on(async {
            for _ in 0..hits {
                black_box(env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap());
            }
        });
        dhat::HeapStats::get().total_blocks - before.total_blocks
    };
    let (few, many) = (async_blocks(10), async_blocks(5000));

    assert_eq!(sync_blocks, 0, "check_cached allocated on a hit");
    assert_eq!(few, many, "check allocated per hit ({few} blocks for 10 hits, {many} for 5000)");

    // The request path: an app id with a GitHub user, and an app id with a session token.
    let env = rt.block_on(common::viewers_on(std::sync::Arc::new(ghauthz::store::MemoryStore::new())));
    let (a, dash) = (&env.authz, ghauthz::AppId("dash".into()));
    let carol = ghauthz::Principal::github(env.world.user("carol").unwrap());
    let token = rt.block_on(async {
        let link = a.issue_link(&dash, "dana@example.com").await.unwrap();
        let token = a.redeem_link(link.token.expose_secret(), None).await.unwrap().token.expose_secret().to_owned();
        for _ in 0..2 {
            assert!(a.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed());
            assert!(a.check(&CheckRequest::session(&token, &dash, Capability::View)).await.unwrap().is_allowed());
        }
        token
    });
    let before = dhat::HeapStats::get();
    for _ in 0..1000 {
        let by_id = a.check_cached(&CheckRequest::new(black_box(&carol), black_box(&dash), Capability::Edit)).unwrap();
        assert_eq!(by_id.source(), ghauthz::Source::Cache);
        let viewer =
            a.check_cached(&CheckRequest::session(black_box(&token), black_box(&dash), Capability::View)).unwrap();
        assert!(viewer.is_allowed());
    }
    let request_path_blocks = dhat::HeapStats::get().total_blocks - before.total_blocks;
    let async_blocks = |hits: usize| {
        let before = dhat::HeapStats::get();
        rt.block_on(async {
            for _ in 0..hits {
                black_box(a.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap());
                black_box(a.check(&CheckRequest::session(&token, &dash, Capability::View)).await.unwrap());
            }
        });
        dhat::HeapStats::get().total_blocks - before.total_blocks
    };
    let (few, many) = (async_blocks(10), async_blocks(5000));
    assert_eq!(request_path_blocks, 0, "a check by app id or from a session token allocated on a hit");
    assert_eq!(few, many, "check_app or check_session allocated per hit ({few} blocks for 10 hits, {many} for 5000)");
}
