//! OpenID AuthZEN Authorization API 1.0 over the library's checks: each evaluation becomes one
//! [`CheckRequest`], and its [`Decision`] is answered with the reason, the source and the age
//! of its facts in `context`. Nothing is decided here: a subject, resource or action this
//! service does not know is a denial naming what it did not know, and could not decide is an
//! error, never an allow.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Service;
use super::keys::Scope;
use super::wire::{WireError, admit, json_object, ok};
use crate::authorizer::CheckRequest;
use crate::cache::Consistency;
use crate::core::decision::Decision;
use crate::core::ids::{AppId, UserId};
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::error::CheckError;

/// The most evaluations one batch holds.
pub const MAX_BATCH: usize = 1000;

/// The most evaluations of one batch in progress at once: a batch of new users cannot send a
/// thousand requests to GitHub at the same moment.
const BATCH_CONCURRENCY: usize = 32;

/// The longest subject or resource id taken.
pub const MAX_ID: usize = 4096;

/// One evaluation, read from the wire.
enum Item<'a> {
    /// A check to make.
    Check { who: Who<'a>, app: AppId, cap: Capability, consistency: Consistency },
    /// Not a check: a subject type, resource type or action this service does not know.
    Unknown(&'static str),
}

/// Who asks, as the wire names them.
enum Who<'a> {
    Github(UserId, Option<&'a str>),
    Session(&'a str),
    Principal(Principal),
}

impl Who<'_> {
    /// The library's check request for this subject.
    fn asks<'r>(&'r self, app: &'r AppId, cap: Capability, consistency: Consistency) -> CheckRequest<'r> {
        match self {
            Who::Github(id, login) => CheckRequest::github_id(*id, *login, app, cap),
            Who::Session(token) => CheckRequest::session(token, app, cap),
            Who::Principal(p) => CheckRequest::new(p, app, cap),
        }
        .with_consistency(consistency)
    }
}

/// A required member that must be an object; `name` says which, in an error.
fn object<'a>(value: Option<&'a Value>, name: &'static str) -> Result<&'a Map<String, Value>, WireError> {
    match value {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(WireError::bad_request(format!("`{name}` must be an object"))),
        None => Err(WireError::bad_request(format!("`{name}` is required"))),
    }
}

/// A required string member, at most [`MAX_ID`] bytes.
fn string<'a>(m: &'a Map<String, Value>, key: &str, name: &'static str) -> Result<&'a str, WireError> {
    match m.get(key) {
        Some(Value::String(s)) if s.len() > MAX_ID => {
            Err(WireError::bad_request(format!("`{name}` is longer than {MAX_ID} bytes")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(WireError::bad_request(format!("`{name}` must be a string"))),
        None => Err(WireError::bad_request(format!("`{name}` is required"))),
    }
}

/// The consistency `context` asks for: `cached` (the default) or `fresh`.
fn consistency(context: Option<&Value>) -> Result<Consistency, WireError> {
    let Some(context) = context.filter(|c| !c.is_null()) else { return Ok(Consistency::Cached) };
    let Value::Object(context) = context else {
        return Err(WireError::bad_request("`context` must be an object"));
    };
    match context.get("consistency") {
        None => Ok(Consistency::Cached),
        Some(Value::String(s)) if s == "cached" => Ok(Consistency::Cached),
        Some(Value::String(s)) if s == "fresh" => Ok(Consistency::Fresh),
        Some(_) => Err(WireError::bad_request("`context.consistency` must be \"cached\" or \"fresh\"")),
    }
}

/// The subject: its `type` and `id` (strings, required), and for a GitHub user the login the
/// caller believes is theirs.
fn subject(value: Option<&Value>) -> Result<Result<Who<'_>, &'static str>, WireError> {
    let m = object(value, "subject")?;
    let (kind, id) = (string(m, "type", "subject.type")?, string(m, "id", "subject.id")?);
    Ok(Ok(match kind {
        "github_user" => {
            let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
            let Some(id) = id.parse::<u64>().ok().filter(|_| digits) else {
                return Err(WireError::bad_request(
                    "`subject.id` of a `github_user` must be a GitHub user id (digits)",
                ));
            };
            let login = match m.get("properties") {
                None | Some(Value::Null) => None,
                Some(Value::Object(p)) => match p.get("login") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(login)) => Some(login.as_str()),
                    Some(_) => return Err(WireError::bad_request("`subject.properties.login` must be a string")),
                },
                Some(_) => return Err(WireError::bad_request("`subject.properties` must be an object")),
            };
            Who::Github(UserId(id), login)
        }
        "viewer_session" => Who::Session(id),
        "support_agent" => Who::Principal(Principal::support(id)),
        "anonymous" => Who::Principal(Principal::Anonymous),
        _ => return Ok(Err("unknown_subject_type")),
    }))
}

/// One evaluation from its four parts.
fn item<'a>(
    subject_v: Option<&'a Value>,
    action_v: Option<&'a Value>,
    resource_v: Option<&'a Value>,
    context: Option<&'a Value>,
) -> Result<Item<'a>, WireError> {
    let who = subject(subject_v)?;
    let resource = object(resource_v, "resource")?;
    let (kind, id) = (string(resource, "type", "resource.type")?, string(resource, "id", "resource.id")?);
    let action = object(action_v, "action")?;
    let name = string(action, "name", "action.name")?;
    let consistency = consistency(context)?;
    let who = match who {
        Ok(who) => who,
        Err(unknown) => return Ok(Item::Unknown(unknown)),
    };
    if kind != "app" {
        return Ok(Item::Unknown("unknown_resource_type"));
    }
    let Some(cap) = Capability::ALL.into_iter().find(|c| c.as_str() == name) else {
        return Ok(Item::Unknown("unknown_action"));
    };
    Ok(Item::Check { who, app: AppId(id.to_owned()), cap, consistency })
}

/// A decision as AuthZEN answers it: `decision`, and in `context` the reason (as `ghauthz check`
/// prints it), where the facts came from and how old they are.
pub(crate) fn decision_json(d: &Decision) -> Value {
    json!({
        "decision": d.is_allowed(),
        "context": {"reason": d.reason(), "source": d.source(), "age_ms": d.age().as_millis() as u64},
    })
}

/// Could not decide: 503 with `Retry-After` where known. The message is the service's own: a
/// library error may carry a route with a login the caller sent.
fn undecided(e: &CheckError) -> WireError {
    let mut w = WireError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        e.kind(),
        "could not decide: GitHub or the store is unavailable; ask again later",
    );
    w.retry_after = e.retry_after().map(|d| d.as_secs().max(1));
    w
}

/// Makes the check the item asks for.
async fn evaluate(service: &Service, item: Item<'_>) -> Result<Value, WireError> {
    let (who, app, cap, consistency) = match item {
        Item::Unknown(kind) => return Ok(json!({"decision": false, "context": {"reason": {"kind": kind}}})),
        Item::Check { who, app, cap, consistency } => (who, app, cap, consistency),
    };
    let request = who.asks(&app, cap, consistency);
    let started = std::time::Instant::now();
    let decided = service.authz().check(&request).await;
    metrics::histogram!("ghauthz_decision_duration_seconds", "action" => cap.as_str())
        .record(started.elapsed().as_secs_f64());
    match decided {
        Ok(d) => Ok(decision_json(&d)),
        Err(e) => Err(undecided(&e)),
    }
}

/// `POST /access/v1/evaluation`.
pub(crate) async fn evaluation(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        admit(&service, &headers, Scope::Evaluate)?;
        let req = json_object(&headers, body).await?;
        let item = item(req.get("subject"), req.get("action"), req.get("resource"), req.get("context"))?;
        evaluate(&service, item).await
    };
    match answer.await {
        Ok(v) => ok(&v),
        Err(e) => e.into_response(),
    }
}

/// How a batch runs (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

fn semantic(options: Option<&Value>) -> Result<Semantic, WireError> {
    let bad = || {
        WireError::bad_request(
            "`options.evaluations_semantic` must be \"execute_all\", \"deny_on_first_deny\" or \"permit_on_first_permit\"",
        )
    };
    let Some(options) = options else { return Ok(Semantic::ExecuteAll) };
    let Value::Object(options) = options else {
        return Err(WireError::bad_request("`options` must be an object"));
    };
    match options.get("evaluations_semantic") {
        None => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) => match s.as_str() {
            "execute_all" => Ok(Semantic::ExecuteAll),
            "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
            "permit_on_first_permit" => Ok(Semantic::PermitOnFirstPermit),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// One item of a batch: its own members over the top level's; an item that is not one, or
/// whose check could not be decided, is `decision: false` with the error in `context.error`.
async fn batch_item(service: &Service, top: &Map<String, Value>, entry: &Value) -> Value {
    let Value::Object(own) = entry else {
        let e = WireError::bad_request("each of `evaluations` must be an object");
        return json!({"decision": false, "context": {"error": e.to_json()}});
    };
    let pick = |key: &str| own.get(key).or_else(|| top.get(key));
    let answer = match item(pick("subject"), pick("action"), pick("resource"), pick("context")) {
        Ok(item) => evaluate(service, item).await,
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(|e| json!({"decision": false, "context": {"error": e.to_json()}}))
}

/// `POST /access/v1/evaluations`: a batch, answered in request order. Without `evaluations` (or
/// with none), the top level is one evaluation, answered as `/evaluation` answers it.
pub(crate) async fn evaluations(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        admit(&service, &headers, Scope::Evaluate)?;
        let req = json_object(&headers, body).await?;
        let entries = match req.get("evaluations") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(WireError::bad_request("`evaluations` must be an array")),
        };
        if entries.is_empty() {
            let item = item(req.get("subject"), req.get("action"), req.get("resource"), req.get("context"))?;
            return evaluate(&service, item).await;
        }
        if entries.len() > MAX_BATCH {
            return Err(WireError::bad_request("`evaluations` holds more than 1,000 items"));
        }
        let semantic = semantic(req.get("options"))?;
        let results = match semantic {
            // Concurrently: the cache coalesces lookups the items share (one roster for a
            // repository, one account for a user).
            Semantic::ExecuteAll => {
                use futures_util::StreamExt as _;
                let items: Vec<_> = entries.iter().map(|e| batch_item(&service, &req, e)).collect();
                futures_util::stream::iter(items).buffered(BATCH_CONCURRENCY).collect().await
            }
            Semantic::DenyOnFirstDeny | Semantic::PermitOnFirstPermit => {
                let stop_on = semantic == Semantic::PermitOnFirstPermit;
                let mut results = Vec::with_capacity(entries.len());
                for entry in entries {
                    let result = batch_item(&service, &req, entry).await;
                    let decided = result["decision"] == Value::Bool(true);
                    results.push(result);
                    if decided == stop_on {
                        break;
                    }
                }
                results
            }
        };
        Ok(json!({"evaluations": results}))
    };
    match answer.await {
        Ok(v) => ok(&v),
        Err(e) => e.into_response(),
    }
}

/// `GET /.well-known/authzen-configuration`: where each API is, under the published identifier.
pub(crate) async fn metadata(State(service): State<Service>) -> Response {
    let base = service.public_url();
    ok(&json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    }))
}

/// The most results a search answers in one page, and the page size when none is asked.
pub const MAX_PAGE: usize = 1000;

/// A search's subject as a principal: `None` for one that names nobody (an id no user has, a
/// login of another account, a session token that does not verify).
async fn principal_of(service: &Service, who: Who<'_>) -> Result<Option<Principal>, WireError> {
    match who {
        Who::Github(id, login) => service.authz().github_principal(id, login).await.map_err(|e| undecided(&e)),
        Who::Session(token) => Ok(service.authz().verify_session(token).ok().map(Principal::Viewer)),
        Who::Principal(p) => Ok(Some(p)),
    }
}

/// A search that found nothing because it asked of something this service does not know.
fn unknown(kind: &'static str) -> (Vec<Value>, Option<Value>) {
    (Vec::new(), Some(json!({"reason": {"kind": kind}})))
}

/// The capability `action` names, if it names one.
fn capability(action: Option<&Value>) -> Result<Option<Capability>, WireError> {
    let name = string(object(action, "action")?, "name", "action.name")?;
    Ok(Capability::ALL.into_iter().find(|c| c.as_str() == name))
}

/// One page of `results`: `page.limit` (1 to 1,000; 1,000 when not given) from where
/// `page.token` says, the token being one this service gave for the same request. The token
/// is opaque: an offset and a digest of the request without its token.
fn page(req: &Map<String, Value>, results: Vec<Value>, context: Option<Value>) -> Result<Value, WireError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let page = match req.get("page") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(WireError::bad_request("`page` must be an object")),
    };
    let limit = match page.and_then(|p| p.get("limit")) {
        None | Some(Value::Null) => MAX_PAGE,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => usize::try_from(n).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            None => return Err(WireError::bad_request("`page.limit` must be a non-negative integer")),
        },
        Some(_) => return Err(WireError::bad_request("`page.limit` must be a non-negative integer")),
    };
    let mut asked = req.clone();
    if let Some(Value::Object(p)) = asked.get_mut("page") {
        p.remove("token");
    }
    let digest = hex::encode(&sha2::Sha256::digest(Value::Object(asked).to_string().as_bytes())[..8]);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let start = match page.and_then(|p| p.get("token")) {
        None | Some(Value::Null) => 0,
        Some(Value::String(t)) if t.is_empty() => 0,
        Some(Value::String(t)) => {
            let refused = || WireError::bad_request("`page.token` is not one this service gave for this request");
            let text = b64.decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(refused)?;
            let (offset, of) = text.split_once('.').ok_or_else(refused)?;
            if of != digest {
                return Err(refused());
            }
            offset.parse::<usize>().map_err(|_| refused())?
        }
        Some(_) => return Err(WireError::bad_request("`page.token` must be a string")),
    };
    let total = results.len();
    let end = start.saturating_add(limit).min(total);
    let shown: Vec<Value> = results.into_iter().skip(start).take(end.saturating_sub(start)).collect();
    let next_token = if end < total { b64.encode(format!("{end}.{digest}")) } else { String::new() };
    let mut answer =
        json!({"page": {"next_token": next_token, "count": shown.len(), "total": total}, "results": shown});
    if let Some(context) = context {
        answer["context"] = context;
    }
    Ok(answer)
}

/// Runs a search route: the key's scope, the body, then `search`, then the page.
async fn searching<F>(service: Service, headers: HeaderMap, body: Body, search: F) -> Response
where
    F: AsyncFnOnce(&Service, &Map<String, Value>) -> Result<(Vec<Value>, Option<Value>), WireError>,
{
    let answer = async {
        admit(&service, &headers, Scope::Search)?;
        let req = json_object(&headers, body).await?;
        let (results, context) = search(&service, &req).await?;
        page(&req, results, context)
    };
    match answer.await {
        Ok(v) => ok(&v),
        Err(e) => e.into_response(),
    }
}

/// `POST /access/v1/search/resource`: the apps the subject may do the action to, by id.
pub(crate) async fn search_resource(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    searching(service, headers, body, async |service: &Service, req: &Map<String, Value>| {
        let who = subject(req.get("subject"))?;
        let cap = capability(req.get("action"))?;
        let kind = string(object(req.get("resource"), "resource")?, "type", "resource.type")?;
        consistency(req.get("context"))?;
        let who = match who {
            Ok(who) => who,
            Err(unknown_kind) => return Ok(unknown(unknown_kind)),
        };
        let Some(cap) = cap else { return Ok(unknown("unknown_action")) };
        if kind != "app" {
            return Ok(unknown("unknown_resource_type"));
        }
        let Some(principal) = principal_of(service, who).await? else { return Ok((Vec::new(), None)) };
        let apps = service.authz().apps_for(&principal, cap).await.map_err(|e| undecided(&e))?;
        Ok((apps.iter().map(|a| json!({"type": "app", "id": a.id().0})).collect(), None))
    })
    .await
}

/// `POST /access/v1/search/action`: the actions the subject may do to the app, in the order
/// `view`, `edit`, `deploy`, `delete`. The facts are gathered once, by the strictest check
/// (`delete`, then `deploy`: on record, as every such check is), and the others are answered
/// from them.
pub(crate) async fn search_action(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    searching(service, headers, body, async |service: &Service, req: &Map<String, Value>| {
        let who = subject(req.get("subject"))?;
        let resource = object(req.get("resource"), "resource")?;
        let (kind, id) = (string(resource, "type", "resource.type")?, string(resource, "id", "resource.id")?);
        let consistency = consistency(req.get("context"))?;
        let who = match who {
            Ok(who) => who,
            Err(unknown_kind) => return Ok(unknown(unknown_kind)),
        };
        if kind != "app" {
            return Ok(unknown("unknown_resource_type"));
        }
        let app = AppId(id.to_owned());
        let mut allowed = Vec::new();
        for cap in Capability::ALL.into_iter().rev() {
            let request = who.asks(&app, cap, consistency);
            if service.authz().check(&request).await.map_err(|e| undecided(&e))?.is_allowed() {
                allowed.push(cap);
            }
        }
        allowed.reverse();
        Ok((allowed.iter().map(|c| json!({"name": c.as_str()})).collect(), None))
    })
    .await
}

/// `POST /access/v1/search/subject`: the GitHub users who may do the action to the app (from
/// its repository's roster), and for `view` of a private app its invited viewers
/// (`viewer_email`); `context.anyone` when anybody may. Where GitHub does not list who holds a
/// role on the repository, 503: never a partial list.
pub(crate) async fn search_subject(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    searching(service, headers, body, async |service: &Service, req: &Map<String, Value>| {
        let kind = string(object(req.get("subject"), "subject")?, "type", "subject.type")?;
        let cap = capability(req.get("action"))?;
        let resource = object(req.get("resource"), "resource")?;
        let (resource_kind, id) = (string(resource, "type", "resource.type")?, string(resource, "id", "resource.id")?);
        consistency(req.get("context"))?;
        if kind != "github_user" {
            return Ok(unknown("unknown_subject_type"));
        }
        let Some(cap) = cap else { return Ok(unknown("unknown_action")) };
        if resource_kind != "app" {
            return Ok(unknown("unknown_resource_type"));
        }
        let found = service.authz().subjects_for(&AppId(id.to_owned()), cap).await.map_err(|e| undecided(&e))?;
        let mut results: Vec<Value> =
            found.github_users.iter().map(|u| json!({"type": "github_user", "id": u.0.to_string()})).collect();
        results.extend(found.viewers.iter().map(|e| json!({"type": "viewer_email", "id": e.as_str()})));
        Ok((results, Some(json!({"anyone": found.anyone}))))
    })
    .await
}
