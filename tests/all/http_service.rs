//! The HTTP surface (spec/http.md, docs/http.md): each wire rule through the router itself
//! (`tower::ServiceExt::oneshot`), over a socket with a real HTTP client, against the AuthZEN
//! 1.0 schemas and the spec's own example requests.
#![cfg(all(feature = "http", feature = "world"))]

use std::sync::Arc;

use axum::body::Body;
use ghauthz::http::{ApiKeys, Service};
use ghauthz::store::MemoryStore;
use ghauthz::store::prelude::*;
use ghauthz::world::{MockGithub, World};
use ghauthz::{
    AppId, Authorizer, Capability, ChangedBy, CheckRequest, Clock as _, GithubAuth, GithubConfig, GithubToken,
    ManualClock, Principal, SessionConfig, SessionKeys, SupportGrant,
};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::common;

const ALL: &str = "all-scope-key-0123456789abcdef0123456789";
const EVALUATE: &str = "evaluate-key-0123456789abcdef0123456789";
const SEARCH: &str = "search-key-0123456789abcdef0123456789ab";
const SECRET: &str = "webhook-secret";

struct Http {
    service: Service,
    world: World,
    mock: MockGithub,
    clock: ManualClock,
}

fn keys() -> ApiKeys {
    ApiKeys::parse(&format!("all {ALL}\nevaluate {EVALUATE}\nsearch {SEARCH}\n")).unwrap()
}

/// A decision point over `world` (its apps seeded in a memory store), on the world's clock.
async fn over(world: &str, github: impl Fn(&MockGithub) -> GithubConfig) -> Http {
    let world = common::fixture(world);
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = Authorizer::builder(github(&mock))
        .clock(Arc::new(clock.clone()))
        .store(store)
        .sessions(SessionKeys::generate().unwrap(), SessionConfig::default())
        .webhook_secret(ghauthz::WebhookSecret::new(SECRET.into()).unwrap())
        .build()
        .unwrap();
    common::wait_until("the feed is heard", std::time::Duration::from_secs(5), || authz.stats().feed_listening).await;
    let service = Service::new(authz, keys(), "https://pdp.example/".parse().unwrap());
    Http { service, world, mock, clock }
}

async fn acme() -> Http {
    over("acme.toml", MockGithub::github_config).await
}

/// One request through the router: status, headers, and the body as JSON (`Null` if empty).
async fn send(service: &Service, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = service.router().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (parts.status, parts.headers, value)
}

fn post(path: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        b = b.header("authorization", format!("Bearer {key}"));
    }
    b.body(body.into()).unwrap()
}

async fn evaluate(h: &Http, body: Value) -> (StatusCode, HeaderMap, Value) {
    send(&h.service, post("/access/v1/evaluation", Some(EVALUATE), body.to_string())).await
}

fn github(world: &World, login: &str) -> Value {
    json!({"type": "github_user", "id": world.user(login).unwrap().id.0.to_string()})
}

fn ask(subject: Value, action: &str, app: &str) -> Value {
    json!({"subject": subject, "action": {"name": action}, "resource": {"type": "app", "id": app}})
}

/// Each answer is the library's own decision for the same question: its allow and its reason,
/// as `ghauthz check` prints it.
#[tokio::test]
async fn an_evaluation_answers_what_the_library_check_decides() {
    let h = acme().await;
    let authz = h.service.authz();
    let mut allowed = 0;
    for user in h.world.users() {
        let principal = Principal::github(h.world.user(&user.login).unwrap());
        for app in ["dash", "site", "notes", "analytics", "legacy"] {
            for cap in Capability::ALL {
                let (status, _, answer) = evaluate(&h, ask(github(&h.world, &user.login), cap.as_str(), app)).await;
                assert_eq!(status, StatusCode::OK);
                let d = authz.check(&CheckRequest::new(&principal, &AppId(app.into()), cap)).await.unwrap();
                assert_eq!(answer["decision"], d.is_allowed(), "{} {app} {cap:?}", user.login);
                assert_eq!(answer["context"]["reason"], serde_json::to_value(d.reason()).unwrap());
                assert!(answer["context"]["source"].is_string() && answer["context"]["age_ms"].is_u64());
                allowed += usize::from(d.is_allowed());
            }
        }
    }
    assert!(allowed > 20, "a world where some are allowed: {allowed}");
}

/// A login sent with the id must be that account's (without regard to case); an id no user
/// has holds no role.
#[tokio::test]
async fn a_github_users_login_must_name_the_same_account() {
    let h = acme().await;
    let carol = || github(&h.world, "carol");
    let mut with_login = carol();
    with_login["properties"] = json!({"login": "CAROL", "team": "ignored"});
    let (_, _, answer) = evaluate(&h, ask(with_login, "edit", "dash")).await;
    assert_eq!(
        (answer["decision"].clone(), answer["context"]["reason"]["kind"].clone()),
        (json!(true), json!("github_role"))
    );
    let mut wrong = carol();
    wrong["properties"] = json!({"login": "erin"});
    let (_, _, answer) = evaluate(&h, ask(wrong, "edit", "dash")).await;
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["reason"], json!({"kind": "no_access", "detail": "login_mismatch"}));
    // Not even what anybody may: the caller does not know whom it asks about.
    let mut wrong_on_public = carol();
    wrong_on_public["properties"] = json!({"login": "erin"});
    let (_, _, answer) = evaluate(&h, ask(wrong_on_public.clone(), "view", "site")).await;
    assert_eq!(answer["decision"], false, "{answer}");
    assert_eq!(answer["context"]["reason"], json!({"kind": "no_access", "detail": "login_mismatch"}));
    let (_, answer) =
        search(&h, "action", json!({"subject": wrong_on_public, "resource": {"type": "app", "id": "site"}})).await;
    assert_eq!(answer["results"], json!([]), "an action search agrees");
    let nobody = json!({"type": "github_user", "id": "999999"});
    let (_, _, answer) = evaluate(&h, ask(nobody.clone(), "view", "dash")).await;
    assert_eq!(answer["context"]["reason"], json!({"kind": "no_access", "detail": "no_role"}));
    let (_, _, answer) = evaluate(&h, ask(nobody, "view", "site")).await; // public
    assert_eq!(
        (answer["decision"].clone(), answer["context"]["reason"]["kind"].clone()),
        (json!(true), json!("public_app"))
    );
    // The account was looked up once for every question about it.
    assert_eq!(h.mock.requests("/user/3"), 1, "{:?}", h.mock.request_counts());
}

/// Viewers by session token, support agents by name, nobody signed in.
#[tokio::test]
async fn viewers_support_agents_and_nobody_are_subjects_too() {
    let h = acme().await;
    let authz = h.service.authz();
    let dash = AppId("dash".into());
    let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    let viewer = json!({"type": "viewer_session", "id": token.expose_secret()});
    let (_, _, answer) = evaluate(&h, ask(viewer.clone(), "view", "dash")).await;
    assert_eq!(answer["context"]["reason"], json!({"kind": "viewer_grant", "via": "email_link"}));
    let (_, _, answer) = evaluate(&h, ask(viewer, "edit", "dash")).await;
    assert_eq!(
        (answer["decision"].clone(), answer["context"]["reason"]["detail"].clone()),
        (json!(false), json!("view_only"))
    );
    let forged = json!({"type": "viewer_session", "id": "eyJhbGciOiJub25lIn0.e30."});
    let (_, _, answer) = evaluate(&h, ask(forged, "view", "dash")).await;
    assert_eq!(answer["context"]["reason"]["kind"], "session_invalid");

    let agent = json!({"type": "support_agent", "id": "a7"});
    let (_, _, answer) = evaluate(&h, ask(agent.clone(), "view", "dash")).await;
    assert_eq!(answer["context"]["reason"]["detail"], "no_support_window");
    let erin = ChangedBy::Principal(Principal::github(h.world.user("erin").unwrap()));
    authz.grant_support(&erin, &dash, &SupportGrant::new("ticket 1").for_agent("a7")).await.unwrap();
    let (_, _, answer) = evaluate(&h, ask(agent, "view", "dash")).await;
    assert_eq!(
        (answer["decision"].clone(), answer["context"]["reason"]["kind"].clone()),
        (json!(true), json!("support_window"))
    );

    let nobody = json!({"type": "anonymous", "id": ""});
    let (_, _, answer) = evaluate(&h, ask(nobody.clone(), "view", "site")).await;
    assert_eq!(answer["decision"], true);
    let (_, _, answer) = evaluate(&h, ask(nobody, "view", "dash")).await;
    assert_eq!(answer["context"]["reason"], json!({"kind": "no_access", "detail": "anonymous"}));
}

/// What the service does not know is a denial that says what it did not know.
#[tokio::test]
async fn unknown_subject_resource_and_action_are_denials_that_say_so() {
    let h = acme().await;
    let carol = github(&h.world, "carol");
    for (body, kind) in [
        (ask(json!({"type": "user", "id": "carol"}), "edit", "dash"), "unknown_subject_type"),
        (
            json!({"subject": carol, "action": {"name": "edit"}, "resource": {"type": "document", "id": "dash"}}),
            "unknown_resource_type",
        ),
        (ask(carol.clone(), "can_read", "dash"), "unknown_action"),
    ] {
        let (status, _, answer) = evaluate(&h, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"decision": false, "context": {"reason": {"kind": kind}}}));
    }
}

/// `context.consistency: "fresh"` asks GitHub again; anything but `cached` or `fresh` is a 400.
#[tokio::test]
async fn a_fresh_evaluation_asks_github_again() {
    let h = acme().await;
    let mut body = ask(github(&h.world, "carol"), "edit", "dash");
    evaluate(&h, body.clone()).await;
    let (_, _, cached) = evaluate(&h, body.clone()).await;
    assert_eq!(cached["context"]["source"], "cache");
    body["context"] = json!({"consistency": "fresh", "time": "2026-12-04T10:00:00Z"});
    let (_, _, fresh) = evaluate(&h, body.clone()).await;
    assert_eq!((fresh["decision"].clone(), fresh["context"]["source"].clone()), (json!(true), json!("github")));
    body["context"] = json!({"consistency": "eventual"});
    assert_eq!(evaluate(&h, body).await.0, StatusCode::BAD_REQUEST);
}

/// A missing or ill-typed required field is 400 (never 422), and the message names the field,
/// never the value sent.
#[tokio::test]
async fn a_missing_or_ill_typed_field_is_400_and_no_value_is_repeated() {
    let h = acme().await;
    let marker = "SENT-VALUE-7f3a";
    let good = ask(github(&h.world, "carol"), "edit", "dash");
    let mut cases = Vec::new();
    for (path, value) in [
        ("subject", json!(null)),
        ("subject", json!(marker)),
        ("action", json!([marker])),
        ("resource", json!(7)),
        ("context", json!(marker)),
    ] {
        let mut body = good.clone();
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(path);
            }
            v => body[path] = v,
        }
        cases.push((body, path));
    }
    for (field, value) in [("type", json!(1)), ("id", json!({"x": marker}))] {
        let mut body = good.clone();
        body["subject"][field] = value;
        cases.push((body, "subject"));
    }
    let mut body = good.clone();
    body["resource"].as_object_mut().unwrap().remove("id");
    cases.push((body, "resource.id"));
    let mut body = good.clone();
    body["action"] = json!({"name": false});
    cases.push((body, "action.name"));
    let mut body = good.clone();
    body["subject"]["id"] = json!(format!("{marker}"));
    cases.push((body, "subject.id"));
    let mut body = good.clone();
    body["subject"]["properties"] = json!({"login": [marker]});
    cases.push((body, "subject.properties.login"));
    let mut body = good.clone();
    body["resource"]["id"] = json!("x".repeat(ghauthz::http::MAX_ID + 1));
    cases.push((body, "resource.id"));
    for (body, field) in cases {
        let (status, _, answer) = evaluate(&h, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}")), "{message} names {field}");
        assert!(!answer.to_string().contains(marker), "{answer}");
        assert_eq!((answer["status"].clone(), answer["kind"].clone()), (json!(400), json!("bad_request")));
    }
}

/// Members the service does not know are ignored, at every level.
#[tokio::test]
async fn unknown_fields_are_ignored() {
    let h = acme().await;
    let body = json!({
        "subject": {"type": "github_user", "id": "3", "properties": {"department": "x"}, "extra": [1]},
        "action": {"name": "edit", "properties": {"method": "PUT"}},
        "resource": {"type": "app", "id": "dash", "properties": {}},
        "context": {"time": "1985-10-26T01:22-07:00"},
        "something_new": {"a": 1},
    });
    let (status, _, answer) = evaluate(&h, body).await;
    assert_eq!((status, answer["decision"].clone()), (StatusCode::OK, json!(true)));
}

/// `X-Request-ID` comes back on every answer, whatever its status.
#[tokio::test]
async fn the_request_id_is_echoed_on_every_answer() {
    let h = acme().await;
    let good = ask(github(&h.world, "carol"), "edit", "dash").to_string();
    let with_id = |mut r: Request<Body>| {
        r.headers_mut().insert("x-request-id", "req-42".parse().unwrap());
        r
    };
    let requests = [
        (post("/access/v1/evaluation", Some(EVALUATE), good.clone()), StatusCode::OK),
        (post("/access/v1/evaluation", Some(EVALUATE), "[]"), StatusCode::BAD_REQUEST),
        (post("/access/v1/evaluation", None, good.clone()), StatusCode::UNAUTHORIZED),
        (post("/access/v1/evaluation", Some(SEARCH), good.clone()), StatusCode::FORBIDDEN),
        (post("/access/v1/nothing", Some(EVALUATE), good.clone()), StatusCode::NOT_FOUND),
        (Request::get("/access/v1/evaluation").body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED),
        (Request::get("/healthz").body(Body::empty()).unwrap(), StatusCode::OK),
        (
            Request::post("/access/v1/evaluation")
                .header("authorization", format!("Bearer {EVALUATE}"))
                .header("content-type", "text/plain")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (req, expected) in requests {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let (status, headers, _) = send(&h.service, with_id(req)).await;
        assert_eq!(status, expected, "{method} {uri}");
        assert_eq!(headers.get("x-request-id").map(|v| v.to_str().unwrap()), Some("req-42"), "{method} {uri}");
    }
}

/// No key, or a key not held: 401 with the challenge; a key without the route's scope: 403.
#[tokio::test]
async fn callers_need_a_key_with_the_routes_scope() {
    let h = acme().await;
    let body = ask(github(&h.world, "carol"), "edit", "dash").to_string();
    for auth in [
        None,
        Some("Bearer not-a-key-0123456789abcdef0123456789".to_owned()),
        Some(format!("Basic {EVALUATE}")),
        Some("Bearer".to_owned()),
    ] {
        let mut req = post("/access/v1/evaluation", None, body.clone());
        if let Some(auth) = &auth {
            req.headers_mut().insert("authorization", auth.parse().unwrap());
        }
        let (status, headers, answer) = send(&h.service, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(headers.get("www-authenticate").unwrap(), r#"Bearer realm="ghauthz""#);
        assert!(!answer.to_string().contains(EVALUATE));
    }
    let (status, headers, _) = send(&h.service, post("/access/v1/evaluations", Some(SEARCH), body.clone())).await;
    assert_eq!((status, headers.get("www-authenticate")), (StatusCode::FORBIDDEN, None));
    for key in [EVALUATE, ALL] {
        assert_eq!(send(&h.service, post("/access/v1/evaluation", Some(key), body.clone())).await.0, StatusCode::OK);
    }
    // A rotation: the old keys let nobody in from the moment the new ones are set.
    h.service.set_keys(ApiKeys::parse(&format!("evaluate {SEARCH}")).unwrap());
    assert_eq!(
        send(&h.service, post("/access/v1/evaluation", Some(EVALUATE), body.clone())).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&h.service, post("/access/v1/evaluation", Some(SEARCH), body)).await.0, StatusCode::OK);
}

/// A method a route does not take is 405; bodies are JSON objects of at most 1 MiB, with the
/// media type `application/json` (a charset accepted).
#[tokio::test]
async fn methods_media_types_sizes_and_shapes_are_checked() {
    let h = acme().await;
    for (method, path) in [
        (Method::GET, "/access/v1/evaluation"),
        (Method::DELETE, "/access/v1/evaluations"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/webhooks/github"),
    ] {
        let req = Request::builder().method(method.clone()).uri(path).body(Body::empty()).unwrap();
        let (status, _, answer) = send(&h.service, req).await;
        assert_eq!(
            (status, answer["kind"].clone()),
            (StatusCode::METHOD_NOT_ALLOWED, json!("method_not_allowed")),
            "{method} {path}"
        );
    }
    let good = ask(github(&h.world, "carol"), "edit", "dash").to_string();
    let typed = |ct: &str| {
        Request::post("/access/v1/evaluation")
            .header("authorization", format!("Bearer {EVALUATE}"))
            .header("content-type", ct)
            .body(Body::from(good.clone()))
            .unwrap()
    };
    assert_eq!(send(&h.service, typed("application/json; charset=utf-8")).await.0, StatusCode::OK);
    assert_eq!(send(&h.service, typed("Application/JSON")).await.0, StatusCode::OK);
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        assert_eq!(send(&h.service, typed(ct)).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    let mut untyped = typed("x");
    untyped.headers_mut().remove("content-type");
    assert_eq!(send(&h.service, untyped).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut big = good.clone();
    big.insert_str(1, &format!("\"pad\": \"{}\",", "x".repeat(ghauthz::http::MAX_BODY)));
    let (status, _, answer) = send(&h.service, post("/access/v1/evaluation", Some(EVALUATE), big)).await;
    assert_eq!((status, answer["kind"].clone()), (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large")));
    let deep = format!("{{\"subject\": {}{}}}", "[".repeat(200), "]".repeat(200));
    for body in
        ["[]".to_owned(), "[{}]".to_owned(), "7".to_owned(), "\"x\"".to_owned(), "{".to_owned(), "".to_owned(), deep]
    {
        let (status, _, answer) = send(&h.service, post("/access/v1/evaluation", Some(EVALUATE), body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.40}");
        assert_eq!(answer["kind"], "bad_request");
    }
}

/// Batches: defaults from the top level, items overriding them, results in request order; a
/// bad item is a denial carrying its error, and the batch is still 200.
#[tokio::test]
async fn a_batch_answers_each_item_in_order() {
    let h = acme().await;
    let body = json!({
        "subject": github(&h.world, "carol"),
        "action": {"name": "edit"},
        "options": {"evaluations_semantic": "execute_all", "another_option": 1},
        "evaluations": [
            {"resource": {"type": "app", "id": "dash"}},
            {"resource": {"type": "app", "id": "notes"}},
            {"action": {"name": "deploy"}, "resource": {"type": "app", "id": "dash"}},
            {"subject": github(&h.world, "erin"), "action": {"name": "deploy"}, "resource": {"type": "app", "id": "dash"}},
            {"resource": {"type": "app"}},
            "not an object",
            {"resource": {"type": "app", "id": "site"}, "context": {"consistency": "sometimes"}},
        ],
    });
    let (status, _, answer) = send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let decisions: Vec<Value> =
        answer["evaluations"].as_array().unwrap().iter().map(|e| e["decision"].clone()).collect();
    assert_eq!(decisions, [true, false, false, true, false, false, false].map(Value::from));
    let e = &answer["evaluations"];
    assert_eq!(e[1]["context"]["reason"]["kind"], "no_access");
    for i in [4, 5, 6] {
        assert_eq!(e[i]["context"]["error"]["status"], 400, "{}", e[i]);
    }
    assert!(answer.get("decision").is_none(), "no top-level decision beside `evaluations`");
}

#[tokio::test]
async fn the_short_circuit_semantics_stop_where_the_spec_says() {
    let h = acme().await;
    let batch = |semantic: &str| {
        let items = ["dash", "notes", "site", "analytics"].map(|a| json!({"resource": {"type": "app", "id": a}}));
        json!({
            "subject": github(&h.world, "carol"),
            "action": {"name": "edit"},
            "options": {"evaluations_semantic": semantic},
            "evaluations": items,
        })
        .to_string()
    };
    let decisions = |answer: &Value| -> Vec<bool> {
        answer["evaluations"].as_array().unwrap().iter().map(|e| e["decision"].as_bool().unwrap()).collect()
    };
    let run = |s: &'static str| {
        let body = batch(s);
        let service = h.service.clone();
        async move { send(&service, post("/access/v1/evaluations", Some(EVALUATE), body)).await }
    };
    let (_, _, all) = run("execute_all").await;
    assert_eq!(decisions(&all), [true, false, true, true]);
    let (_, _, deny) = run("deny_on_first_deny").await;
    assert_eq!(decisions(&deny), [true, false], "stops at the first denial");
    let (_, _, permit) = run("permit_on_first_permit").await;
    assert_eq!(decisions(&permit), [true], "stops at the first permit");
    let (status, _, _) = run("first_come").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // No items: the top level is one evaluation.
    let single = json!({"subject": github(&h.world, "carol"), "action": {"name": "edit"}, "resource": {"type": "app", "id": "dash"}, "evaluations": []});
    let (_, _, answer) = send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), single.to_string())).await;
    assert_eq!((answer["decision"].clone(), answer.get("evaluations")), (json!(true), None));
    let not_array = json!({"evaluations": {"resource": {}}});
    assert_eq!(
        send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), not_array.to_string())).await.0,
        StatusCode::BAD_REQUEST
    );
    let too_many = json!({"subject": github(&h.world, "carol"), "action": {"name": "view"}, "evaluations": vec![json!({"resource": {"type": "app", "id": "dash"}}); ghauthz::http::MAX_BATCH + 1]});
    assert_eq!(
        send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), too_many.to_string())).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// A batch's items share GitHub's answers: every user of the world on one repository costs one
/// roster and one look at the repository (and one account lookup a user), asked concurrently.
#[tokio::test]
async fn a_batch_shares_its_github_lookups() {
    let h = acme().await;
    let items: Vec<Value> = h
        .world
        .users()
        .iter()
        .map(|u| json!({"subject": {"type": "github_user", "id": u.id.0.to_string(), "properties": {"login": u.login}}, "resource": {"type": "app", "id": "dash"}}))
        .collect();
    let body = json!({"action": {"name": "edit"}, "evaluations": items});
    let (status, _, answer) = send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["evaluations"].as_array().unwrap().len(), h.world.users().len());
    let counts = h.mock.request_counts();
    assert_eq!(h.mock.requests("/repos/acme/dashboard/collaborators"), 1, "{counts:?}");
    assert_eq!(h.mock.requests("/repos/acme/dashboard"), 1, "{counts:?}");
    assert_eq!(counts.len(), 2 + h.world.users().len(), "nothing else: {counts:?}");
}

/// Could not decide: a single evaluation is 503 with `Retry-After`; a batch item is a denial
/// carrying the error. Never an allow.
#[tokio::test]
async fn could_not_decide_is_an_error_never_an_allow() {
    let h = over("faults.toml", MockGithub::github_config).await;
    let user = h.world.users().iter().find(|u| u.login != "nobody").unwrap().clone();
    let subject = json!({"type": "github_user", "id": user.id.0.to_string(), "properties": {"login": user.login}});
    let (status, headers, answer) = evaluate(&h, ask(subject.clone(), "view", "busy")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(headers.get("retry-after").unwrap(), "120");
    assert!(answer.get("decision").is_none());
    let body = json!({"subject": subject, "action": {"name": "view"}, "evaluations": [{"resource": {"type": "app", "id": "busy"}}]});
    let (status, _, answer) = send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let item = &answer["evaluations"][0];
    assert_eq!((item["decision"].clone(), item["context"]["error"]["status"].clone()), (json!(false), json!(503)));
    assert_eq!(item["context"]["error"]["retry_after"], 120);
}

/// The metadata document names each endpoint under the published identifier.
#[tokio::test]
async fn the_metadata_document_names_the_endpoints() {
    let h = acme().await;
    let (status, headers, doc) =
        send(&h.service, Request::get("/.well-known/authzen-configuration").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("application/json"));
    assert_eq!(doc["policy_decision_point"], "https://pdp.example");
    assert_eq!(doc["access_evaluation_endpoint"], "https://pdp.example/access/v1/evaluation");
    assert_eq!(doc["access_evaluations_endpoint"], "https://pdp.example/access/v1/evaluations");
}

/// GitHub's deliveries: signed ones are applied, anything else refused before any work.
#[tokio::test]
async fn webhook_deliveries_are_verified_then_applied() {
    let h = acme().await;
    let body = br#"{"action":"edited","member":{"id":3},"repository":{"id":101}}"#;
    let delivery = |signature: String, id: &str, body: Vec<u8>| {
        Request::post("/webhooks/github")
            .header("x-github-event", "member")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let signed = common::webhook_signature(SECRET, body);
    let (status, _, answer) = send(&h.service, delivery(signed.clone(), "d-1", body.to_vec())).await;
    assert_eq!((status, answer["applied"].clone()), (StatusCode::OK, json!(1)));
    let (_, _, again) = send(&h.service, delivery(signed, "d-1", body.to_vec())).await;
    assert_eq!(again["duplicate"], true);
    let forged = common::webhook_signature("guessed", body);
    let (status, headers, answer) = send(&h.service, delivery(forged, "d-2", body.to_vec())).await;
    assert_eq!((status, answer["kind"].clone()), (StatusCode::UNAUTHORIZED, json!("bad_signature")));
    assert!(headers.get("www-authenticate").is_none());
    let unsigned =
        Request::post("/webhooks/github").header("content-type", "application/json").body(Body::from("{}")).unwrap();
    assert_eq!(send(&h.service, unsigned).await.0, StatusCode::UNAUTHORIZED, "the signature is checked first");
    let (status, _, answer) =
        send(&h.service, delivery(common::webhook_signature(SECRET, body), "not a delivery id!", body.to_vec())).await;
    assert_eq!((status, answer["kind"].clone()), (StatusCode::BAD_REQUEST, json!("bad_request")));
    let huge = vec![b' '; ghauthz::MAX_WEBHOOK_BODY + 1];
    let (status, _, _) = send(&h.service, delivery(common::webhook_signature(SECRET, &huge), "d-3", huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Health is the process; readiness is the store, the feed and GitHub's credentials.
#[tokio::test]
async fn readiness_names_what_fails() {
    let h = acme().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(send(&h.service, get("/healthz")).await.0, StatusCode::OK);
    let (status, _, answer) = send(&h.service, get("/readyz")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"ready": true})));

    let refused = over("acme.toml", |m| {
        GithubConfig::new(GithubAuth::Token(GithubToken::new("not-the-token".into()))).with_api_base(m.base_url())
    })
    .await;
    assert_eq!(send(&refused.service, get("/readyz")).await.0, StatusCode::OK, "nothing refused yet");
    let (status, _, _) = evaluate(&refused, ask(github(&refused.world, "carol"), "edit", "dash")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, answer) = send(&refused.service, get("/readyz")).await;
    assert_eq!(
        (status, answer),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false, "failing": ["github_credentials"]}))
    );
    drop(h.clock);
}

/// Every decision answered validates against the AuthZEN 1.0 response schema, and each of the
/// spec's own example requests is taken (its subject and resource types are not ours: a denial
/// naming the subject type).
#[tokio::test]
async fn answers_keep_to_the_authzen_schemas_and_the_specs_examples_are_taken() {
    let h = acme().await;
    let schema = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(common::fixture_path(&format!("authzen/schemas/{name}"))).unwrap(),
        )
        .unwrap()
    };
    let response = jsonschema::validator_for(&schema("evaluation-response.schema.json")).unwrap();
    let request = jsonschema::validator_for(&schema("evaluation-request.schema.json")).unwrap();
    let examples: Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture_path("authzen/spec-examples.json")).unwrap())
            .unwrap();
    for example in examples["evaluation"].as_array().unwrap() {
        assert!(request.is_valid(example), "the spec's example is a request: {example}");
        let (status, _, answer) = evaluate(&h, example.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(response.is_valid(&answer), "{answer}");
        assert_eq!(answer["context"]["reason"]["kind"], "unknown_subject_type");
    }
    for example in examples["evaluations"].as_array().unwrap() {
        let (status, _, answer) =
            send(&h.service, post("/access/v1/evaluations", Some(EVALUATE), example.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{example}");
        for item in answer["evaluations"].as_array().unwrap() {
            assert!(response.is_valid(item), "{item}");
            assert_eq!(item["decision"], false);
        }
    }
    for login in ["carol", "dave", "olga"] {
        let ours = ask(github(&h.world, login), "edit", "dash");
        assert!(request.is_valid(&ours));
        let (_, _, answer) = evaluate(&h, ours).await;
        assert!(response.is_valid(&answer), "{answer}");
    }
}

/// Over a socket, with a real HTTP client on one kept-alive connection.
#[tokio::test]
async fn over_a_socket_with_a_real_client() {
    use http_body_util::BodyExt as _;
    let h = acme().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = h.service.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for (i, login) in ["carol", "dave", "erin"].iter().enumerate() {
        let body = ask(github(&h.world, login), "edit", "dash").to_string();
        let req = Request::post(format!("http://{addr}/access/v1/evaluation"))
            .header("authorization", format!("Bearer {ALL}"))
            .header("content-type", "application/json")
            .header("x-request-id", format!("r{i}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let response = client.request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().get("x-request-id").unwrap(), &format!("r{i}"));
        let answer: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(answer["decision"], *login != "dave");
    }
    server.abort();
}

async fn search(h: &Http, kind: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, answer) =
        send(&h.service, post(&format!("/access/v1/search/{kind}"), Some(SEARCH), body.to_string())).await;
    (status, answer)
}

fn ids(answer: &Value) -> Vec<String> {
    answer["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

/// Resource search: the apps a subject may act on are the ones `apps_for` lists, each of which
/// an evaluation allows; a subject that names nobody finds nothing.
#[tokio::test]
async fn a_resource_search_lists_what_each_evaluation_allows() {
    let h = acme().await;
    for user in h.world.users() {
        for cap in Capability::ALL {
            let body = json!({"subject": github(&h.world, &user.login), "action": {"name": cap.as_str()}, "resource": {"type": "app"}});
            let (status, answer) = search(&h, "resource", body).await;
            assert_eq!(status, StatusCode::OK);
            let mut expected = Vec::new();
            for app in ["analytics", "dash", "legacy", "notes", "site"] {
                if evaluate(&h, ask(github(&h.world, &user.login), cap.as_str(), app)).await.2["decision"] == true {
                    expected.push(app.to_owned());
                }
            }
            assert_eq!(ids(&answer), expected, "{} {cap:?}", user.login);
            assert_eq!(answer["page"], json!({"next_token": "", "count": expected.len(), "total": expected.len()}));
        }
    }
    let mut wrong = github(&h.world, "erin");
    wrong["properties"] = json!({"login": "carol"});
    let (_, answer) =
        search(&h, "resource", json!({"subject": wrong, "action": {"name": "view"}, "resource": {"type": "app"}}))
            .await;
    assert_eq!(ids(&answer), Vec::<String>::new(), "a login of another account names nobody");
    let (_, answer) = search(
        &h,
        "resource",
        json!({"subject": {"type": "anonymous", "id": ""}, "action": {"name": "view"}, "resource": {"type": "app"}}),
    )
    .await;
    assert_eq!(ids(&answer), ["site"], "the public app");
    let (_, answer) = search(
        &h,
        "resource",
        json!({"subject": {"type": "user", "id": "x"}, "action": {"name": "view"}, "resource": {"type": "app"}}),
    )
    .await;
    assert_eq!((ids(&answer).len(), answer["context"]["reason"]["kind"].clone()), (0, json!("unknown_subject_type")));
}

/// Pages: `page.limit` results at a time, an opaque token to the next, `""` at the end; a token
/// is refused for another request.
#[tokio::test]
async fn search_results_come_in_pages() {
    let h = acme().await;
    let mut body = json!({"subject": github(&h.world, "olga"), "action": {"name": "view"}, "resource": {"type": "app"}, "page": {"limit": 2}});
    let (_, all) = search(
        &h,
        "resource",
        json!({"subject": github(&h.world, "olga"), "action": {"name": "view"}, "resource": {"type": "app"}}),
    )
    .await;
    let every = ids(&all);
    assert!(every.len() >= 3, "{every:?}");
    let mut seen = Vec::new();
    loop {
        let (status, answer) = search(&h, "resource", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer["page"]["count"].as_u64().unwrap() <= 2);
        assert_eq!(answer["page"]["total"], every.len());
        seen.extend(ids(&answer));
        let next = answer["page"]["next_token"].as_str().unwrap().to_owned();
        if next.is_empty() {
            break;
        }
        body["page"]["token"] = json!(next);
        let mut changed = body.clone();
        changed["action"]["name"] = json!("edit");
        assert_eq!(search(&h, "resource", changed).await.0, StatusCode::BAD_REQUEST, "a token is for its own request");
    }
    assert_eq!(seen, every);
    body["page"]["token"] = json!("bm90IG91cnM");
    assert_eq!(search(&h, "resource", body.clone()).await.0, StatusCode::BAD_REQUEST);
    body["page"] = json!({"limit": 5000, "properties": {"sort": "id"}});
    let (_, answer) = search(&h, "resource", body).await;
    assert_eq!(ids(&answer), every, "a limit over 1,000 is 1,000");
}

/// Action search: the actions each evaluation allows, in the order view, edit, deploy, delete.
#[tokio::test]
async fn an_action_search_lists_what_each_evaluation_allows() {
    let h = acme().await;
    for login in ["erin", "bob", "carol", "dave", "olga"] {
        for app in ["dash", "site", "analytics"] {
            let body = json!({"subject": github(&h.world, login), "resource": {"type": "app", "id": app}});
            let (status, answer) = search(&h, "action", body).await;
            assert_eq!(status, StatusCode::OK);
            let names: Vec<String> =
                answer["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
            let mut expected = Vec::new();
            for cap in Capability::ALL {
                if evaluate(&h, ask(github(&h.world, login), cap.as_str(), app)).await.2["decision"] == true {
                    expected.push(cap.as_str().to_owned());
                }
            }
            assert_eq!(names, expected, "{login} {app}");
        }
    }
}

/// Subject search: the repository's roster decided for the action, the invited viewers for
/// `view` of a private app, and `anyone` where nobody signed in may.
#[tokio::test]
async fn a_subject_search_lists_who_each_evaluation_allows() {
    let h = acme().await;
    for cap in Capability::ALL {
        let body = json!({"subject": {"type": "github_user"}, "action": {"name": cap.as_str()}, "resource": {"type": "app", "id": "dash"}});
        let (status, answer) = search(&h, "subject", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let users: Vec<String> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "github_user")
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        let mut expected = Vec::new();
        for user in h.world.users() {
            if evaluate(&h, ask(github(&h.world, &user.login), cap.as_str(), "dash")).await.2["decision"] == true {
                expected.push(user.id.0.to_string());
            }
        }
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(sorted(users), sorted(expected), "{cap:?}");
        let viewers: Vec<&Value> =
            answer["results"].as_array().unwrap().iter().filter(|r| r["type"] == "viewer_email").collect();
        assert_eq!(viewers.is_empty(), cap != Capability::View, "{answer}");
        assert_eq!(answer["context"]["anyone"], false);
    }
    let public = json!({"subject": {"type": "github_user"}, "action": {"name": "view"}, "resource": {"type": "app", "id": "site"}});
    let (_, answer) = search(&h, "subject", public).await;
    assert_eq!(answer["context"]["anyone"], true);
    let nowhere = json!({"subject": {"type": "github_user"}, "action": {"name": "edit"}, "resource": {"type": "app", "id": "nope"}});
    assert_eq!(ids(&search(&h, "subject", nowhere).await.1), Vec::<String>::new());
}

/// Where GitHub does not list who holds a role (rosters off here), a subject search is an
/// error, never a partial list.
#[tokio::test]
async fn a_subject_search_without_a_roster_is_an_error_not_a_partial_list() {
    let h = over("acme.toml", |m| m.github_config()).await;
    let per_user = {
        let world = common::fixture("acme.toml");
        let clock = ManualClock::new(world.now().unwrap());
        let store = Arc::new(MemoryStore::new());
        store.seed_once(&world.app_records(), clock.now()).await.unwrap();
        let authz = Authorizer::builder(h.mock.github_config())
            .cache(ghauthz::CacheConfig::default().with_rosters(false))
            .clock(Arc::new(clock))
            .store(store)
            .build()
            .unwrap();
        Service::new(authz, keys(), "https://pdp.example".parse().unwrap())
    };
    let body = json!({"subject": {"type": "github_user"}, "action": {"name": "edit"}, "resource": {"type": "app", "id": "dash"}});
    let (status, _, answer) = send(&per_user, post("/access/v1/search/subject", Some(SEARCH), body.to_string())).await;
    assert_eq!((status, answer["kind"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("no_roster")));
    assert!(answer.get("results").is_none());
}

/// Searches take a key with the `search` scope.
#[tokio::test]
async fn searches_need_the_search_scope() {
    let h = acme().await;
    let body = json!({"subject": github(&h.world, "carol"), "action": {"name": "view"}, "resource": {"type": "app"}})
        .to_string();
    for (key, status) in [(EVALUATE, StatusCode::FORBIDDEN), (SEARCH, StatusCode::OK), (ALL, StatusCode::OK)] {
        assert_eq!(send(&h.service, post("/access/v1/search/resource", Some(key), body.clone())).await.0, status);
    }
}

/// An action search gathers the facts once: it asks GitHub what one `delete` evaluation asks.
#[tokio::test]
async fn an_action_search_asks_github_what_one_check_asks() {
    let one = acme().await;
    evaluate(&one, ask(github(&one.world, "erin"), "delete", "dash")).await;
    let h = acme().await;
    let body = json!({"subject": github(&h.world, "erin"), "resource": {"type": "app", "id": "dash"}});
    let (_, answer) = search(&h, "action", body).await;
    assert_eq!(answer["results"].as_array().unwrap().len(), 4);
    assert_eq!(h.mock.request_counts(), one.mock.request_counts());
}

/// A store that no longer answers, and the change feed it no longer carries, make the replica
/// not ready, each named.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn readiness_fails_with_the_store_and_its_feed() {
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ghauthz::store::SqliteStore::open(dir.path().join("db")).await.unwrap());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = Authorizer::builder(mock.github_config()).clock(Arc::new(clock)).store(store.clone()).build().unwrap();
    common::wait_until("the feed is heard", std::time::Duration::from_secs(5), || authz.stats().feed_listening).await;
    let service = Service::new(authz.clone(), keys(), "https://pdp.example".parse().unwrap());
    let readyz = || async { send(&service, Request::get("/readyz").body(Body::empty()).unwrap()).await };
    assert_eq!(readyz().await.0, StatusCode::OK);
    store.close().await;
    common::wait_until("the feed is lost", std::time::Duration::from_secs(5), || !authz.stats().feed_listening).await;
    let (status, _, answer) = readyz().await;
    assert_eq!(
        (status, answer),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false, "failing": ["store", "feed"]}))
    );
}

/// A body that never finishes is answered 408 once the request timeout passes, not held open.
#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_408() {
    let h = acme().await;
    let service = h.service.clone().with_request_timeout(std::time::Duration::from_millis(200));
    let pending = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let mut req = post("/access/v1/evaluation", Some(EVALUATE), Body::from_stream(pending));
    req.headers_mut().insert("x-request-id", "slow-1".parse().unwrap());
    let started = std::time::Instant::now();
    let (status, headers, answer) = send(&service, req).await;
    assert_eq!((status, answer["kind"].clone()), (StatusCode::REQUEST_TIMEOUT, json!("timeout")));
    assert_eq!(headers.get("x-request-id").unwrap(), "slow-1");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
