//! The composition root: [`run`] builds the daemon from its configuration and catalog and
//! runs it until shutdown — workers, the scheduler, the webhook outbox dispatcher, the
//! metrics sampler and the admin server — then stops them in order.
//!
//! Shutdown is one [`CancellationToken`], cancelled by SIGTERM or SIGINT
//! ([`watch_signals`]) and passed down to every loop; nothing is global.

pub mod dispatcher;
pub mod sampler;
pub mod scheduler;

use crate::admin::ratelimit::ApiLimiter;
use crate::catalog::{Broken, Catalog};
use crate::config::Config;
use crate::jobs::{ALL_KINDS, JobContext};
use crate::outcome::IssueKind;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Runs the daemon until SIGTERM or SIGINT, then lets in-flight jobs finish within
/// `[shutdown_grace]`. The tenants of `broken` catalog files do not run; each gets a
/// `misconfigured` issue (integration `catalog`) naming the file and the key.
pub async fn run(config: Config, catalog: Catalog, broken: Vec<Broken>) -> anyhow::Result<()> {
    let metrics = crate::metrics::install()?;
    crate::metrics::declare_kinds(&ALL_KINDS.iter().map(|k| k.as_str()).collect::<Vec<_>>());
    let config = Arc::new(config);
    let store = Store::open(&config).await?;
    let ctx = Arc::new(JobContext::build(config.clone(), Arc::new(catalog), store.clone()).await?);
    report_catalog(&ctx.store, &ctx.catalog, &broken).await?;
    let work_dir = ctx.work_dir();
    let spools = crate::feeds::remove_stale_spools(&work_dir);
    if spools > 0 {
        info!(removed = spools, dir = %work_dir.display(), "spool files of killed processes removed");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    info!(
        version = env!("CARGO_PKG_VERSION"),
        state = %config.state_display(),
        queue = ?config.queue.backend,
        integrations = ctx.catalog.integrations().count(),
        "syncd started"
    );
    if config.admin.enabled {
        let admin = &config.admin;
        // Both windows are shared by the nodes of one Redis, local to a node otherwise.
        let failures = ApiLimiter::for_config(&config, "authfail", admin.auth_failures).await?;
        let limiter = ApiLimiter::for_config(&config, "", admin.rate_limit).await?;
        let state = crate::admin::AdminState {
            failures,
            ctx: ctx.clone(),
            tokens: Arc::new(crate::admin::tokens::TokenCheck::from_config(&config)?),
            limiter,
            metrics: metrics.clone(),
        };
        crate::admin::serve(state, shutdown.clone()).await?;
    }
    let scheduler = tokio::spawn(scheduler::run(ctx.clone(), shutdown.clone()));
    let dispatcher = tokio::spawn(dispatcher::run(ctx.clone(), shutdown.clone()));
    let sampler = tokio::spawn(sampler::run(ctx.clone(), shutdown.clone()));
    tokio::spawn(crate::systemd::stopping_on(shutdown.clone()));
    let workers = ctx.queue.run_workers(ctx.clone(), shutdown.clone()).await;
    shutdown.cancel();
    let scheduled = scheduler.await;
    let dispatched = dispatcher.await;
    let _ = sampler.await;
    store.close().await;
    workers?;
    scheduled.context("the scheduler panicked")??;
    dispatched.context("the webhook dispatcher panicked")??;
    info!("syncd stopped");
    Ok(())
}

/// The integration name of issues about a tenant's catalog file.
pub const CATALOG: &str = "catalog";

/// Files a `misconfigured` issue (integration `catalog`) for each broken tenant file and
/// resolves that issue of every tenant whose file loaded.
pub async fn report_catalog(
    store: &Store,
    catalog: &Catalog,
    broken: &[Broken],
) -> anyhow::Result<()> {
    for t in &catalog.tenants {
        if !broken.iter().any(|b| b.tenant == t.name) {
            store
                .resolve_issues(&t.name, CATALOG, Some(&[IssueKind::Misconfigured]))
                .await?;
        }
    }
    for b in broken {
        tracing::error!(tenant = %b.tenant, file = %b.file.display(), error = %b.error,
            "a tenant file is broken; that tenant does not run, the others do");
        let hint = format!(
            "The tenant's catalog file {} could not be loaded, so none of its integrations \
             run; other tenants are not affected. Fix the key the message names, check the \
             file with `syncd check-config`, then restart syncd.",
            b.file.display()
        );
        store
            .raise_issue(
                &b.tenant,
                CATALOG,
                IssueKind::Misconfigured,
                &b.error,
                &hint,
            )
            .await?;
    }
    Ok(())
}

/// SIGTERM (systemd stop) and SIGINT (Ctrl-C) both start a graceful shutdown.
pub async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
    shutdown.cancel();
}
