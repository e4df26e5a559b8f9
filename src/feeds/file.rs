//! `file://` feeds: a distributor (or an upload job) drops the file into a local directory.
//!
//! The file is copied to a private spool file first, and its size and modification time are
//! compared before and after the copy, so a file that is still being written is not imported
//! half-done: that is a transient failure and the next attempt tries again.

use super::{FetchOptions, Fetched, spool_file};
use crate::outcome::Outcome;
use crate::outcome::classify::classify_io;
use crate::store::sync_state::Validators;
use chrono::{DateTime, Utc};

fn stat(path: &std::path::Path) -> Result<(i64, DateTime<Utc>), Outcome> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| classify_io(&shown.to_string(), &e))?;
    if !meta.is_file() {
        return Err(Outcome::misconfigured(format!(
            "{shown} is not a regular file"
        )));
    }
    let mtime = meta
        .modified()
        .map(DateTime::<Utc>::from)
        .map(|t| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t))
        .map_err(|e| {
            Outcome::transient(format!("cannot read the modification time of {shown}: {e}"))
        })?;
    Ok((meta.len() as i64, mtime))
}

/// Copies the file unless it is unchanged since the last import.
pub async fn fetch(
    dir: &std::path::Path,
    path: &std::path::Path,
    opts: FetchOptions<'_>,
) -> Result<Fetched, Outcome> {
    let path = super::confined(dir, path)?;
    let (size, mtime) = stat(&path)?;
    if !opts.force && opts.previous.size == Some(size) && opts.previous.mtime == Some(mtime) {
        return Ok(Fetched::Unchanged);
    }
    if size as u64 > opts.max_bytes {
        return Err(Outcome::invalid(format!(
            "file {} is {size} bytes, more than [feeds] max_download_bytes ({})",
            path.display(),
            opts.max_bytes
        )));
    }
    let spool = spool_file(opts.work_dir)?;
    let copy_to = spool.path().to_path_buf();
    let from = path.clone();
    let bytes = tokio::task::spawn_blocking(move || std::fs::copy(&from, &copy_to))
        .await
        .map_err(|e| Outcome::transient(format!("copying {} failed: {e}", path.display())))?
        .map_err(|e| Outcome::transient(format!("copying {} failed: {e}", path.display())))?;
    let (size_after, mtime_after) = stat(&path)?;
    if size_after != size || mtime_after != mtime || bytes != size as u64 {
        return Err(Outcome::transient(format!(
            "file {} changed while it was read (still being written?)",
            path.display()
        )));
    }
    Ok(Fetched::File {
        file: spool,
        bytes,
        validators: Validators {
            etag: None,
            last_modified: None,
            size: Some(size),
            mtime: Some(mtime),
        },
    })
}
