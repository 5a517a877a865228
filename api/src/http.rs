//! The HTTP/JSON transport: one router and thin handlers (the request bodies are in
//! `http/body.rs`). Every answer, errors included, is JSON (but the dashboard's page and files,
//! [`crate::dashboard`]); every error uses the envelope of [`crate::error`].

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::json;

use crate::auth::{Credentials, Principal};
use crate::error::ApiError;
use crate::list;
use crate::metrics::{RequestMethod, Transport};
use crate::render;
use crate::route::{Route, no_route};
use crate::service::{BatchCancel, Service, Submit};
use crate::view::{ListView, OperationView};

mod body;

use body::ListQuery;
pub(crate) use body::{
    BatchCancelBody, BatchSubmitBody, NameBody, SubmitBody, WaitBody, check_body_name,
    parse_timeout, read_json,
};
use lro_common::status::Code;
use lro_common::trace::TraceContext;

/// The OpenAPI 3.1 document of the REST surface, served at `GET /v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/v1/{*path}", any(dispatch))
        .route("/", any(crate::dashboard::page))
        .route("/ui/{*file}", any(crate::dashboard::asset))
        .fallback(fallback)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .with_state(service)
}

async fn dispatch(
    State(svc): State<Service>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let raw = uri.path().strip_prefix("/v1/").unwrap_or_default();
    let (label, result) = match Route::parse(&method, raw) {
        Ok(route) => {
            let label = request_method(&route);
            (
                label,
                handle(&svc, route, query.as_deref(), &headers, body).await,
            )
        }
        Err(e) => (RequestMethod::Unknown, Err(e)),
    };
    let code = result.as_ref().map_or_else(|e| e.code, |_| Code::Ok);
    svc.metrics
        .request(Transport::Rest, label, code, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The route's `method` label in `lro_request_duration_seconds`.
fn request_method(route: &Route) -> RequestMethod {
    match route {
        Route::Submit(_) => RequestMethod::Submit,
        Route::BatchSubmit(_) => RequestMethod::BatchSubmit,
        Route::Get(_) => RequestMethod::Get,
        Route::List(_) => RequestMethod::List,
        Route::Delete(_) => RequestMethod::Delete,
        Route::Cancel(_) => RequestMethod::Cancel,
        Route::Wait(_) => RequestMethod::Wait,
        Route::Kinds => RequestMethod::Kinds,
        Route::OpenApi => RequestMethod::OpenApi,
        Route::BatchCancel(_) => RequestMethod::BatchCancel,
    }
}

async fn handle(
    svc: &Service,
    route: Route,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Authenticated before the body is read: a stranger's request costs no parsing.
    let who = match route.method() {
        Some((method, target)) => {
            let key = api_key(headers, query);
            let creds = Credentials {
                authorization: headers
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes),
                api_key: key.as_deref(),
            };
            svc.caller(creds, method, &target)?
        }
        // The document of the surface is public, like a discovery document.
        None => Principal::anonymous(),
    };
    let who = &who;
    let answer = match route {
        Route::Submit(parent) => {
            let b: SubmitBody = read_json(body, true).await?.unwrap_or_default();
            let op = svc
                .submit(
                    who,
                    Submit {
                        job: b.into_job(parent)?,
                        trace: trace(headers),
                    },
                )
                .await?;
            ok(&OperationView::of(&op))
        }
        Route::BatchSubmit(parent) => {
            let b: BatchSubmitBody = read_json(body, true).await?.unwrap_or_default();
            let req = b.into_batch(parent, trace(headers))?;
            let ops = svc.batch_submit(who, req).await?;
            // A `BatchSubmitJobsResponse`: the operations, as a page with no next one.
            ok(&ListView::of(&ops, None))
        }
        Route::Get(name) => ok(&OperationView::of(&svc.get(who, &name).await?)),
        Route::OpenApi => {
            let mut resp = OPENAPI_JSON.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(resp);
        }
        Route::List(parent) => {
            let q = ListQuery::parse(query);
            let size = list::page_size(q.page_size.as_deref())?;
            let filter = q.filter.unwrap_or_default();
            let (ops, next) = svc
                .list(who, &parent, &filter, size, q.page_token.as_deref())
                .await?;
            ok(&ListView::of(&ops, next.as_deref()))
        }
        Route::Delete(name) => {
            svc.delete(who, &name).await?;
            ok(&json!({}))
        }
        Route::Cancel(name) => {
            let b: NameBody = read_json(body, false).await?.unwrap_or_default();
            check_body_name(b.name.as_deref(), name.as_str())?;
            svc.cancel(who, &name, trace(headers)).await?;
            ok(&json!({}))
        }
        Route::Wait(name) => {
            let b: WaitBody = read_json(body, false).await?.unwrap_or_default();
            check_body_name(b.name.as_deref(), name.as_str())?;
            let timeout = parse_timeout(b.timeout.as_deref())?;
            ok(&OperationView::of(&svc.wait(who, &name, timeout).await?))
        }
        Route::BatchCancel(parent) => {
            let b: BatchCancelBody = read_json(body, true).await?.unwrap_or_default();
            let req = BatchCancel {
                parent,
                filter: b.filter,
                request_id: b.request_id,
            };
            ok(&OperationView::of(&svc.batch_cancel(who, req).await?))
        }
        Route::Kinds => ok(&render::kinds(&svc.kinds(who).await?)),
    };
    Ok(answer)
}

/// A 200 answer with this JSON body.
fn ok(body: &impl serde::Serialize) -> Response {
    render::json_response(200, body)
}

/// The caller's W3C trace context (`traceparent`, `tracestate`); absent or invalid is `None`.
fn trace(headers: &HeaderMap) -> Option<TraceContext> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::from_headers(text("traceparent"), text("tracestate"))
}

/// The API key of a request: `x-goog-api-key`, or else the `key` query parameter.
fn api_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("x-goog-api-key") {
        return Some(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
}

async fn fallback(method: Method, uri: Uri) -> Response {
    no_route(&method, uri.path()).into_response()
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::new(
        lro_common::status::Code::Internal,
        "INTERNAL",
        "internal error",
    )
    .into_response()
}

/// How long a `:wait` may last at most unless configured otherwise.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);
