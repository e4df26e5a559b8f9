//! Several `syncd run` processes sharing one PostgreSQL database and one Redis queue: no work
//! lost when a node dies, no scheduled tick run twice, one OAuth refresh per credential and
//! one open issue per key however many nodes act at once.

use crate::crm::{
    CLIENT_ID, CLIENT_SECRET, REFRESH, fast_hubspot, hubspot_oauth, test_connections_at_once,
};
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::fake_hubspot::FakeHubSpot;
use crate::support::helpers::*;
use crate::webhooks::{FAST, Receiver, SECRET, hook, other_secret};
use std::collections::BTreeSet;
use std::time::Duration;
use syncd::jobs::{Job, JobKind, Trigger};
use syncd::store::db;

const FEEDS: usize = 250;
const ROUNDS: usize = 4;

/// The distributor's file in round `r`: every price moves each round, stock stays.
fn price_list(r: usize) -> String {
    format!(
        "sku,price,stock\nA-1,{}.00,5\nB-2,{}.50,0\nC-3,{}.10,12\n",
        10 + r,
        20 + r,
        3 + r
    )
}

fn feed_name(i: usize) -> String {
    format!("f{i:03}")
}

fn node_env() -> Vec<(&'static str, String)> {
    vec![
        ("ACME_FEED_PASSWORD", "feed-password".to_string()),
        ("ACME_WEBHOOK_SECRET", SECRET.to_string()),
        ("ACME_WEBHOOK_SECRET_OLD", other_secret()),
    ]
}

fn spawn_node(env: &TestEnv) -> Daemon {
    let vars = node_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.spawn_with_env(&vars)
}

async fn count(store: &syncd::store::Store, sql: &'static str) -> i64 {
    let (n,): (i64,) = db::query_as(sql).fetch_one(store.db()).await.unwrap();
    n
}

/// Feeds whose stored list is round `r`'s (all three parts at that round's prices).
async fn feeds_at_round(store: &syncd::store::Store, r: usize) -> i64 {
    let (n,): (i64,) = db::query_as(
        "SELECT COUNT(*) FROM (SELECT feed FROM prices WHERE tenant = 'acme' AND price IN (?, ?, ?)
         GROUP BY feed HAVING COUNT(*) = 3) AS done",
    )
    .bind(format!("{}.00", 10 + r))
    .bind(format!("{}.50", 20 + r))
    .bind(format!("{}.10", 3 + r))
    .fetch_one(store.db())
    .await
    .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_no_job_when_one_is_killed_and_run_no_tick_twice() {
    // Each download takes a moment, so that the node killed halfway has work in flight.
    let slow = |r: usize| Reply::csv(&price_list(r)).trickle(Duration::from_millis(200));
    let fake = FakeDistributor::start(slow(0)).await;
    let rx = Receiver::start(&[SECRET]).await;
    let nodes: Vec<TestEnv> = TestEnv::cluster(3)
        .into_iter()
        .map(|n| {
            n.with_config(&format!(
                "{FAST}concurrency = 4\n[queue]\nconcurrency = 4\norphan_timeout = \"5s\"\n"
            ))
        })
        .collect();
    let mut catalog = String::from("tenant = \"acme\"\n");
    catalog.push_str(&hook("erp", &rx.url("/erp"), r#"["price.changed"]"#, ""));
    for i in 0..FEEDS {
        let name = feed_name(i);
        catalog.push_str(&nodes[0].http_feed(&name, &fake.url(&format!("/{name}.csv"))));
    }
    for n in &nodes {
        n.write_catalog("acme", &catalog);
    }
    let store = nodes[0].store().await;
    let started = std::time::Instant::now();
    let tick_window_start = chrono::Utc::now();
    let mut daemons: Vec<Daemon> = nodes.iter().map(spawn_node).collect();

    // Round 0: every node enqueues the start-up tick of every feed; each runs once.
    eventually(
        Duration::from_secs(120),
        "the start-up tick of every feed",
        || {
            let store = store.clone();
            async move { (feeds_at_round(&store, 0).await == FEEDS as i64).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tick_window_end = chrono::Utc::now();
    // One job per tick: three nodes pushed each tick, the queue kept one. A feed whose hourly
    // tick fell while the nodes were starting has two ticks in the window (the one overdue at
    // start-up and the new one), each run once. Jobs are counted in job_runs when they start,
    // under their own ids.
    let schedule: syncd::catalog::Schedule = "every 1h".parse().unwrap();
    let jobs: Vec<(String, i64)> =
        db::query_as("SELECT integration, COUNT(*) FROM job_runs GROUP BY integration")
            .fetch_all(store.db())
            .await
            .unwrap();
    assert_eq!(jobs.len(), FEEDS, "every feed ran");
    let mut ticks_total = 0;
    for (feed, jobs) in &jobs {
        let key = format!("acme/{feed}");
        let mut tick = schedule.prev_tick(&key, tick_window_start).unwrap();
        let mut ticks = 1;
        while let Some(next) = schedule
            .next_tick(&key, tick)
            .filter(|t| *t <= tick_window_end)
        {
            ticks += 1;
            tick = next;
        }
        ticks_total += ticks as usize;
        assert!(*jobs <= ticks, "{feed}: {jobs} jobs for {ticks} ticks");
    }
    eprintln!("round 0 done after {:?}", started.elapsed());
    let tick_requests = fake.count();
    assert!(
        (FEEDS..ticks_total + 4).contains(&tick_requests),
        "{tick_requests} requests for {ticks_total} ticks"
    );

    // Rounds 1..: forced re-fetches with new prices; each import sends one event. Node 3 is
    // killed halfway through round 2, with work in flight.
    let ctx = job_context(&nodes[0]).await;
    let mut killed_at = None;
    for r in 1..=ROUNDS {
        fake.set_fallback(slow(r));
        for i in 0..FEEDS {
            let outcome = syncd::ops::refetch(
                &ctx.store,
                &ctx.queue,
                &ctx.catalog,
                "acme",
                &feed_name(i),
                false,
                false,
            )
            .await
            .unwrap();
            assert!(
                matches!(outcome, syncd::ops::Refetch::Queued { .. }),
                "{outcome:?}"
            );
        }
        if r == 2 {
            let half = FEEDS + FEEDS / 2;
            eventually(
                Duration::from_secs(120),
                "half of round 2 delivered",
                || {
                    let n = rx.delivered_events().len();
                    async move { (n >= half).then_some(()) }
                },
            )
            .await;
            daemons[2].kill9();
            eprintln!("node 3 killed after {:?}", started.elapsed());
            killed_at = Some(rx.delivered_events().len());
        }
        eventually(
            Duration::from_secs(180),
            &format!("round {r} imported and delivered"),
            || {
                let store = store.clone();
                let delivered = rx.delivered_events().len();
                async move {
                    (feeds_at_round(&store, r).await == FEEDS as i64 && delivered >= r * FEEDS)
                        .then_some(())
                }
            },
        )
        .await;
        eprintln!("round {r} done after {:?}", started.elapsed());
    }
    let killed_at = killed_at.unwrap();
    assert!(
        killed_at < 2 * FEEDS,
        "node 3 died before round 2 was over ({killed_at} events delivered)"
    );

    // Nothing lost, nothing doubled where it counts.
    eventually(Duration::from_secs(60), "every delivery settled", || {
        let store = store.clone();
        async move {
            (count(
                &store,
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'",
            )
            .await
                == 0)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM webhook_deliveries").await,
        (ROUNDS * FEEDS) as i64,
        "one delivery per import"
    );
    let delivered = rx.delivered_events();
    assert_eq!(
        delivered.len(),
        ROUNDS * FEEDS,
        "the receiver has every event"
    );
    let per_feed: BTreeSet<(String, String)> = rx
        .got()
        .iter()
        .map(|g| {
            (
                g.body["data"]["feed"].as_str().unwrap_or("").to_string(),
                g.body["data"]["run"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        per_feed.len(),
        ROUNDS * FEEDS,
        "one event per feed and round"
    );
    for i in [0, FEEDS / 2, FEEDS - 1] {
        let prices = store.prices("acme", &feed_name(i)).await.unwrap();
        let got: Vec<(&str, &str)> = prices
            .iter()
            .map(|p| (p.sku.as_str(), p.price.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("A-1", "14.00"), ("B-2", "24.50"), ("C-3", "7.10")],
            "{}",
            feed_name(i)
        );
    }
    assert!(
        nodes[0].issues(false).is_empty(),
        "no issue: {:?}",
        nodes[0].issues(false)
    );
    // The killed node's jobs in flight were started again elsewhere after the orphan timeout.
    let (jobs, starts): (i64, i64) =
        db::query_as("SELECT COUNT(*), CAST(SUM(starts) AS BIGINT) FROM job_runs")
            .fetch_one(store.db())
            .await
            .unwrap();
    assert!(
        starts > jobs,
        "no job was interrupted by the kill ({jobs} jobs, {starts} starts)"
    );
    // Requests beyond one per job come only from jobs the killed node had in flight (at most
    // its concurrency) and at-least-once re-runs.
    let requests = fake.count();
    assert!(
        (FEEDS * ROUNDS + tick_requests..FEEDS * ROUNDS + tick_requests + 12).contains(&requests),
        "{requests} feed requests"
    );

    // Any node tells the same truth.
    let a = nodes[0].json(&["status", "--json"]);
    let b = nodes[1].json(&["status", "--json"]);
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        for row in v.as_array_mut().unwrap() {
            row.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.contains("ago"));
        }
        v
    };
    assert_eq!(strip(&a), strip(&b));
    drop(daemons);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_needing_one_oauth_token_at_once_cause_one_refresh() {
    let fake = FakeHubSpot::start(fast_hubspot()).await;
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let nodes = TestEnv::cluster(2);
    for n in &nodes {
        n.write_catalog(
            "acme",
            &format!("tenant = \"acme\"\n{}", hubspot_oauth("hubspot", &fake.url)),
        );
    }
    // Migrate once first, so that both nodes' commands start on the finished schema.
    nodes[0].json(&["status", "--json"]);
    let configs: Vec<_> = nodes.iter().map(TestEnv::config_path).collect();
    test_connections_at_once(&configs);
    assert_eq!(fake.refresh_calls(), 1, "one refresh for two nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_on_two_nodes_make_one_issue_with_the_summed_count() {
    let fake = FakeDistributor::start(Reply::status(404)).await;
    let nodes = TestEnv::cluster(2);
    let catalog = format!(
        "tenant = \"acme\"\n[[feed]]\nname = \"prices\"\nurl = \"{}\"\nschedule = \"every 1h\"\n\
         [feed.columns]\nsku = \"sku\"\nprice = \"price\"\n",
        fake.url("/gone.csv")
    );
    for n in &nodes {
        n.write_catalog("acme", &catalog);
    }
    // Two nodes = two connection pools; every job on both fails at the same moment.
    let a = job_context(&nodes[0]).await;
    let b = job_context(&nodes[1]).await;
    const PER_NODE: usize = 10;
    let mut runs = tokio::task::JoinSet::new();
    for ctx in [a, b] {
        let ctx = std::sync::Arc::new(ctx);
        for _ in 0..PER_NODE {
            let ctx = ctx.clone();
            runs.spawn(async move {
                let job = Job::new(JobKind::FeedFetch, "acme", "prices", Trigger::Refetch);
                syncd::jobs::execute(&ctx, job).await.unwrap();
            });
        }
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap();
    }
    assert_eq!(fake.count(), 2 * PER_NODE);
    let open = nodes[1].issues(false);
    assert_eq!(open.len(), 1, "one open issue per key: {open:?}");
    assert_eq!(open[0]["integration"], "prices");
    assert_eq!(
        open[0]["occurrences"],
        (2 * PER_NODE) as i64,
        "every failure counted: {open:?}"
    );
}
