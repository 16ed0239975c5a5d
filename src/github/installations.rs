//! A GitHub App across its installations: which installation covers a repository, found with
//! the App's JWT and kept; a credential (token, budget, gate, requests in flight) per
//! installation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use octocrab::Octocrab;

use super::GithubError;
use super::client::Credential;
use super::wire::WireInstallation;
use crate::core::ids::{OwnerId, RepoCoords};

/// How long an installation found for an account is kept, unless an `installation` or
/// `installation_repositories` delivery drops it sooner.
const INSTALLED_TTL: Duration = Duration::from_secs(3600);
/// How long "no installation covers this repository" and "this installation is suspended" are
/// kept: a customer who installs the App (or is unsuspended) waits at most this long where no
/// delivery says so.
const NOT_INSTALLED_TTL: Duration = Duration::from_secs(60);
/// The most accounts and repositories whose installation is kept.
const MAX_KEPT: u64 = 200_000;

/// What is kept: by account login (an installation found), or by repository (none found).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Owner(String),
    Repo(String),
}

/// Which installation, if any, covers a repository.
#[derive(Debug, Clone)]
pub(super) enum Reach {
    Installed(Arc<Found>),
    NotInstalled,
}

/// An installation, as the App's JWT found it.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) id: u64,
    /// The account it is installed on.
    pub(super) account: OwnerId,
    /// It covers only repositories selected on it (else all of the account's).
    pub(super) selected: bool,
    pub(super) suspended: bool,
}

struct Lifetimes;

impl moka::Expiry<Key, Reach> for Lifetimes {
    fn expire_after_create(&self, _: &Key, reach: &Reach, _: Instant) -> Option<Duration> {
        Some(match reach {
            Reach::Installed(found) if !found.suspended => INSTALLED_TTL,
            _ => NOT_INSTALLED_TTL,
        })
    }
}

/// An App's installations, as far as they have been found.
#[derive(Debug)]
pub(super) struct Installations {
    /// The App itself (its JWT): installation lookups and minting.
    pub(super) app: Credential,
    reach: moka::future::Cache<Key, Reach>,
    /// Each installation's credential, kept while used (its token is worth keeping for its hour).
    credentials: moka::sync::Cache<u64, Arc<Credential>>,
    max_in_flight: usize,
}

impl Installations {
    pub(super) fn new(app: Octocrab, max_in_flight: usize) -> Self {
        Self {
            app: Credential::new(app, None, max_in_flight),
            reach: moka::future::Cache::builder()
                .max_capacity(MAX_KEPT)
                .expire_after(Lifetimes)
                .support_invalidation_closures()
                .build(),
            credentials: moka::sync::Cache::builder()
                .max_capacity(MAX_KEPT)
                .time_to_idle(INSTALLED_TTL.saturating_mul(2))
                .build(),
            max_in_flight,
        }
    }

    /// The installation on `coords`' owner that was found already, if any.
    pub(super) async fn known(&self, coords: &RepoCoords) -> Option<Arc<Found>> {
        match self.reach.get(&owner_key(coords.owner())).await {
            Some(Reach::Installed(found)) => Some(found),
            _ => None,
        }
    }

    /// Which installation covers `coords`: the account's installation found before, else
    /// "none" found before for this repository, else what `lookup` (`GET
    /// /repos/{owner}/{repo}/installation`) answers, one lookup for concurrent askers.
    pub(super) async fn reach<F>(&self, coords: &RepoCoords, lookup: F) -> Result<Reach, GithubError>
    where
        F: Future<Output = Result<Reach, GithubError>>,
    {
        // "Its account's installation does not select it" first, then that installation.
        if let Some(Reach::NotInstalled) = self.reach.get(&repo_key(coords)).await {
            return Ok(Reach::NotInstalled);
        }
        if let Some(found) = self.known(coords).await {
            return Ok(Reach::Installed(found));
        }
        let reach =
            self.reach.try_get_with(repo_key(coords), lookup).await.map_err(|e: Arc<GithubError>| (*e).clone())?;
        if let Reach::Installed(found) = &reach {
            // Every repository of the account goes through it from now on.
            self.reach.insert(owner_key(coords.owner()), Reach::Installed(found.clone())).await;
            self.reach.invalidate(&repo_key(coords)).await;
        }
        Ok(reach)
    }

    /// Records that no installation covers `coords` (its account's installation does not
    /// select it).
    pub(super) async fn not_covered(&self, coords: &RepoCoords) {
        self.reach.insert(repo_key(coords), Reach::NotInstalled).await;
    }

    /// Forgets every "none covers it", and the installations found on `accounts`: `None`, every
    /// account's; `Some(None)`, none; `Some(Some(owner))`, `owner`'s.
    pub(super) fn forget(&self, accounts: Option<Option<OwnerId>>) {
        let _ = self.reach.invalidate_entries_if(move |_, reach| match (reach, accounts) {
            (Reach::NotInstalled, _) | (Reach::Installed(_), None) => true,
            (Reach::Installed(found), Some(owner)) => owner == Some(found.account),
        });
    }

    /// Forgets every account that installation `id` was found on (it answered that it is
    /// suspended).
    pub(super) fn forget_installation(&self, id: u64) {
        let _ = self.reach.invalidate_entries_if(move |_, reach| matches!(reach, Reach::Installed(f) if f.id == id));
    }

    /// The credential of installation `id`, made on first use.
    pub(super) fn credential(&self, id: u64) -> Result<Arc<Credential>, GithubError> {
        self.credentials
            .try_get_with(id, || {
                self.app
                    .octo
                    .installation(octocrab::models::InstallationId(id))
                    .map(|octo| Arc::new(Credential::new(octo, Some(id), self.max_in_flight)))
                    .map_err(|e| GithubError::Protocol { route: "(installation client)".into(), detail: e.to_string() })
            })
            .map_err(|e| (*e).clone())
    }

    /// A credential for a question about no repository (an account's login or id, which any
    /// installation may ask): the installation in use with the most budget left.
    pub(super) fn any_credential(&self) -> Option<Arc<Credential>> {
        let remaining = |c: &Credential| c.budget.lock().map_or(u64::MAX, |b| b.remaining);
        let usable = |c: &Credential| {
            !c.suspended.load(std::sync::atomic::Ordering::Relaxed)
                && !c.refused.load(std::sync::atomic::Ordering::Relaxed)
        };
        self.credentials.iter().map(|(_, c)| c).filter(|c| usable(c)).max_by_key(|c| remaining(c))
    }

    /// Each installation in use and its budget, as GitHub's last answer to it said.
    pub(super) fn budgets(&self) -> Vec<(u64, super::GithubBudget)> {
        let mut all: Vec<_> = self.credentials.iter().filter_map(|(id, c)| c.budget.lock().map(|b| (*id, b))).collect();
        all.sort_by_key(|(id, b)| (b.remaining, *id));
        all
    }
}

/// An installation object, as found.
pub(super) fn found(wire: WireInstallation) -> Found {
    Found {
        id: wire.id,
        account: OwnerId(wire.account.id),
        selected: wire.repository_selection == "selected",
        suspended: wire.suspended_at.is_some(),
    }
}

fn owner_key(owner: &str) -> Key {
    Key::Owner(owner.to_ascii_lowercase())
}

fn repo_key(coords: &RepoCoords) -> Key {
    Key::Repo(format!("{}/{}", coords.owner(), coords.name()).to_ascii_lowercase())
}
