#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorizer;
mod cache;
mod clock;
mod decision;
mod email;
mod github;
mod google;
mod ids;
mod policy;
mod secret;
pub mod store;
mod viewer;
mod webhook;
#[cfg(feature = "world")]
pub mod world;

pub use authorizer::{
    Authorizer, AuthorizerBuilder, BuildError, ChangedBy, CheckError, ManageError, Principal, ViewerChange,
};
pub use cache::{CacheConfig, CacheStats, Consistency, Invalidation};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use decision::{Decision, NoAccessDetail, Outcome, Reason, Source};
pub use email::{Email, EmailError, MAX_EMAIL_LEN};
pub use github::{ClientBuildError, GithubAuth, GithubConfig, GithubError, UnavailableCause};
pub use google::{GoogleConfig, GoogleError, GoogleIdentity};
pub use ids::{App, AppId, GithubUser, GrantId, InvalidRepoCoords, OwnerId, RepoCoords, RepoId, UserId};
pub use policy::{Capability, Policy, Role, RoleGrant, RoleName, UnknownCapability, Visibility};
pub use secret::{AppPrivateKey, GithubToken, InvalidKey, LinkToken, SessionKey, SessionToken, WebhookSecret};
pub use viewer::{
    GoogleSignInError, IssuedLink, IssuedSession, KeysFileError, LinkConfig, LinkError, LinkInfo, Session,
    SessionConfig, SessionError, SessionKeys, Via,
};
pub use webhook::{
    MAX_WEBHOOK_BODY, VerifiedDelivery, WEBHOOK_EVENTS, WebhookError, WebhookOutcome, WebhookStats, WebhookVerifier,
};
