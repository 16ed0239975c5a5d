//! Viewer sessions already verified, remembered so that a check from a token string does not
//! verify its signature again.
//!
//! # Staleness
//!
//! A remembered session is served until its `exp` (one hour after sign-in by default) and no
//! longer; new session keys forget every one at once. What it opens is judged at every check
//! against the app and grant caches ([`super::records`]), so a removed grant ends it as fast as
//! the grant is forgotten.
//!
//! # Security
//!
//! An entry is found by a keyed hash of the token's last 64 bytes, which hold its signature
//! (SipHash with keys drawn at random for each authorizer, so that nobody can aim tokens at one
//! slot), and confirmed by comparing the whole token in constant time. Only a token that verified is remembered. An entry is never served at
//! or past the session's `exp`, nor after the session keys change
//! ([`Authorizer::set_session_keys`](crate::Authorizer::set_session_keys)): a token signed by a
//! retired key is refused at once. The table holds at most its capacity: when full, expired
//! entries go, and if that is not enough, the half that expires soonest.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxBuildHasher;

use crate::core::session::Session;
use crate::core::time::Timestamp;

/// A verified token and what it says.
struct Entry {
    token: Box<[u8]>,
    session: Session,
    keys_epoch: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("token", &"[redacted]").field("session", &self.session).finish()
    }
}

/// The verified-session table.
pub(crate) struct Sessions {
    hasher: std::hash::RandomState,
    map: papaya::HashMap<u64, Entry, FxBuildHasher>,
    /// Bumped whenever the session keys change.
    keys_epoch: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("remembered", &self.map.len()).finish()
    }
}

impl Sessions {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            map: papaya::HashMap::builder().hasher(FxBuildHasher).resize_mode(papaya::ResizeMode::Blocking).build(),
            keys_epoch: AtomicU64::new(0),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
        }
    }

    /// The slot of `token`: a keyed hash of its tail, where the signature is.
    fn key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.hasher.hash_one(&bytes[bytes.len().saturating_sub(64)..])
    }

    /// Runs `f` on the session `token` verified to, if it is remembered and still valid at `now`.
    pub(crate) fn with<R>(&self, token: &str, now: Timestamp, f: impl FnOnce(&Session) -> R) -> Option<R> {
        let key = self.key(token);
        let map = self.map.pin();
        let e = map.get(&key)?;
        let valid = constant_time_eq::constant_time_eq(&e.token, token.as_bytes())
            && e.keys_epoch == self.keys_epoch.load(Ordering::Acquire)
            && e.session.expires_at() > now;
        valid.then(|| f(&e.session))
    }

    /// The epoch to pass to [`Sessions::remember`], read before the token is verified.
    pub(crate) fn begin(&self) -> u64 {
        self.keys_epoch.load(Ordering::SeqCst)
    }

    /// Remembers a token that verified (with the keys of epoch `started`) to `session`.
    pub(crate) fn remember(&self, token: &str, session: Session, started: u64, now: Timestamp) {
        if self.keys_epoch.load(Ordering::SeqCst) != started {
            return;
        }
        let key = self.key(token);
        let map = self.map.pin();
        if map.len() >= self.capacity {
            // Never all at once (each would be verified again): the expired first, then the
            // half that expires soonest.
            map.retain(|_, e| e.session.expires_at() > now);
            if map.len() >= self.capacity {
                let middle = super::middle(map.iter().map(|(_, e)| e.session.expires_at().0));
                map.retain(|_, e| e.session.expires_at().0 > middle);
                if map.len() >= self.capacity {
                    // All expire within the same millisecond.
                    map.clear();
                }
            }
        }
        map.insert(key, Entry { token: token.as_bytes().into(), session, keys_epoch: started });
    }

    /// The session keys changed: nothing remembered is served again.
    pub(crate) fn keys_changed(&self) {
        self.keys_epoch.fetch_add(1, Ordering::SeqCst);
        self.map.pin().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::email::Email;
    use crate::core::ids::{AppId, GrantId};
    use crate::core::session::Via;

    fn session(n: u64) -> Session {
        Session {
            app: AppId("dash".into()),
            email: Email::parse("dana@example.com").unwrap(),
            grant: GrantId(n),
            via: Via::EmailLink,
            expires_at: Timestamp(1_000 + n),
        }
    }

    /// A full table forgets the sessions that expire soonest, not every one.
    #[test]
    fn a_full_table_keeps_the_sessions_that_expire_latest() {
        let sessions = Sessions::new(8);
        let token = |n: u64| format!("token-{n:064}");
        for n in 0..9 {
            sessions.remember(&token(n), session(n), sessions.begin(), Timestamp(0));
        }
        let held = |n: u64| sessions.with(&token(n), Timestamp(0), |s| s.grant()).is_some();
        assert!((5..9).all(held), "the latest stay");
        assert!(!held(0), "the soonest went");
    }
}
