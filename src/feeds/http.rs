//! HTTP(S) downloads: conditional GET, streamed to a temporary file.

use super::{FetchOptions, Fetched, Spool, required};
use crate::catalog::Auth;
use crate::outcome::{Outcome, classify_http_status, parse_retry_after};
use crate::store::sync_state::Validators;
use reqwest::header::{
    CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER,
};

pub use crate::catalog::shown_url;
use crate::outcome::classify::{classify_reqwest, describe};

/// Downloads `url` unless the server says it has not changed.
pub async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    auth: Option<&Auth>,
    opts: FetchOptions<'_>,
) -> Result<Fetched, Outcome> {
    let what = format!("GET {}", shown_url(url));
    let mut req = client.get(url.clone());
    match auth {
        Some(Auth::Basic { username, .. }) => {
            req = req.basic_auth(username, Some(required(opts.secret)?))
        }
        Some(Auth::Bearer { .. }) => req = req.bearer_auth(required(opts.secret)?),
        Some(Auth::SshKey { .. }) => return Err(super::ssh_key_outside_sftp()),
        None => {}
    }
    if !opts.force {
        if let Some(etag) = &opts.previous.etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &opts.previous.last_modified {
            req = req.header(IF_MODIFIED_SINCE, lm);
        }
    }
    let mut resp = req.send().await.map_err(|e| classify_reqwest(&what, e))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::Unchanged);
    }
    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        return Err(classify_http_status(status.as_u16(), &what, retry_after));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    if content_type.starts_with("text/html") {
        return Err(Outcome::invalid(format!(
            "{what} answered HTTP {status} with an HTML page (Content-Type: {content_type}) \
             instead of a feed file; a portal often does this when a login fails"
        )));
    }
    let mut validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
        size: None,
        mtime: None,
    };
    if let Some(len) = resp.content_length()
        && len > opts.max_bytes
    {
        return Err(Outcome::invalid(format!(
            "{what}: the file is {len} bytes, more than [feeds] max_download_bytes ({})",
            opts.max_bytes
        )));
    }

    let mut spool = Spool::create(&what, opts)?;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => spool.write(&chunk).await?,
            Ok(None) => break,
            Err(e) => {
                let e = e.without_url();
                return Err(Outcome::transient(format!(
                    "{what}: the download broke off after {} bytes ({})",
                    spool.bytes(),
                    describe(&e)
                )));
            }
        }
    }
    let (file, bytes) = spool.finish().await?;
    validators.size = Some(bytes as i64);
    Ok(Fetched::File {
        file,
        bytes,
        validators,
    })
}
