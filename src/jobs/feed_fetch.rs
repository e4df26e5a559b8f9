//! `feed_fetch`: download a distributor file, parse it, and replace the feed's price rows in
//! one transaction — or keep the previous rows and say why.

use super::{Job, JobContext, RunResult};
use crate::feeds::{self, FetchOptions, Fetched, parse};
use crate::outcome::{IssueKind, Outcome};
use crate::store::sync_state::Validators;
use std::io::Read;

/// The stable name of this job kind.
pub const JOB_NAME: &str = "feed_fetch";

/// Rows handed from the parser thread to the database per batch.
const BATCH: usize = 2_000;

/// Runs one fetch of the feed named by `job`.
pub async fn run(ctx: &JobContext, job: &Job) -> RunResult {
    let catalog = ctx.catalog();
    let Some(spec) = catalog.feed(&job.tenant, &job.integration) else {
        return RunResult::outcome(Outcome::misconfigured(format!(
            "the catalog no longer has a feed {}/{}",
            job.tenant, job.integration
        )));
    };
    let state = match ctx.store.state(&job.tenant, &job.integration).await {
        Ok(s) => s,
        Err(e) => return RunResult::infrastructure(e.into()),
    };
    let previous = state
        .as_ref()
        .map(|s| Validators {
            etag: s.etag.clone(),
            last_modified: s.last_modified.clone(),
            size: s.source_size,
            mtime: s.source_mtime,
        })
        .unwrap_or_default();
    let secret = match feeds::secret(&ctx.secrets, &job.tenant, spec).await {
        Ok(s) => s,
        Err(outcome) => return RunResult::outcome(outcome),
    };
    let work_dir = ctx.work_dir();
    let opts = FetchOptions {
        force: job.force,
        previous: &previous,
        work_dir: &work_dir,
        max_bytes: ctx.config.feeds.max_download_bytes,
        secret: secret.as_ref(),
    };
    let (file, bytes, validators) =
        match feeds::fetch(&ctx.http, spec, opts, super::ftp_timeouts(&ctx.config)).await {
            Ok(Fetched::Unchanged) => {
                return RunResult::outcome(Outcome::Success {
                    items: None,
                    unchanged: true,
                    detail: "source not modified since the last import".into(),
                });
            }
            Ok(Fetched::File {
                file,
                bytes,
                validators,
            }) => (file, bytes, validators),
            Err(outcome) => return RunResult::outcome(outcome),
        };
    let source = spec.source.shown();

    // Look at the first bytes before trusting the file to the parser.
    let mut head = [0u8; 512];
    let n = match file.reopen().and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(e) => {
            return RunResult::outcome(Outcome::transient(format!(
                "cannot read the download: {e}"
            )));
        }
    };
    if let Some(what) = feeds::sniff_not_csv(&head[..n]) {
        return RunResult::outcome(Outcome::invalid(format!(
            "{source} delivered {what} ({bytes} bytes) instead of a feed file; \
             a portal often does this when a login fails"
        )));
    }

    // Parse on a blocking thread and write on this task, so parsing and writing overlap.
    // The import is one transaction: until `commit`, readers see the old list, and any
    // failure below drops the transaction, which rolls it back.
    let mut import = match ctx
        .store
        .begin_price_import(&job.tenant, &job.integration, &job.run, spec.is_delta())
        .await
    {
        Ok(i) => i,
        Err(e) => return RunResult::infrastructure(e.into()),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let spec_for_parser = spec.clone();
    let path = file.path().to_path_buf();
    let feeds_config = &ctx.config.feeds;
    let limits = feeds::decode::Limits {
        decompressed: feeds_config.max_decompressed_bytes,
        line: feeds_config.max_line_bytes,
    };
    let max_rows = feeds_config.max_rows;
    let too_many = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let too_many_in_parser = too_many.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let spec = spec_for_parser;
        let mut seen = 0u64;
        feeds::decode::with_text(&path, &spec, limits, |text| {
            parse::parse(text, &spec.format, &spec.columns, BATCH, |rows| {
                seen += rows.len() as u64;
                if seen > max_rows {
                    too_many_in_parser.store(true, std::sync::atomic::Ordering::Relaxed);
                    return false;
                }
                tx.blocking_send(rows).is_ok()
            })
        })
    });
    let mut db_error = None;
    while let Some(rows) = rx.recv().await {
        if let Err(e) = import.write(&rows).await {
            db_error = Some(e);
            break;
        }
    }
    drop(rx);
    let report = parser.await;
    if let Some(e) = db_error {
        return RunResult::infrastructure(anyhow::Error::from(e).context("writing prices failed"));
    }
    if too_many.load(std::sync::atomic::Ordering::Relaxed) {
        return RunResult::outcome(Outcome::invalid(format!(
            "{source} has more than {max_rows} rows ([feeds] max_rows): not this feed's list, or raise the limit; the previous prices were kept"
        )));
    }
    let report = match report {
        Ok(Ok(Ok(report))) => report,
        Ok(Ok(Err(e))) => {
            return RunResult::outcome(Outcome::invalid(format!(
                "{source}: {e}; the previous prices were kept"
            )));
        }
        Ok(Err(e)) => {
            return RunResult::outcome(Outcome::invalid(format!(
                "{source}: {e}; the previous prices were kept"
            )));
        }
        Err(e) => {
            return RunResult::infrastructure(anyhow::anyhow!("the parser thread failed: {e}"));
        }
    };

    if report.rows == 0 && report.bad_rows == 0 && !spec.is_delta() {
        let what = if report.header_seen {
            "only a header row"
        } else {
            "no rows at all"
        };
        return RunResult::outcome(Outcome::Invalid {
            kind: IssueKind::EmptyFeed,
            message: format!(
                "{source} delivered {what} ({bytes} bytes); the previous prices were kept"
            ),
        });
    }
    let max_rate = spec
        .max_error_rate
        .unwrap_or(ctx.config.feeds.max_error_rate);
    if (report.rows == 0 && report.bad_rows > 0) || report.error_rate() > max_rate {
        return RunResult::outcome(Outcome::invalid(format!(
            "{source}: {} of {} rows could not be read (limit {:.1}%); the previous prices were kept. First problems: {}",
            report.bad_rows,
            report.rows + report.bad_rows,
            max_rate * 100.0,
            report.first_errors.join("; ")
        )));
    }
    let previous = import.previous;
    if !spec.is_delta() && previous > 0 && !job.accept_shrink {
        let max_shrink = spec.max_shrink.unwrap_or(ctx.config.feeds.max_shrink);
        let now = import.parts_seen() as i64;
        if (now as f64) < previous as f64 * (1.0 - max_shrink) {
            return RunResult::outcome(Outcome::invalid(format!(
                "{source} lists {now} parts, {previous} before: a drop of {:.0}%, more than the {:.0}% allowed \
                 (a partial export?); the previous prices were kept. If the distributor really dropped them, \
                 run `syncd refetch {}/{} --force --accept-shrink`",
                100.0 * (1.0 - now as f64 / previous as f64),
                max_shrink * 100.0,
                job.tenant,
                job.integration
            )));
        }
    }
    let (items, changes) = match import.commit().await {
        Ok(done) => done,
        Err(e) => {
            return RunResult::infrastructure(
                anyhow::Error::from(e).context("committing prices failed"),
            );
        }
    };
    let mut detail = format!(
        "{items} rows from {bytes} bytes; {} added, {} removed, {} price and {} stock changes",
        changes.added, changes.removed, changes.price_changed, changes.stock_changed
    );
    if report.bad_rows > 0 {
        detail.push_str(&format!(
            "; {} rows skipped (first: {})",
            report.bad_rows,
            report
                .first_errors
                .first()
                .map(String::as_str)
                .unwrap_or("")
        ));
    }
    RunResult {
        outcome: Outcome::Success {
            items: Some(items),
            unchanged: false,
            detail,
        },
        validators: Some(validators),
        changes: Some(changes),
    }
}
