//! The OpenAPI document served by a running gateway holds to DESIGN.md's API v1 table: every
//! call is there with its method, it parses as OpenAPI 3, authenticated calls name the bearer
//! scheme and document their 401, public calls do not, and every error reply is the
//! `ErrorBody` schema.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;

use common::TestGateway;
use serde_json::Value;

/// DESIGN.md's API v1 table (the contract), plus the documented extensions.
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/accounts"),
    ("post", "/v1/sessions"),
    ("delete", "/v1/sessions/current"),
    ("get", "/v1/me"),
    ("get", "/v1/numbers/available"),
    ("post", "/v1/numbers"),
    ("delete", "/v1/numbers/{number}"),
    ("post", "/v1/identities"),
    ("post", "/v1/identities/{id}/verify"),
    ("post", "/v1/messages"),
    ("get", "/v1/conversations"),
    ("get", "/v1/conversations/{id}/messages"),
    ("post", "/v1/conversations/{id}/read"),
    ("delete", "/v1/messages/{id}"),
    ("get", "/v1/lookup"),
    ("put", "/v1/contacts/{address}"),
    ("get", "/v1/sync"),
    ("get", "/v1/stream"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
    // Extensions DESIGN.md names outside the table.
    ("post", "/v1/simulator/inbound"),
    ("get", "/v1/simulator/outbox"),
    ("delete", "/v1/devices/{id}"),
    // The second set: accounts for real use.
    ("post", "/v1/accounts/me/password"),
    ("post", "/v1/password-resets"),
    ("post", "/v1/password-resets/confirm"),
    ("delete", "/v1/accounts/me"),
    ("get", "/v1/search"),
    ("delete", "/v1/contacts/{address}"),
    ("delete", "/v1/identities/{id}"),
];

/// Calls that take no device token.
const PUBLIC: &[(&str, &str)] = &[
    ("post", "/v1/accounts"),
    ("post", "/v1/sessions"),
    ("post", "/v1/password-resets"),
    ("post", "/v1/password-resets/confirm"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
];

/// Carrier webhooks live under this prefix: carriers authenticate with their own signatures
/// (e.g. `X-Twilio-Signature`), never with a device token.
const WEBHOOK_PREFIX: &str = "/v1/carriers/";

/// Query parameters the contract names.
const QUERY_PARAMETERS: &[(&str, &str, &[&str])] = &[
    (
        "get",
        "/v1/numbers/available",
        &["country", "area_code", "limit"],
    ),
    ("get", "/v1/conversations", &["limit", "before"]),
    (
        "get",
        "/v1/conversations/{id}/messages",
        &["limit", "before"],
    ),
    ("get", "/v1/lookup", &["address"]),
    ("get", "/v1/sync", &["after", "limit"]),
    ("get", "/v1/simulator/outbox", &["to"]),
    ("get", "/v1/search", &["q", "limit", "before"]),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn document() -> Value {
    let gw = TestGateway::start().await;
    let response = gw
        .http
        .get(format!("{}/v1/openapi.json", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json")));
    let doc: Value = response.json().await.unwrap();
    gw.stop().await;
    doc
}

/// Every `(method, path, operation)` in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                out.push(((*method).to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_openapi_3() {
    let doc = document().await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    // It reads back as an OpenAPI document, not just as JSON.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("an OpenAPI 3 document");
    assert!(!parsed.paths.paths.is_empty());

    // Every `$ref` points at a schema that exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = BTreeSet::new();
    collect_refs(&doc, &mut refs);
    for reference in &refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(schemas.contains_key(name), "dangling $ref {reference}");
    }
    // Operation ids are unique (client generators need them).
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
    }
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.insert(s.to_owned());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_call_of_the_contract_is_documented() {
    let doc = document().await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let missing: Vec<String> = CONTRACT
        .iter()
        .filter(|(m, p)| !documented.contains(&((*m).to_owned(), (*p).to_owned())))
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in /v1/openapi.json: {missing:?}\ndocumented: {documented:?}"
    );
}

#[tokio::test]
async fn security_is_declared_where_a_token_is_needed() {
    let doc = document().await;
    let scheme = &doc["components"]["securitySchemes"]["device_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for (method, path, op) in operations(&doc) {
        if path.starts_with(WEBHOOK_PREFIX) {
            assert!(
                op["security"].as_array().is_none_or(|r| r.is_empty()),
                "{method} {path} is a carrier webhook but documents a device token"
            );
            continue;
        }
        let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == path);
        let secured = op["security"].as_array().is_some_and(|reqs| {
            reqs.iter().any(|r| {
                r.as_object()
                    .is_some_and(|r| r.contains_key("device_token"))
            })
        });
        if public {
            assert!(!secured, "{method} {path} is public but documents a token");
        } else {
            assert!(secured, "{method} {path} needs a token but does not say so");
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} needs a token but documents no 401"
            );
        }
    }
}

/// Fails with every problem listed at once, so one run shows all that needs fixing.
fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[tokio::test]
async fn errors_are_documented_as_error_bodies() {
    let doc = document().await;
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        // A WebSocket's success is 101 Switching Protocols.
        if !responses.keys().any(|s| s.starts_with('2') || s == "101") {
            problems.push(format!("{method} {path} documents no success"));
        }
        if path != "/v1/openapi.json"
            && !responses
                .keys()
                .any(|s| s.starts_with('4') || s.starts_with('5'))
        {
            problems.push(format!("{method} {path} documents no error reply"));
        }
        for (status, response) in &responses {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            if schema != "#/components/schemas/ErrorBody" {
                problems.push(format!(
                    "{method} {path} {status} is not an ErrorBody: {response}"
                ));
            }
            if response["description"]
                .as_str()
                .is_none_or(|d| d.is_empty())
            {
                problems.push(format!(
                    "{method} {path} {status} has no description (say which codes it carries)"
                ));
            }
        }
    }
    assert_no_problems("error replies", problems);
}

#[tokio::test]
async fn parameters_are_where_the_contract_puts_them() {
    let doc = document().await;
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for param in &params {
            let name = param["name"].as_str().unwrap_or_default();
            match param["in"].as_str().unwrap_or_default() {
                // OpenAPI: every path parameter appears in the path template, and is required.
                "path" => {
                    if !path.contains(&format!("{{{name}}}")) {
                        problems.push(format!(
                            "{method} {path}: path parameter {name:?} is not in the path (a query parameter documented as `in: path`? add #[into_params(parameter_in = Query)])"
                        ));
                    } else if param["required"] != true {
                        problems.push(format!(
                            "{method} {path}: path parameter {name:?} is not required"
                        ));
                    }
                }
                "query" | "header" | "cookie" => {}
                other => problems.push(format!("{method} {path}: parameter {name} in {other:?}")),
            }
        }
        // Every template variable is documented.
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if !params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path")
                {
                    problems.push(format!("{method} {path}: {{{name}}} is not documented"));
                }
            }
        }
    }
    for (method, path, names) in QUERY_PARAMETERS {
        let op = &doc["paths"][*path][*method];
        if op.is_null() {
            continue; // reported by every_call_of_the_contract_is_documented
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in *names {
            if !params
                .iter()
                .any(|p| p["name"] == *name && p["in"] == "query")
            {
                problems.push(format!(
                    "{method} {path}: query parameter {name:?} is not documented"
                ));
            }
        }
    }
    assert_no_problems("parameters", problems);
}
