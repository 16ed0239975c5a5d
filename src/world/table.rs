//! Decision tables (format version 1): who may do what to which app in a world, checked through
//! the same path as every check (the world's mock GitHub, the real client, the cache, the
//! policy). `ghauthz test FILE` runs them; so can a Rust test, through [`DecisionTable`].

use crate::authorizer::CheckRequest;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{MAX_WORLD_FILE, MockGithub, World, WorldError, from_toml, position, read_bounded, timestamp};
use crate::authorizer::{Authorizer, ChangedBy, SupportGrant};
use crate::clock::SystemClock;
use crate::core::email::Email;
use crate::core::ids::{App, AppId, GithubUser};
use crate::core::policy::{Capability, Policy};
use crate::core::principal::Principal;
use crate::core::support::{MAX_SUPPORT_WINDOW, valid_agent_name};
use crate::core::time::{Clock, ManualClock, Timestamp};
use crate::store::{MemoryStore, prelude::*};

/// The largest policy file a table may name, in bytes.
const MAX_POLICY_FILE: u64 = 64 * 1024;

/// The reason kinds a case may name.
const REASON_KINDS: [&str; 9] = [
    "github_role",
    "public_app",
    "viewer_grant",
    "not_invited",
    "session_invalid",
    "no_access",
    "repo_replaced",
    "unknown_app",
    "support_window",
];

/// A decision table that could not be loaded or run: where, which field, and what is wrong.
/// Shaped as [`WorldError`]; its kind is `bad_table`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TableError(WorldError);

impl TableError {
    /// A stable name: `bad_table`.
    pub fn kind(&self) -> &'static str {
        "bad_table"
    }

    /// The file, line and column, and field, as a world error gives them.
    pub fn detail(&self) -> &WorldError {
        &self.0
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    version: Spanned<u32>,
    world: Spanned<String>,
    #[serde(default)]
    policy: Option<Spanned<String>>,
    #[serde(default)]
    now: Option<Spanned<String>>,
    #[serde(default)]
    case: Vec<CaseSpec>,
    #[serde(default)]
    support: Vec<SupportSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    #[serde(default)]
    name: Option<String>,
    principal: Spanned<String>,
    app: Spanned<String>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    reason: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupportSpec {
    app: Spanned<String>,
    #[serde(default)]
    agent: Option<Spanned<String>>,
    capabilities: Spanned<Vec<Spanned<String>>>,
    hours: Spanned<u64>,
}

/// Who a case is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Github(GithubUser),
    Anonymous,
    Viewer(Email),
    Support(String),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    principal: String,
    who: Who,
    app: App,
    checks: Vec<(Capability, bool)>,
    reason: Option<String>,
}

#[derive(Debug, Clone)]
struct Window {
    app: AppId,
    agent: Option<String>,
    capabilities: Vec<Capability>,
    hours: u64,
}

/// A loaded decision table: its world, policy and clock, its cases, and the support windows it
/// opens.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/decisions/acme.toml");
/// let table = ghauthz::world::DecisionTable::load(path).unwrap();
/// let report = table.run().await.unwrap();
/// assert_eq!(report.failed, 0, "{:?}", report.failures().collect::<Vec<_>>());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DecisionTable {
    file: PathBuf,
    world: World,
    policy: Policy,
    now: Option<Timestamp>,
    cases: Vec<Case>,
    windows: Vec<Window>,
}

/// One checked (case, capability): what was wanted, what came out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case's name (or its principal and app).
    pub case: String,
    /// The principal as written.
    pub principal: String,
    /// The app.
    pub app: String,
    /// The capability.
    pub capability: Capability,
    /// `allow` or `deny`, with the reason kind when the case names one (`deny:github_role`).
    pub want: String,
    /// `allow` or `deny` with the decision's reason kind, or `error:<kind>` when the check
    /// could not decide.
    pub got: String,
    /// Why it failed; empty when it passed.
    pub reason: String,
    /// Whether it passed.
    #[serde(skip)]
    pub passed: bool,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableReport {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Every check, in the table's order.
    pub results: Vec<CaseResult>,
}

impl TableReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.passed)
    }

    /// `{"passed", "failed", "failures": [{"case", "principal", "app", "capability", "want",
    /// "got", "reason"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed,
            "failed": self.failed,
            "failures": self.failures().collect::<Vec<_>>(),
        })
    }

    /// JUnit XML: one suite named `suite`, one test case per (case, capability).
    pub fn to_junit(&self, suite: &str) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let (tests, failures) = (self.results.len(), self.failed);
        let _ = writeln!(xml, "<testsuites tests=\"{tests}\" failures=\"{failures}\">");
        let _ = writeln!(xml, "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">", escape(suite));
        for r in &self.results {
            let name = format!("{} {} {}", r.principal, r.app, r.capability.as_str());
            let _ = write!(xml, "    <testcase classname=\"{}\" name=\"{}\"", escape(&r.case), escape(&name));
            if r.passed {
                xml.push_str("/>\n");
            } else {
                let message = format!("want {}, got {}: {}", r.want, r.got, r.reason);
                let _ = writeln!(xml, "><failure message=\"{}\"/></testcase>", escape(&message));
            }
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

/// `s` with XML's five special characters escaped, and dropped: control characters, and every
/// other character outside XML 1.0's `Char` production (U+FFFE and U+FFFF; Rust's `char` holds
/// no surrogate).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => out.push(c),
        }
    }
    out
}

/// Loads what the table's file names (a world, a policy) and refuses with the table's line.
struct Loader<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Loader<'_> {
    fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> TableError {
        TableError(WorldError {
            file: Some(self.file.to_owned()),
            position: span.map(|s| position(self.text, s.start)),
            field: Some(field.into()),
            message: message.into(),
        })
    }

    fn capability(&self, s: &Spanned<String>, field: String) -> Result<Capability, TableError> {
        s.get_ref()
            .parse::<Capability>()
            .map_err(|_| self.err(Some(s.span()), field, "expected view, edit, deploy or delete"))
    }
}

impl DecisionTable {
    /// Loads a table (at most as large as a world file may be); `world` and `policy` resolve
    /// against its folder. Refuses, with the line and field, a wrong version, an unreadable
    /// world or policy, an unknown principal, app, capability or reason kind, a capability both
    /// allowed and denied, a case that checks nothing, and a support window that is not one.
    pub fn load(path: impl AsRef<Path>) -> Result<DecisionTable, TableError> {
        let file = path.as_ref();
        let text = read_bounded(file, MAX_WORLD_FILE).map_err(|e| {
            TableError(WorldError {
                file: Some(file.to_owned()),
                position: None,
                field: None,
                message: format!("cannot read: {e}"),
            })
        })?;
        let ld = Loader { text: &text, file };
        let tf: TableFile = from_toml(&text, Some(file)).map_err(TableError)?;
        if *tf.version.get_ref() != 1 {
            return Err(ld.err(Some(tf.version.span()), "version", "this version reads decision tables of version 1"));
        }
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        let world = World::load(dir.join(tf.world.get_ref()))
            .map_err(|e| ld.err(Some(tf.world.span()), "world", e.to_string()))?;
        let policy = match &tf.policy {
            None => Policy::default(),
            Some(p) => {
                let text = read_bounded(&dir.join(p.get_ref()), MAX_POLICY_FILE)
                    .map_err(|e| ld.err(Some(p.span()), "policy", format!("cannot read: {e}")))?;
                // Where and what, never the policy file's text.
                toml::from_str(&text).map_err(|e| {
                    let at = e.span().map(|s| position(&text, s.start));
                    let at = at.map_or_else(String::new, |(line, col)| format!(" at {line}:{col}"));
                    ld.err(
                        Some(p.span()),
                        "policy",
                        format!("the policy file is refused{at}: {}", super::without_values(e.message())),
                    )
                })?
            }
        };
        let now = match &tf.now {
            None => world.now(),
            Some(s) => Some(timestamp(s.get_ref()).map_err(|m| ld.err(Some(s.span()), "now", m))?),
        };
        let cases = tf.case.iter().enumerate().map(|(i, c)| Self::case(&ld, &world, i, c)).collect::<Result<_, _>>()?;
        let windows =
            tf.support.iter().enumerate().map(|(i, w)| Self::window(&ld, &world, i, w)).collect::<Result<_, _>>()?;
        Ok(DecisionTable { file: file.to_owned(), world, policy, now, cases, windows })
    }

    fn case(ld: &Loader<'_>, world: &World, i: usize, c: &CaseSpec) -> Result<Case, TableError> {
        let p = &c.principal;
        let who =
            match p.get_ref().split_once(':') {
                None if p.get_ref() == "anonymous" => Who::Anonymous,
                Some(("github", login)) => Who::Github(world.user(login).ok_or_else(|| {
                    ld.err(Some(p.span()), format!("case[{i}].principal"), "names no user of the world")
                })?),
                Some(("viewer", email)) => Who::Viewer(
                    Email::parse(email)
                        .map_err(|e| ld.err(Some(p.span()), format!("case[{i}].principal"), e.to_string()))?,
                ),
                Some(("support", agent)) if valid_agent_name(agent) => Who::Support(agent.to_owned()),
                _ => {
                    return Err(ld.err(
                        Some(p.span()),
                        format!("case[{i}].principal"),
                        "expected github:LOGIN, anonymous, viewer:EMAIL or support:AGENT",
                    ));
                }
            };
        let app = world
            .app(c.app.get_ref())
            .ok_or_else(|| ld.err(Some(c.app.span()), format!("case[{i}].app"), "names no app of the world"))?;
        let mut checks = Vec::new();
        for (list, allowed, key) in [(&c.allow, true, "allow"), (&c.deny, false, "deny")] {
            for (j, s) in list.iter().enumerate() {
                let cap = ld.capability(s, format!("case[{i}].{key}[{j}]"))?;
                if checks.iter().any(|(c, _)| *c == cap) {
                    return Err(ld.err(
                        Some(s.span()),
                        format!("case[{i}].{key}[{j}]"),
                        format!("`{}` is listed twice (in allow and deny, or twice in one)", cap.as_str()),
                    ));
                }
                checks.push((cap, allowed));
            }
        }
        if checks.is_empty() {
            return Err(ld.err(
                Some(p.span()),
                format!("case[{i}]"),
                "checks nothing: list capabilities in allow or deny",
            ));
        }
        if let Some(r) = &c.reason {
            if !REASON_KINDS.contains(&r.get_ref().as_str()) {
                return Err(ld.err(
                    Some(r.span()),
                    format!("case[{i}].reason"),
                    format!("unknown reason kind: expected one of {}", REASON_KINDS.join(", ")),
                ));
            }
        }
        Ok(Case {
            name: c.name.clone().unwrap_or_else(|| format!("{} on {}", p.get_ref(), c.app.get_ref())),
            principal: p.get_ref().clone(),
            who,
            app,
            checks,
            reason: c.reason.as_ref().map(|r| r.get_ref().clone()),
        })
    }

    fn window(ld: &Loader<'_>, world: &World, i: usize, w: &SupportSpec) -> Result<Window, TableError> {
        let app = world
            .app(w.app.get_ref())
            .ok_or_else(|| ld.err(Some(w.app.span()), format!("support[{i}].app"), "names no app of the world"))?;
        if let Some(agent) = w.agent.as_ref().filter(|a| !valid_agent_name(a.get_ref())) {
            return Err(ld.err(Some(agent.span()), format!("support[{i}].agent"), "not an agent's name"));
        }
        let mut capabilities = Vec::new();
        for (j, s) in w.capabilities.get_ref().iter().enumerate() {
            let cap = ld.capability(s, format!("support[{i}].capabilities[{j}]"))?;
            if cap.is_destructive() {
                return Err(ld.err(
                    Some(s.span()),
                    format!("support[{i}].capabilities[{j}]"),
                    "a window grants view or edit only",
                ));
            }
            capabilities.push(cap);
        }
        if capabilities.is_empty() {
            return Err(ld.err(Some(w.capabilities.span()), format!("support[{i}].capabilities"), "grants nothing"));
        }
        let max_hours = MAX_SUPPORT_WINDOW.as_secs() / 3600;
        if !(1..=max_hours).contains(w.hours.get_ref()) {
            return Err(ld.err(
                Some(w.hours.span()),
                format!("support[{i}].hours"),
                format!("expected 1 to {max_hours}"),
            ));
        }
        Ok(Window {
            app: app.id().clone(),
            agent: w.agent.as_ref().map(|a| a.get_ref().clone()),
            capabilities,
            hours: *w.hours.get_ref(),
        })
    }

    /// The table's file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// How many checks it makes: one per (case, capability).
    pub fn checks(&self) -> usize {
        self.cases.iter().map(|c| c.checks.len()).sum()
    }

    /// Runs every case: a mock GitHub serves the world, an authorizer with the table's policy
    /// and clock checks through it, on a store seeded with the world's apps and viewers, after
    /// the table's support windows are opened at `now` by the operator. A check that cannot
    /// decide is a failure that says so, never a pass.
    ///
    /// # Errors
    ///
    /// [`TableError`] when the mock GitHub or the authorizer cannot start, or a support window
    /// cannot be opened.
    pub async fn run(&self) -> Result<TableReport, TableError> {
        let fail = |message: String| {
            TableError(WorldError { file: Some(self.file.clone()), position: None, field: None, message })
        };
        let clock: Arc<dyn Clock> = match self.now {
            Some(t) => Arc::new(ManualClock::new(t)),
            None => Arc::new(SystemClock),
        };
        let mock = MockGithub::start_with_clock(self.world.clone(), clock.clone())
            .await
            .map_err(|e| fail(format!("cannot start the mock GitHub: {e}")))?;
        let store = Arc::new(MemoryStore::new());
        store.seed_once(&self.world.app_records(), clock.now()).await.map_err(|e| fail(e.to_string()))?;
        let keys = crate::viewer::SessionKeys::generate().map_err(|e| fail(e.to_string()))?;
        let authz = Authorizer::builder(mock.github_config())
            .policy(self.policy.clone())
            .clock(clock)
            .store(store)
            .sessions(keys, crate::viewer::SessionConfig::default())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        for w in &self.windows {
            let mut grant = SupportGrant::new("decision table")
                .with_capabilities(w.capabilities.iter().copied())
                .with_duration(Duration::from_secs(w.hours * 3600));
            if let Some(agent) = &w.agent {
                grant = grant.for_agent(agent.clone());
            }
            authz.grant_support(&ChangedBy::Operator, &w.app, &grant).await.map_err(|e| fail(e.to_string()))?;
        }
        let mut results = Vec::with_capacity(self.checks());
        for case in &self.cases {
            for &(cap, allow) in &case.checks {
                results.push(self.check(&authz, case, cap, allow).await);
            }
        }
        let passed = results.iter().filter(|r| r.passed).count();
        Ok(TableReport { passed, failed: results.len() - passed, results })
    }

    async fn check(&self, authz: &Authorizer, case: &Case, cap: Capability, allow: bool) -> CaseResult {
        let decided = match &case.who {
            Who::Github(user) => {
                authz.check(&CheckRequest::new(&Principal::github(user.clone()), &case.app, cap)).await
            }
            Who::Anonymous => authz.check(&CheckRequest::new(&Principal::Anonymous, &case.app, cap)).await,
            // Signed in as a redeemed link would sign it in, and checked as any session is (an
            // address not invited, as a viewer whose invitation was removed).
            Who::Viewer(email) => match authz.session_for(case.app.id(), email).await {
                Ok(session) => authz.check(&CheckRequest::new(&Principal::Viewer(session), &case.app, cap)).await,
                Err(e) => Err(crate::error::CheckError::Store(e)),
            },
            Who::Support(agent) => {
                authz.check(&CheckRequest::new(&Principal::support(agent.clone()), &case.app, cap)).await
            }
        };
        let got = decided.map_err(|e| (format!("error:{}", e.kind()), e.to_string()));
        self.result(case, cap, allow, got)
    }

    /// The result of one check: `got` is the decision, or what stopped it (`error:<kind>` and
    /// the error's message).
    fn result(
        &self,
        case: &Case,
        cap: Capability,
        allow: bool,
        got: Result<crate::Decision, (String, String)>,
    ) -> CaseResult {
        let outcome = if allow { "allow" } else { "deny" };
        let want = match &case.reason {
            Some(r) => format!("{outcome}:{r}"),
            None => outcome.to_owned(),
        };
        let (passed, got, reason) = match got {
            Ok(d) => {
                let got = format!("{}:{}", if d.is_allowed() { "allow" } else { "deny" }, d.reason().kind());
                let agrees = d.is_allowed() == allow && case.reason.as_deref().is_none_or(|r| r == d.reason().kind());
                let why = if agrees { String::new() } else { serde_json::to_string(d.reason()).unwrap_or_default() };
                (agrees, got, why)
            }
            Err((error, message)) => (false, error, format!("could not decide: {message}")),
        };
        CaseResult {
            case: case.name.clone(),
            principal: case.principal.clone(),
            app: case.app.id().0.clone(),
            capability: cap,
            want,
            got,
            reason,
            passed,
        }
    }
}
