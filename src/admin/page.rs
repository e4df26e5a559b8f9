//! The admin page: server-rendered HTML, no JavaScript. A login form (itself CSRF-protected
//! by a double-submitted random value) takes a token and opens a session: the cookie holds an
//! opaque random id, HttpOnly, SameSite=Strict, `Secure` with `[admin] cookie_secure`, good
//! for `[admin] session_ttl`; only its SHA-256 is stored, and logging out, or revoking the
//! token that opened it, ends it. Every form that changes something carries a CSRF token
//! derived from the session. Status messages after an action are kept with the session, never
//! taken from the URL. Failed logins count against the client's address (`[admin]
//! auth_failures`).
//!
//! HTML is written by hand with one escaping function: the page is two tables and a few
//! forms, which does not justify a template engine.

use super::tokens::{Principal, session_key};
use super::{AdminState, rate_limited, target};
use crate::store::issues::IssueFilter;
use crate::store::sync_state::SyncState;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

const COOKIE: &str = "syncd_session";
/// The login form's double-submitted CSRF value.
const LOGIN_COOKIE: &str = "syncd_login";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The CSRF token of a session: bound to it, useless without it.
fn csrf_of(session: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"syncd-csrf\0")
        .chain_update(session.as_bytes())
        .finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The session of the request: who, its id, and a status message waiting for it.
async fn session(
    state: &AdminState,
    headers: &HeaderMap,
) -> Option<(Principal, String, Option<String>)> {
    let id = cookie(headers, COOKIE)?;
    let (p, flash) = state.tokens.session(&state.ctx.store, &id).await?;
    Some((p, id, flash))
}

/// `GET /`: the dashboard, or the login form.
pub(crate) async fn index(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some((principal, id, flash)) = session(&state, &headers).await else {
        return login_page(&state, StatusCode::OK, None);
    };
    if flash.is_some() {
        let _ = state
            .ctx
            .store
            .set_admin_flash(&session_key(&id), None)
            .await;
    }
    let st = state.clone();
    rate_limited(&state, &principal, |p| async move {
        match dashboard(&st, &p, &csrf_of(&id), flash.as_deref()).await {
            Ok(html) => Html(html).into_response(),
            Err(e) => super::ApiError::internal(e).into_response(),
        }
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: checks the form's CSRF value and the token, then opens a session.
pub(crate) async fn login(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = client.ip().to_string();
    if super::too_many_failures(&state, &client).await {
        return super::too_many_failures_response();
    }
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The login form was stale or came from another site. Please log in again."),
        );
    }
    let admin = &state.ctx.config.admin;
    let opened = state
        .tokens
        .open_session(&state.ctx.store, form.token.trim(), admin.session_ttl)
        .await;
    let id = match opened {
        Ok(Some((_, id))) => id,
        Ok(None) => {
            super::count_failure(&state, &client, "/login").await;
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                Some(
                    "That token was not accepted. Check it, or ask an operator for one (`syncd tokens create`).",
                ),
            );
        }
        Err(e) => return super::ApiError::internal(e).into_response(),
    };
    let secure = if admin.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        admin.session_ttl.as_secs()
    );
    redirect_with_cookie("/", Some(cookie))
}

/// `POST /logout`: ends the session and drops its cookie.
pub(crate) async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        let _ = state
            .ctx
            .store
            .delete_admin_session(&session_key(&id))
            .await;
    }
    redirect_with_cookie(
        "/",
        Some(format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        )),
    )
}

fn redirect_with_cookie(to: &str, cookie: Option<String>) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    if let Some(c) = cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// What a page action ends with: a status message for the dashboard, or an answer.
enum Done {
    Flash(String),
    Answer(Response),
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    target: String,
    csrf: String,
}

/// Checks the session and the form's CSRF token, then runs `action` within the rate limit;
/// its status message is kept with the session for the dashboard the browser goes back to.
async fn action<F, Fut>(state: AdminState, headers: HeaderMap, form: ActionForm, run: F) -> Response
where
    F: FnOnce(AdminState, Principal, String) -> Fut,
    Fut: std::future::Future<Output = Done>,
{
    let Some((principal, id, _)) = session(&state, &headers).await else {
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Please log in again."),
        );
    };
    let expected = csrf_of(&id);
    if !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            Html(page("Refused", "<p>The form is stale or came from another site. Go back, reload the page and try again.</p>")),
        )
            .into_response();
    }
    let st = state.clone();
    rate_limited(&state, &principal, move |p| async move {
        match run(st.clone(), p, form.target).await {
            Done::Answer(r) => r,
            Done::Flash(msg) => {
                if let Err(e) = st
                    .ctx
                    .store
                    .set_admin_flash(&session_key(&id), Some(&msg))
                    .await
                {
                    return super::ApiError::internal(e.into()).into_response();
                }
                redirect_with_cookie("/", None)
            }
        }
    })
    .await
}

/// `POST /ui/refetch`
pub(crate) async fn refetch(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    action(state, headers, form, |state, p, t| async move {
        let (tenant, name) = match target(&state, &p, &t) {
            Ok(x) => x,
            Err(e) => return Done::Answer(e.into_response()),
        };
        let ctx = &state.ctx;
        match crate::ops::refetch(
            &ctx.store,
            &ctx.queue,
            &ctx.catalog,
            tenant,
            name,
            true,
            false,
        )
        .await
        {
            Ok(crate::ops::Refetch::Queued { job_id }) => {
                Done::Flash(format!("Re-fetch of {t} queued (job {job_id})."))
            }
            Ok(crate::ops::Refetch::AlreadyQueued { .. }) => {
                Done::Flash(format!("A re-fetch of {t} is already queued."))
            }
            Err(e) => Done::Answer(super::ApiError::internal(e).into_response()),
        }
    })
    .await
}

/// `POST /ui/test-connection`
pub(crate) async fn test_connection(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    action(state, headers, form, |state, p, t| async move {
        let (tenant, name) = match target(&state, &p, &t) {
            Ok(x) => x,
            Err(e) => return Done::Answer(e.into_response()),
        };
        match super::connection_test_json(&state, tenant, name).await {
            Ok(v) => Done::Flash(format!(
                "Connection test of {t}: {}: {}",
                v["verdict"].as_str().unwrap_or_default().replace('_', " "),
                v["detail"].as_str().unwrap_or_default()
            )),
            Err(e) => Done::Answer(super::ApiError::internal(e).into_response()),
        }
    })
    .await
}

/// The login form, with a fresh double-submitted CSRF value (cookie and hidden field).
fn login_page(state: &AdminState, status: StatusCode, error: Option<&str>) -> Response {
    let csrf: String = (0..2)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"flash bad\">{}</p>", esc(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"muted\">An operator creates tokens with <code>syncd tokens create</code>.</p>"
    );
    let secure = if state.ctx.config.admin.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let mut resp = (status, Html(page("Log in", &body))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={csrf}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600{secure}"
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!(
            "<time datetime=\"{}\" title=\"{}\">{}</time>",
            t.to_rfc3339(),
            t.format("%Y-%m-%d %H:%M:%S UTC"),
            ago(t)
        ),
        None => "never".into(),
    }
}

async fn dashboard(
    state: &AdminState,
    principal: &Principal,
    csrf: &str,
    msg: Option<&str>,
) -> anyhow::Result<String> {
    let ctx = &state.ctx;
    let tenant = match principal {
        Principal::Operator => None,
        Principal::Tenant(t) => Some(t.clone()),
        // `session` refuses metrics tokens: they have no page.
        Principal::Metrics => anyhow::bail!("a metrics token has no page"),
    };
    let issues = ctx
        .store
        .list_issues(&IssueFilter {
            all: false,
            tenant: tenant.clone(),
        })
        .await?;
    let states = crate::ops::status(&ctx.store, &ctx.catalog, tenant.as_deref()).await?;
    let mut b = String::new();
    let scope = match principal {
        Principal::Operator => "all tenants".to_string(),
        Principal::Tenant(t) => format!("tenant {}", esc(t)),
        Principal::Metrics => "metrics".to_string(),
    };
    let _ = write!(
        b,
        "<header><h1>syncd</h1><span class=\"muted\">{scope}</span>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form></header>"
    );
    if let Some(m) = msg {
        let _ = write!(b, "<p class=\"flash\" role=\"status\">{}</p>", esc(m));
    }
    let _ = write!(b, "<h2>Open issues ({})</h2>", issues.len());
    if issues.is_empty() {
        b.push_str("<p class=\"ok\">No open issues.</p>");
    } else {
        b.push_str(
            "<table id=\"issues\"><thead><tr><th>Integration</th><th>Kind</th><th>What happened</th>\
             <th>What to do</th><th>Times</th><th>First seen</th><th>Last seen</th></tr></thead><tbody>",
        );
        for i in &issues {
            let _ = write!(
                b,
                "<tr><td>{}/{}</td><td><span class=\"kind\">{}</span></td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&i.tenant),
                esc(&i.integration),
                esc(&i.kind),
                esc(&i.message),
                esc(&i.hint),
                i.occurrences,
                when(Some(i.first_seen)),
                when(Some(i.last_seen)),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str(
        "<h2>Integrations</h2><table id=\"status\"><thead><tr><th>Integration</th><th>Kind</th>\
         <th>Last success</th><th>Fresh?</th><th>Last outcome</th><th class=\"num\">Items</th>\
         <th>State</th><th>Actions</th></tr></thead><tbody>",
    );
    for s in &states {
        let _ = write!(b, "{}", status_row(state, s, csrf));
    }
    b.push_str("</tbody></table>");
    Ok(page("syncd admin", &b))
}

fn status_row(state: &AdminState, s: &SyncState, csrf: &str) -> String {
    let stale_after = state
        .ctx
        .catalog
        .integrations()
        .find(|i| i.tenant == s.tenant && i.name == s.integration)
        .and_then(|i| i.stale_after);
    let fresh = match (s.last_success_at, stale_after) {
        (None, _) => "<span class=\"bad\">never synced</span>".to_string(),
        (Some(t), Some(limit)) if (Utc::now() - t).to_std().unwrap_or_default() > limit => {
            format!(
                "<span class=\"bad\">stale (over {})</span>",
                crate::duration::format(limit)
            )
        }
        (Some(_), _) => "<span class=\"ok\">yes</span>".to_string(),
    };
    let mut st = if s.paused {
        "<span class=\"bad\">paused</span>".to_string()
    } else {
        "active".to_string()
    };
    if let Some(at) = s.next_retry_at {
        let _ = write!(
            st,
            ", next try {}",
            esc(&at.format("%H:%M:%S UTC").to_string())
        );
    }
    if s.refetch_requested_at.is_some() {
        st.push_str(", <strong>re-fetch queued</strong>");
    }
    let target = esc(&format!("{}/{}", s.tenant, s.integration));
    let outcome = s.last_outcome.as_deref().unwrap_or("-");
    let error = s
        .last_error
        .as_deref()
        .map(|e| format!("<div class=\"muted\">{}</div>", esc(e)))
        .unwrap_or_default();
    format!(
        "<tr><td>{target}</td><td>{}</td><td>{}</td><td>{fresh}</td><td>{}{error}</td>\
         <td class=\"num\">{}</td><td>{st}</td><td class=\"actions\">\
         <form method=\"post\" action=\"/ui/refetch\"><input type=\"hidden\" name=\"target\" value=\"{target}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Re-fetch</button></form>\
         <form method=\"post\" action=\"/ui/test-connection\"><input type=\"hidden\" name=\"target\" value=\"{target}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Test connection</button></form>\
         </td></tr>",
        esc(&s.kind),
        when(s.last_success_at),
        esc(outcome),
        s.items.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>",
        esc(title)
    )
}

const CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem}\
header{display:flex;gap:1rem;align-items:center}header h1{margin:.2rem 0;font-size:1.4rem}\
header form{margin-left:auto}\
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1.5rem}\
th,td{border-bottom:1px solid #e3e6ea;padding:.45rem .6rem;text-align:left;vertical-align:top}\
th{background:#eef1f5;font-weight:600}td.num{text-align:right}\
.kind{font-family:ui-monospace,monospace;background:#fde8e8;color:#8a1c1c;padding:0 .3rem;border-radius:3px}\
.bad{color:#a61b1b;font-weight:600}.ok{color:#1f7a3a}.muted{color:#667085;font-size:.9em}\
.flash{background:#e8f1fd;border:1px solid #b6d0f5;padding:.5rem .8rem;border-radius:4px}\
.flash.bad{background:#fde8e8;border-color:#f3b4b4}\
.actions form{display:inline}button{cursor:pointer;margin:.1rem}\
.login{display:flex;gap:.5rem;align-items:center;margin-top:2rem}";
