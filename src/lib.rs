#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorizer;
mod cache;
mod class;
mod clock;
mod core;
mod error;
mod github;
mod google;
#[cfg(feature = "http")]
pub mod http;
pub mod mail;
pub mod store;
pub mod telemetry;
mod viewer;
mod webhook;
#[cfg(feature = "world")]
pub mod world;

pub use crate::core::decision::{Decision, Lookup, NoAccessDetail, Outcome, Reason, Source};
pub use crate::core::deployment::{MAX_DEPLOY_FIELD, valid_app_id, valid_branch, valid_main_file};
pub use crate::core::email::{Email, EmailError, MAX_EMAIL_LEN};
pub use crate::core::ids::{
    App, AppId, GithubUser, GrantId, InvalidRepoCoords, OwnerId, RepoCoords, RepoId, SupportId, UserId,
};
pub use crate::core::invalidation::Invalidation;
pub use crate::core::policy::{
    Capability, Policy, Role, RoleGrant, RoleName, UnknownCapability, UnknownVisibility, Visibility,
};
pub use crate::core::principal::Principal;
pub use crate::core::secret::{
    AppPrivateKey, GithubToken, InvalidKey, LinkToken, RandomnessUnavailable, SessionKey, SessionToken, WebhookSecret,
};
pub use crate::core::session::{Session, SessionError, Via};
pub use crate::core::support::{
    DEFAULT_SUPPORT_WINDOW, MAX_AGENT_NAME, MAX_SUPPORT_REASON, MAX_SUPPORT_WINDOW, SupportWindow, valid_agent_name,
};
pub use crate::core::time::{Clock, ManualClock, Timestamp};
pub use authorizer::{
    AppRef, Authorizer, AuthorizerBuilder, BuildError, ChangedBy, CheckRequest, Deployment, ManageError, Subjects,
    SupportGrant, ViewerChange,
};
pub use cache::{CacheConfig, CacheStats, Consistency};
pub use class::ErrorClass;
pub use clock::{SystemClock, TimeError};
pub use error::CheckError;
pub use github::{
    ClientBuildError, DEFAULT_MAX_IN_FLIGHT, GithubAuth, GithubBudget, GithubConfig, GithubError, UnavailableCause,
};
pub use google::{GoogleBuildError, GoogleConfig, GoogleError, GoogleIdentity};
pub use viewer::{
    GoogleSignInError, IssuedLink, IssuedSession, KeysFileError, LinkConfig, LinkError, LinkInfo, MAX_KEYS_FILE,
    SendLinkError, SentLink, SessionConfig, SessionKeys, SignInRefusal,
};
pub use webhook::{
    MAX_WEBHOOK_BODY, VerifiedDelivery, WEBHOOK_EVENTS, WebhookError, WebhookOutcome, WebhookStats, WebhookVerifier,
};
