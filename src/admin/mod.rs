//! The admin HTTP server started by `syncd run`: health, readiness, the JSON API (the same
//! data and shapes as the CLI's `--json`), and a server-rendered page for admins.
//!
//! Every route but `/healthz` needs a token: the operator token (all tenants; from a file or
//! an environment variable, or created with `syncd tokens create`) or a tenant token, which
//! sees and acts on its own tenant only — anything of another tenant answers 404, exactly as
//! if it did not exist. Each principal gets a rolling window of requests (`[admin]
//! rate_limit` per `rate_window`), announced in `X-RateLimit-*` headers on every response.

pub mod page;
pub mod ratelimit;
pub mod tokens;
mod webhooks;

use crate::jobs::JobContext;
use crate::store::issues::IssueFilter;
use axum::extract::ConnectInfo;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ratelimit::ApiLimiter;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokens::{Principal, TokenCheck};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What every handler can reach.
#[derive(Clone)]
pub struct AdminState {
    /// The daemon's job context (store, queue, catalog, config).
    pub ctx: Arc<JobContext>,
    /// Token verification.
    pub tokens: Arc<TokenCheck>,
    /// Per-principal request budget.
    pub limiter: ApiLimiter,
    /// Failed logins and refused tokens per client address (`[admin] auth_failures`).
    pub failures: ApiLimiter,
    /// The Prometheus recorder's handle, rendered at `/metrics`.
    pub metrics: crate::metrics::Handle,
}

/// An error with a stable JSON shape: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 404 in the shape every route uses (also for another tenant's resources).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    fn internal(e: anyhow::Error) -> Self {
        warn!(error = %format!("{e:#}"), "admin request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "syncd could not answer; see its log".into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.message)
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Builds the router.
pub fn router(state: AdminState) -> Router {
    let config = &state.ctx.config.admin;
    let api = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/issues", get(api_issues))
        .route("/api/status", get(api_status))
        .route("/api/refetch", post(api_refetch))
        .route("/api/test-connection", post(api_test_connection))
        .route("/api/deliveries", get(webhooks::deliveries))
        .route("/api/redeliver", post(webhooks::redeliver))
        .route("/api/replay", post(webhooks::replay))
        .route("/api/endpoint/enable", post(webhooks::enable))
        .route_layer(middleware::from_fn_with_state(state.clone(), bearer_auth));
    let ui = Router::new()
        .route("/", get(page::index))
        .route("/login", post(page::login))
        .route("/logout", post(page::logout))
        .route("/ui/refetch", post(page::refetch))
        .route("/ui/test-connection", post(page::test_connection));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(ui)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn(secure_headers))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .with_state(state)
}

/// Binds `[admin] bind` (an error names the address) and serves until `shutdown`.
pub async fn serve(state: AdminState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bind = state.ctx.config.admin.bind.clone();
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| anyhow::anyhow!("[admin] bind {bind}: cannot listen ({e})"))?;
    let addr = listener.local_addr()?;
    info!(%addr, "admin server listening");
    if !state.tokens.has_operator_token() {
        info!(
            "no operator token configured ([admin] token_file / token_env); tokens from `syncd tokens create` still work"
        );
    }
    let app = router(state);
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            warn!(error = %e, "admin server stopped");
        }
    });
    Ok(())
}

/// Authenticates the bearer token, applies the principal's rate limit and stamps the
/// `X-RateLimit-*` headers on the answer.
async fn bearer_auth(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    let client = client_address(&req);
    if too_many_failures(&state, &client).await {
        return too_many_failures_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let principal = match token {
        Some(t) => state.tokens.verify(&state.ctx.store, t).await,
        None => None,
    };
    let Some(principal) = principal else {
        if token.is_some() {
            count_failure(&state, &client, req.uri().path()).await;
        }
        let mut resp = error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required: Authorization: Bearer <token>",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"syncd\""),
        );
        return resp;
    };
    if principal == Principal::Metrics
        && !(req.method() == axum::http::Method::GET && req.uri().path() == "/metrics")
    {
        return error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is good for GET /metrics only",
        );
    }
    rate_limited(&state, &principal, |p| {
        req.extensions_mut().insert(p);
        next.run(req)
    })
    .await
}

/// The client's address, as the connection shows it.
fn client_address(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether `client` has used up its failed attempts for now.
pub(crate) async fn too_many_failures(state: &AdminState, client: &str) -> bool {
    state.failures.is_full(client).await.unwrap_or(false)
}

/// Counts a failed login or a refused token of `client`, and logs it (never the token).
pub(crate) async fn count_failure(state: &AdminState, client: &str, path: &str) {
    warn!(client, path, "refused an admin token");
    if let Err(e) = state.failures.check(client).await {
        warn!(error = %format!("{e:#}"), "cannot count a failed login");
    }
}

/// The answer to an address over its failed attempts.
pub(crate) fn too_many_failures_response() -> Response {
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        "too many refused tokens from this address; try again later",
    );
    let retry = HeaderValue::from(60u32);
    r.headers_mut().insert(header::RETRY_AFTER, retry);
    r
}

/// Headers on every answer: nothing is cached, nothing is framed, nothing sniffed.
async fn secure_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Runs `inner` if `principal`'s window has room, and adds the rate-limit headers either way.
pub(crate) async fn rate_limited<F, Fut>(
    state: &AdminState,
    principal: &Principal,
    inner: F,
) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let decision = match state.limiter.check(&principal.rate_key()).await {
        Ok(d) => d,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let reset_secs = decision.reset.as_secs_f64().ceil() as u64;
    let mut resp = if decision.allowed {
        inner(principal.clone()).await
    } else {
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!(
                "{} requests per {} s used up; retry in {reset_secs} s",
                decision.limit,
                state.ctx.config.admin.rate_window.as_secs()
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(reset_secs.max(1)));
        r
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    h.insert("x-ratelimit-reset", HeaderValue::from(reset_secs));
    resp
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let db = crate::store::db::query("SELECT 1")
        .execute(state.ctx.store.db())
        .await
        .map_err(|e| e.to_string());
    let queue = state.ctx.queue.ping().await.map_err(|e| format!("{e:#}"));
    let ok = db.is_ok() && queue.is_ok();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "database": db.err().unwrap_or_else(|| "ok".into()),
        "queue": queue.err().unwrap_or_else(|| "ok".into()),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text; operators only (the labels name every tenant's integrations).
async fn metrics(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    if !principal.is_operator() && principal != Principal::Metrics {
        return ApiError::not_found("no such route").into_response();
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct IssuesQuery {
    #[serde(default)]
    all: bool,
    tenant: Option<String>,
}

/// The tenant filter a request may use: its own for a tenant token (another → 404).
fn scope(principal: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (principal, asked) {
        (Principal::Operator, asked) => Ok(asked),
        (Principal::Tenant(own), None) => Ok(Some(own.clone())),
        (Principal::Tenant(own), Some(t)) if *own == t => Ok(Some(t)),
        (Principal::Tenant(_), Some(t)) => {
            Err(ApiError::not_found(format!("unknown tenant `{t}`")))
        }
        // Stopped by `bearer_auth` before any route that reads tenants.
        (Principal::Metrics, _) => Err(ApiError::not_found("no such route")),
    }
}

async fn api_issues(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<IssuesQuery>,
) -> Result<Response, ApiError> {
    let tenant = scope(&principal, q.tenant)?;
    let list = state
        .ctx
        .store
        .list_issues(&IssueFilter { all: q.all, tenant })
        .await?;
    Ok(Json(list).into_response())
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    tenant: Option<String>,
}

async fn api_status(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let tenant = scope(&principal, q.tenant)?;
    let states =
        crate::ops::status(&state.ctx.store, &state.ctx.catalog, tenant.as_deref()).await?;
    Ok(Json(states).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefetchBody {
    target: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    accept_shrink: bool,
}

/// `tenant/name` of an integration the principal may act on; anything else is 404.
pub(crate) fn target<'a>(
    state: &AdminState,
    principal: &Principal,
    target: &'a str,
) -> Result<(&'a str, &'a str), ApiError> {
    let Some((tenant, name)) = target.split_once('/') else {
        return Err(ApiError::bad_request(format!(
            "`{target}` is not TENANT/INTEGRATION"
        )));
    };
    if !principal.sees(tenant) {
        return Err(ApiError::not_found(format!(
            "unknown integration `{target}`"
        )));
    }
    state
        .ctx
        .catalog
        .integration(tenant, name)
        .map_err(|_| ApiError::not_found(format!("unknown integration `{target}`")))?;
    Ok((tenant, name))
}

async fn api_refetch(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<RefetchBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (tenant, name) = target(&state, &principal, &body.target)?;
    let ctx = &state.ctx;
    let result = crate::ops::refetch(
        &ctx.store,
        &ctx.queue,
        &ctx.catalog,
        tenant,
        name,
        body.force,
        body.accept_shrink,
    )
    .await?;
    let status = match result {
        crate::ops::Refetch::Queued { .. } => StatusCode::ACCEPTED,
        crate::ops::Refetch::AlreadyQueued { .. } => StatusCode::OK,
    };
    let mut value = serde_json::to_value(&result).map_err(|e| ApiError::internal(e.into()))?;
    value["target"] = json!(body.target);
    Ok((status, Json(value)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    target: String,
}

async fn api_test_connection(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<TargetBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (tenant, name) = target(&state, &principal, &body.target)?;
    let value = connection_test_json(&state, tenant, name).await?;
    Ok(Json(value).into_response())
}

/// Runs a connection test now; the JSON is the CLI's `test-connection --json`.
pub(crate) async fn connection_test_json(
    state: &AdminState,
    tenant: &str,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let probe = crate::ops::integrations::test_connection(&state.ctx, tenant, name).await?;
    Ok(crate::ops::probe_json(tenant, name, &probe))
}
