//! The integration tests, in one binary with a module per area (one link of the crate instead of
//! one per file). Three areas keep binaries of their own, because each changes the whole process:
//! `hot_path_alloc` (a counting global allocator), `no_secrets_in_logs` (the global log
//! subscriber) and `pg_restart` (it stops and starts the Postgres server the others use).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

#[path = "../common/mod.rs"]
mod common;

mod app_life;
mod architecture;
mod browser;
mod cache;
mod cli;
mod decision_table;
mod deletion;
mod faults;
mod fuzz;
mod github_roles;
mod google;
mod http_service;
mod installations;
mod links;
mod mail;
mod mock_github;
mod replicas;
mod rosters;
mod serve_cli;
mod store_model;
mod store_suite;
mod support;
mod viewers;
mod web_pages;
mod webhooks;
mod world_loader;
