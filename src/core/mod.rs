//! The core: policy, identities, email addresses, time, secrets, decisions, invalidations, the
//! verified session and support windows. No I/O, no async, no store, network or runtime:
//! deciding is a pure function of (policy, facts, capability). Every other layer builds on this one, and it imports
//! nothing outside itself (a test reads these files and fails on an import from outside).

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod decision;
pub(crate) mod deployment;
pub(crate) mod email;
pub(crate) mod ids;
pub(crate) mod invalidation;
pub(crate) mod policy;
pub(crate) mod principal;
pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod support;
pub(crate) mod time;
