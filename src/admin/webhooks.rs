//! The webhook routes of the admin API: `GET /api/deliveries`, `POST /api/redeliver`,
//! `POST /api/replay`, `POST /api/endpoint/enable`. They run the same code as `syncd
//! deliveries`, `redeliver`, `replay` and `endpoint enable` (`crate::ops::webhooks`), scoped
//! to what the token may see: another tenant's deliveries and endpoints answer 404, and
//! nothing is changed.

use super::tokens::Principal;
use super::{AdminState, ApiError, scope};
use crate::ops::{self, Refused};
use crate::store::webhooks::DeliveryFilter;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

/// The most deliveries one request lists.
const MAX_LIMIT: i64 = 1000;
/// The most deliveries one request lists with the receivers' response bodies (up to 16 KiB
/// each).
const MAX_BODIES_LIMIT: i64 = 100;

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::NotFound(m) => ApiError::not_found(m),
            Refused::BadRequest(m) => ApiError::bad_request(m),
            Refused::Disabled(m) => ApiError {
                status: StatusCode::CONFLICT,
                code: "endpoint_disabled",
                message: m,
            },
            Refused::Other(e) => ApiError::internal(e),
        }
    }
}

/// `tenant/endpoint` of a catalog webhook the principal may act on; anything else is 404.
fn endpoint<'a>(
    state: &AdminState,
    principal: &Principal,
    target: &'a str,
) -> Result<(&'a str, &'a str), ApiError> {
    let (tenant, name) = ops::split_endpoint(target)?;
    if !principal.sees(tenant) || state.ctx.catalog.webhook(tenant, name).is_none() {
        return Err(ApiError::not_found(format!("unknown endpoint `{target}`")));
    }
    Ok((tenant, name))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    endpoint: Option<String>,
    tenant: Option<String>,
    #[serde(default)]
    failed: bool,
    limit: Option<i64>,
    #[serde(default)]
    bodies: bool,
}

/// `GET /api/deliveries[?endpoint=T/E][&tenant=T][&failed=true][&limit=N][&bodies=true]`:
/// the array `syncd deliveries --json` prints, but the receivers' response bodies left out
/// (`null`) unless `bodies=true`, and then at most [`MAX_BODIES_LIMIT`] deliveries.
pub(super) async fn deliveries(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tenant = scope(&principal, q.tenant)?;
    let endpoint = match &q.endpoint {
        // As in the CLI, the history of an endpoint since removed from the catalog is
        // still shown; only the tenant is checked.
        Some(target) => {
            let (t, e) = ops::split_endpoint(target)?;
            if !principal.sees(t) {
                return Err(ApiError::not_found(format!("unknown endpoint `{target}`")));
            }
            Some((t.to_string(), e.to_string()))
        }
        None => None,
    };
    let filter = DeliveryFilter {
        endpoint,
        tenant,
        failed: q.failed,
        limit: q.limit.unwrap_or(100).clamp(
            1,
            if q.bodies {
                MAX_BODIES_LIMIT
            } else {
                MAX_LIMIT
            },
        ),
    };
    let mut list = ops::webhooks::list(&state.ctx.store, &filter).await?;
    if !q.bodies {
        for attempt in list.iter_mut().flat_map(|d| d.attempt_log.iter_mut()) {
            attempt.response_body = None;
        }
    }
    Ok(Json(list).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedeliverBody {
    delivery: String,
}

/// `POST /api/redeliver {"delivery": ID}`
pub(super) async fn redeliver(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<RedeliverBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let own = match &principal {
        Principal::Operator => None,
        Principal::Tenant(t) => Some(t.as_str()),
        Principal::Metrics => return Err(ApiError::not_found("no such route")),
    };
    let r = ops::webhooks::redeliver_delivery(&state.ctx.store, &body.delivery, own).await?;
    Ok((StatusCode::ACCEPTED, Json(r)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    target: String,
    since: String,
}

/// `POST /api/replay {"target": "T/E", "since": "2h" | RFC 3339}`
pub(super) async fn replay(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let (tenant, name) = endpoint(&state, &principal, &body.target)?;
    let since = ops::since(&body.since, chrono::Utc::now())
        .map_err(|e| ApiError::bad_request(format!("since {e}")))?;
    let ctx = &state.ctx;
    let cap = Some(ctx.config.admin.replay_max_events);
    let r =
        ops::webhooks::replay_endpoint(&ctx.store, &ctx.catalog, tenant, name, since, cap).await?;
    Ok((StatusCode::ACCEPTED, Json(r)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetBody {
    target: String,
}

/// `POST /api/endpoint/enable {"target": "T/E"}`
pub(super) async fn enable(
    State(state): State<AdminState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<TargetBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let (tenant, name) = endpoint(&state, &principal, &body.target)?;
    let r = ops::webhooks::enable_endpoint(&state.ctx.store, tenant, name).await?;
    Ok(Json(r).into_response())
}
