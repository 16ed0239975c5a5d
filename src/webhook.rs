//! GitHub webhooks: deliveries verified (`X-Hub-Signature-256`, constant time) and turned into
//! the narrowest cache invalidations that are still safe.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::core::ids::{OwnerId, RepoId, UserId};
use crate::core::invalidation::Invalidation;
use crate::core::secret::WebhookSecret;
use crate::store::StoreError;

/// Why a delivery was refused or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No webhook secret was configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NotConfigured,
    /// A header GitHub always sends is missing or unreadable.
    #[error("missing or malformed header `{0}`")]
    MissingHeader(&'static str),
    /// The delivery id is not what GitHub sends (letters, digits and `-`, at most 100).
    #[error("malformed delivery id")]
    InvalidDeliveryId,
    /// No `X-Hub-Signature-256`.
    #[error("no `X-Hub-Signature-256` signature")]
    MissingSignature,
    /// Only a SHA-1 signature (`X-Hub-Signature`, or `sha1=`): refused, SHA-256 is required.
    #[error("only a sha-1 signature: `X-Hub-Signature-256` is required")]
    Sha1Only,
    /// The signature is not `sha256=` and 64 hex digits.
    #[error("malformed signature: expected `sha256=` and 64 hex digits")]
    MalformedSignature,
    /// The signature does not match the body under our secret.
    #[error("signature does not match")]
    BadSignature,
    /// The body is larger than GitHub ever sends ([`MAX_WEBHOOK_BODY`], 25 MB): refused before it
    /// is read.
    #[error("the delivery's body is larger than GitHub sends (25 MB)")]
    TooLarge,
    /// The delivery was verified and applied here, but the store could not record it or tell
    /// the other replicas: answer GitHub with an error so that it delivers again.
    #[error("delivery applied on this replica only: {0}")]
    Store(StoreError),
}

impl WebhookError {
    /// A stable name: `bad_signature` for every signature failure, `bad_request`, `too_large`,
    /// `not_configured`, or the store's own kind ([`StoreError::kind`]) for a delivery that could not be recorded.
    pub fn kind(&self) -> &'static str {
        match self {
            WebhookError::MissingSignature
            | WebhookError::Sha1Only
            | WebhookError::MalformedSignature
            | WebhookError::BadSignature => "bad_signature",
            WebhookError::MissingHeader(_) | WebhookError::InvalidDeliveryId => "bad_request",
            WebhookError::TooLarge => "too_large",
            WebhookError::NotConfigured => "not_configured",
            WebhookError::Store(e) => e.kind(),
        }
    }
}

/// A delivery whose signature matched: the only thing [`Authorizer::apply_webhook`] accepts.
///
/// [`Authorizer::apply_webhook`]: crate::Authorizer::apply_webhook
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    event: String,
    id: String,
    body: Vec<u8>,
}

impl VerifiedDelivery {
    /// The event's name (`X-GitHub-Event`).
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The delivery's id (`X-GitHub-Delivery`); a redelivery keeps it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw body that was signed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What applying a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookOutcome {
    /// These invalidations were applied here and sent to every other replica (none for an
    /// event that changes no permission, such as `ping`).
    Applied(Vec<Invalidation>),
    /// A delivery with this id was applied before: nothing was done.
    Duplicate,
    /// An event this version does not know: counted and ignored.
    UnknownEvent,
}

impl WebhookOutcome {
    /// The invalidations applied (empty unless [`WebhookOutcome::Applied`]).
    pub fn applied(&self) -> &[Invalidation] {
        match self {
            WebhookOutcome::Applied(v) => v,
            WebhookOutcome::Duplicate | WebhookOutcome::UnknownEvent => &[],
        }
    }
}

/// Webhook counters, since the authorizer was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Deliveries applied.
    pub applied: u64,
    /// Deliveries whose id had been seen: ignored.
    pub duplicates: u64,
    /// Deliveries of events this version does not know: ignored.
    pub unknown_events: u64,
    /// Deliveries of known events whose payload lacked what the event needs: everything was
    /// invalidated, since what changed could not be told.
    pub malformed: u64,
    /// Deliveries refused before anything was read (signature, headers).
    pub rejected: u64,
}

/// The webhook subsystem an authorizer holds: the verifier (when a secret is configured) and the
/// counters of what deliveries came to. Recording a delivery and applying its invalidations is
/// the authorizer's, which holds the store and the cache.
#[derive(Debug, Default)]
pub(crate) struct Webhooks {
    verifier: Option<WebhookVerifier>,
    applied: AtomicU64,
    duplicates: AtomicU64,
    unknown_events: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
}

impl Webhooks {
    pub(crate) fn new(verifier: Option<WebhookVerifier>) -> Self {
        Self { verifier, ..Self::default() }
    }

    /// The delivery, if its signature verifies; a refusal is counted.
    pub(crate) fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<VerifiedDelivery, WebhookError> {
        let verified = match &self.verifier {
            None => Err(WebhookError::NotConfigured),
            Some(v) => v.verify(headers, body),
        };
        if verified.is_err() {
            bump(&self.rejected);
        }
        verified
    }

    /// The invalidations the delivery calls for; `None` for an event this version does not know
    /// (counted and ignored). A known event whose payload lacks its ids calls for everything.
    pub(crate) fn invalidations(&self, delivery: &VerifiedDelivery) -> Option<Vec<Invalidation>> {
        match meaning(delivery.event(), delivery.body()) {
            Meaning::Unknown => {
                bump(&self.unknown_events);
                tracing::debug!(event = delivery.event(), "webhook: unknown event ignored");
                None
            }
            Meaning::Malformed => {
                bump(&self.malformed);
                tracing::warn!(event = delivery.event(), "webhook: payload lacks its ids; invalidating everything");
                Some(vec![Invalidation::All])
            }
            Meaning::Known(invs) => Some(invs),
        }
    }

    /// A delivery whose id was seen before.
    pub(crate) fn count_duplicate(&self) {
        bump(&self.duplicates);
    }

    /// A delivery applied.
    pub(crate) fn count_applied(&self) {
        bump(&self.applied);
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookStats {
            applied: read(&self.applied),
            duplicates: read(&self.duplicates),
            unknown_events: read(&self.unknown_events),
            malformed: read(&self.malformed),
            rejected: read(&self.rejected),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Verifies deliveries against the webhook's secret, and during a rotation its previous one.
///
/// # Rotation
///
/// To rotate without refusing a delivery: configure the new secret as current and the old one as
/// previous ([`WebhookVerifier::with_previous`]) on every replica; then set the new secret on
/// GitHub's webhook; once GitHub sends only the new one (and its redeliveries of older events
/// are no longer wanted), drop the previous secret. Each secret is compared in constant time,
/// and both are always compared, so timing tells nothing of which one matched.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    secrets: Vec<WebhookSecret>,
}

fn header<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<Option<&'h str>, WebhookError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| WebhookError::MissingHeader(name)),
    }
}

impl WebhookVerifier {
    /// A verifier for deliveries signed with `secret`.
    pub fn new(secret: WebhookSecret) -> Self {
        Self { secrets: vec![secret] }
    }

    /// Also accepts deliveries signed with `previous`, during a rotation (see `# Rotation`).
    ///
    /// ```
    /// use ghauthz::{WebhookSecret, WebhookVerifier};
    /// let secret = |s: &str| WebhookSecret::new(s.into()).unwrap();
    /// let v = WebhookVerifier::new(secret("new")).with_previous(secret("It's a Secret to Everybody"));
    /// let mut h = http::HeaderMap::new();
    /// h.insert("x-github-event", "ping".parse().unwrap());
    /// h.insert("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap());
    /// h.insert(
    ///     "x-hub-signature-256",
    ///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap(),
    /// );
    /// assert!(v.verify(&h, b"Hello, World!").is_ok(), "signed with the previous secret");
    /// assert!(WebhookVerifier::new(secret("new")).verify(&h, b"Hello, World!").is_err());
    /// ```
    pub fn with_previous(mut self, previous: WebhookSecret) -> Self {
        self.secrets.truncate(1);
        self.secrets.push(previous);
        self
    }

    /// Checks the delivery's `X-Hub-Signature-256` over the raw `body`, in constant time,
    /// before reading anything else of it.
    ///
    /// GitHub's published example:
    ///
    /// ```
    /// use ghauthz::{WebhookSecret, WebhookVerifier};
    /// let v = WebhookVerifier::new(WebhookSecret::new("It's a Secret to Everybody".into()).unwrap());
    /// let mut h = http::HeaderMap::new();
    /// h.insert("x-github-event", "ping".parse().unwrap());
    /// h.insert("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap());
    /// h.insert(
    ///     "x-hub-signature-256",
    ///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap(),
    /// );
    /// let d = v.verify(&h, b"Hello, World!").unwrap();
    /// assert_eq!(d.event(), "ping");
    /// assert!(v.verify(&h, b"Hello, World?").is_err());
    /// ```
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<VerifiedDelivery, WebhookError> {
        if body.len() > MAX_WEBHOOK_BODY {
            return Err(WebhookError::TooLarge);
        }
        let signature = match header(headers, "x-hub-signature-256")? {
            Some(s) => s,
            None if headers.contains_key("x-hub-signature") => return Err(WebhookError::Sha1Only),
            None => return Err(WebhookError::MissingSignature),
        };
        self.check_signature(signature, body)?;
        let event = header(headers, "x-github-event")?
            .filter(|e| {
                // GitHub's event names: lowercase letters, digits (`projects_v2_item`) and `_`.
                !e.is_empty()
                    && e.len() <= 64
                    && e.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .ok_or(WebhookError::MissingHeader("X-GitHub-Event"))?;
        let id = header(headers, "x-github-delivery")?.ok_or(WebhookError::MissingHeader("X-GitHub-Delivery"))?;
        if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(WebhookError::InvalidDeliveryId);
        }
        Ok(VerifiedDelivery { event: event.to_owned(), id: id.to_owned(), body: body.to_vec() })
    }

    fn check_signature(&self, signature: &str, body: &[u8]) -> Result<(), WebhookError> {
        if signature.starts_with("sha1=") {
            return Err(WebhookError::Sha1Only);
        }
        let hex_digits = signature.strip_prefix("sha256=").ok_or(WebhookError::MalformedSignature)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut expected).map_err(|_| WebhookError::MalformedSignature)?;
        let mut matched = false;
        // Every secret is tried, whichever matches: no early exit for timing to tell apart.
        for secret in &self.secrets {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.expose_secret()).map_err(|_| WebhookError::NotConfigured)?;
            mac.update(body);
            // `verify_slice` compares in constant time.
            matched |= mac.verify_slice(&expected).is_ok();
        }
        if matched { Ok(()) } else { Err(WebhookError::BadSignature) }
    }
}

/// The largest body GitHub sends (25 MB, GitHub's cap on a delivery's payload): a longer one is
/// [`WebhookError::TooLarge`].
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;

/// The events [`Authorizer::handle_webhook`](crate::Authorizer::handle_webhook) acts on: subscribe
/// the webhook to these (and only these need be sent; others are counted and ignored).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "ping",
    "member",
    "membership",
    "team",
    "team_add",
    "organization",
    "repository",
    "installation",
    "installation_repositories",
    "github_app_authorization",
    "org_block",
    "public",
    "fork",
];

/// What a verified delivery means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Meaning {
    /// A known event: these invalidations (possibly none).
    Known(Vec<Invalidation>),
    /// A known event whose payload lacks the ids it needs: everything, to be safe.
    Malformed,
    /// An event this version does not know.
    Unknown,
}

fn id_at(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_u64)
}

/// The narrowest invalidations that are still safe for `event` with this payload.
///
/// - `member` (a collaborator added, removed, or their role changed): that user on that
///   repository.
/// - `membership` (team membership) and `organization` `member_added`/`member_removed`: that
///   user on the organization's repositories. `member_invited` changes nothing until accepted.
/// - `team_add`, and `team` events naming a repository: that repository's facts (which of its
///   members a team reaches is not in the payload). Other `team` events (created, deleted, a
///   parent changed, or an edit that names no change): the organization's repositories; an edit
///   of only the name, description, privacy or notifications: nothing.
/// - `organization` `renamed` or `deleted`, and `installation` events: every repository of the
///   account.
/// - `repository`: that repository (renamed, transferred, deleted, privatized, publicized,
///   archived, unarchived); `created`: the owner's repositories, since the new one may take
///   coordinates an app was deployed from; `edited` of only the description, default branch,
///   homepage or topics changes no permission (an edit naming anything else, or nothing, drops
///   that repository's facts).
/// - `fork`: the forkee owner's repositories, as `repository` `created`.
/// - `installation_repositories`: each repository added or removed (the account's repositories if
///   it names none).
/// - `github_app_authorization` (a user revoked the App): that user.
/// - `org_block` `blocked` (a blocked user loses access to the organization's repositories): that
///   user on the organization's repositories; `unblocked` grants nothing back by itself.
/// - `public` (a private repository made public): that repository.
/// - `ping`: nothing.
fn meaning(event: &str, body: &[u8]) -> Meaning {
    if !WEBHOOK_EVENTS.contains(&event) {
        return Meaning::Unknown;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Meaning::Malformed };
    match interpret(event, &v) {
        Some(invs) => Meaning::Known(invs),
        None => Meaning::Malformed,
    }
}

fn interpret(event: &str, v: &Value) -> Option<Vec<Invalidation>> {
    let action = v.get("action").and_then(Value::as_str).unwrap_or("");
    let repo = || id_at(v, &["repository", "id"]).map(RepoId);
    let org = || id_at(v, &["organization", "id"]).map(OwnerId);
    Some(match event {
        "ping" => vec![],
        "member" => vec![Invalidation::UserOnRepo(UserId(id_at(v, &["member", "id"])?), repo()?)],
        "membership" => vec![Invalidation::UserInOwner(UserId(id_at(v, &["member", "id"])?), org()?)],
        "team_add" => vec![Invalidation::Repo(repo()?)],
        "team" => match (action, repo()) {
            (_, Some(r)) => vec![Invalidation::Repo(r)],
            ("added_to_repository" | "removed_from_repository", None) => return None,
            ("edited", None) => {
                if only_changed(v, &["name", "description", "privacy", "notification_setting"]) {
                    vec![]
                } else {
                    vec![Invalidation::Owner(org()?)]
                }
            }
            _ => vec![Invalidation::Owner(org()?)],
        },
        "organization" => match action {
            "member_invited" => vec![],
            "member_added" | "member_removed" => {
                vec![Invalidation::UserInOwner(UserId(id_at(v, &["membership", "user", "id"])?), org()?)]
            }
            _ => vec![Invalidation::Owner(org()?)],
        },
        "repository" => match action {
            "edited" if only_changed(v, &["description", "default_branch", "homepage", "topics"]) => vec![],
            // New coordinates under the owner may now name this repository instead of what was
            // cached for them (a repository replaced by a namesake).
            "created" => vec![Invalidation::Owner(OwnerId(id_at(v, &["repository", "owner", "id"])?))],
            _ => vec![Invalidation::Repo(repo()?)],
        },
        "installation" => vec![Invalidation::Owner(OwnerId(id_at(v, &["installation", "account", "id"])?))],
        "org_block" => match action {
            "unblocked" => vec![],
            _ => vec![Invalidation::UserInOwner(UserId(id_at(v, &["blocked_user", "id"])?), org()?)],
        },
        "public" => vec![Invalidation::Repo(repo()?)],
        "installation_repositories" => {
            let mut out = Vec::new();
            for list in ["repositories_added", "repositories_removed"] {
                for r in v.get(list).and_then(Value::as_array)? {
                    out.push(Invalidation::Repo(RepoId(r.get("id").and_then(Value::as_u64)?)));
                }
            }
            if out.is_empty() {
                // A change of the installation's reach that names no repository: all of them.
                out.push(Invalidation::Owner(OwnerId(id_at(v, &["installation", "account", "id"])?)));
            }
            out
        }
        // A fork is a repository created under the forkee's owner, as `repository` `created` is.
        "fork" => vec![Invalidation::Owner(OwnerId(id_at(v, &["forkee", "owner", "id"])?))],
        "github_app_authorization" => vec![Invalidation::User(UserId(id_at(v, &["sender", "id"])?))],
        _ => return None,
    })
}

/// Whether the payload's `changes` names at least one field, and only fields among `harmless`.
/// An edit that names none, or one not listed (GitHub adds fields), may have changed access.
fn only_changed(v: &Value, harmless: &[&str]) -> bool {
    v.get("changes")
        .and_then(Value::as_object)
        .is_some_and(|changes| !changes.is_empty() && changes.keys().all(|k| harmless.contains(&k.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_without_the_ids_its_event_needs_is_malformed() {
        assert_eq!(meaning("member", br#"{"action":"removed","member":{"id":3}}"#), Meaning::Malformed);
        assert_eq!(meaning("member", b"not json"), Meaning::Malformed);
        assert_eq!(meaning("installation_repositories", br#"{"action":"added"}"#), Meaning::Malformed);
        assert_eq!(meaning("deployment", b"{}"), Meaning::Unknown);
        assert_eq!(meaning("ping", br#"{"zen":"Keep it logically awesome."}"#), Meaning::Known(vec![]));
    }

    #[test]
    fn a_team_edit_of_its_name_alone_changes_nothing_but_a_parent_change_does() {
        let name = br#"{"action":"edited","changes":{"name":{"from":"x"}},"organization":{"id":5000}}"#;
        assert_eq!(meaning("team", name), Meaning::Known(vec![]));
        let parent = br#"{"action":"edited","changes":{"parent":{"from":null}},"organization":{"id":5000}}"#;
        assert_eq!(meaning("team", parent), Meaning::Known(vec![Invalidation::Owner(OwnerId(5000))]));
        let unsaid = br#"{"action":"edited","changes":{},"organization":{"id":5000}}"#;
        assert_eq!(meaning("team", unsaid), Meaning::Known(vec![Invalidation::Owner(OwnerId(5000))]));
    }

    #[test]
    fn a_repository_edit_beyond_its_description_drops_the_repository() {
        let topics = br#"{"action":"edited","changes":{"topics":{"from":[]}},"repository":{"id":7}}"#;
        assert_eq!(meaning("repository", topics), Meaning::Known(vec![]));
        for changes in [r#"{"visibility":{"from":"public"}}"#, "{}"] {
            let body = format!(r#"{{"action":"edited","changes":{changes},"repository":{{"id":7}}}}"#);
            assert_eq!(meaning("repository", body.as_bytes()), Meaning::Known(vec![Invalidation::Repo(RepoId(7))]));
        }
    }

    #[test]
    fn an_installation_change_naming_no_repository_drops_the_account() {
        let body = br#"{"action":"added","repositories_added":[],"repositories_removed":[],
            "installation":{"account":{"id":9}}}"#;
        assert_eq!(meaning("installation_repositories", body), Meaning::Known(vec![Invalidation::Owner(OwnerId(9))]));
    }
}
