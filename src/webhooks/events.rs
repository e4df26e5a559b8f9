//! Event composition, pure: which outbox rows make which event, grouped how, with what
//! body. The store reads the rows and writes what this returns, in one transaction.
//!
//! Rows are grouped per tenant, source, run and event type, at most `max_items` items an
//! event (a big import becomes several events). Added and removed parts and price moves are
//! `price.changed`; stock moves of a listed part are `stock.changed` (a row with both is in
//! both events); company rows are `company.enriched`. A group no endpoint subscribes to makes
//! no event.

use crate::store::webhooks::{NewEvent, OutboxRow, new_id};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Where an event's items come from: `(tenant, source key, source, run, event type)`.
type Key<'r> = (&'r str, &'static str, &'r str, &'r str, &'static str);

/// Items grouped into events, in the order their first row came.
struct Groups<'r> {
    max_items: usize,
    groups: Vec<(Key<'r>, Vec<Value>)>,
    open: HashMap<Key<'r>, usize>,
}

impl<'r> Groups<'r> {
    fn add(&mut self, key: Key<'r>, item: Value) {
        let idx = match self.open.get(&key) {
            Some(&i) if self.groups[i].1.len() < self.max_items => i,
            _ => {
                self.groups.push((key, Vec::new()));
                self.open.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.groups[idx].1.push(item);
    }
}

/// The events `rows` make at `now`, each with the endpoints `subscribers(tenant, type)`
/// names.
pub fn compose(
    rows: &[OutboxRow],
    max_items: usize,
    now: DateTime<Utc>,
    subscribers: &dyn Fn(&str, &str) -> Vec<String>,
) -> Vec<NewEvent> {
    let mut g = Groups {
        max_items: max_items.max(1),
        groups: Vec::new(),
        open: HashMap::new(),
    };
    for row in rows {
        match row {
            OutboxRow::Price {
                tenant,
                feed,
                run,
                sku,
                change,
                old_price,
                new_price,
                old_stock,
                new_stock,
            } => {
                let item = json!({
                    "sku": sku, "change": change,
                    "old_price": old_price, "new_price": new_price,
                    "old_stock": old_stock, "new_stock": new_stock,
                });
                let price = change != "changed" || old_price != new_price;
                let stock = change == "changed" && old_stock != new_stock;
                if price {
                    g.add((tenant, "feed", feed, run, "price.changed"), item.clone());
                }
                if stock {
                    g.add((tenant, "feed", feed, run, "stock.changed"), item);
                }
            }
            OutboxRow::Company {
                tenant,
                crm,
                run,
                domain,
                change,
                data,
            } => {
                let data: Value =
                    serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.clone()));
                let item = json!({ "domain": domain, "change": change, "data": data });
                g.add((tenant, "crm", crm, run, "company.enriched"), item);
            }
        }
    }
    let mut events = Vec::new();
    for ((tenant, source_key, source, run, event_type), items) in g.groups {
        let endpoints = subscribers(tenant, event_type);
        if endpoints.is_empty() {
            continue;
        }
        let id = new_id("evt_");
        let mut data = serde_json::Map::new();
        data.insert("event_id".into(), json!(id));
        data.insert("tenant".into(), json!(tenant));
        data.insert(source_key.into(), json!(source));
        data.insert("run".into(), json!(run));
        data.insert("items".into(), Value::Array(items));
        let payload = json!({
            "type": event_type,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        events.push(NewEvent {
            id,
            tenant: tenant.to_string(),
            event_type,
            source: source.to_string(),
            payload,
            endpoints,
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(sku: &str, change: &str, prices: (&str, &str), stock: (i64, i64)) -> OutboxRow {
        OutboxRow::Price {
            tenant: "acme".into(),
            feed: "ingram".into(),
            run: "r1".into(),
            sku: sku.into(),
            change: change.into(),
            old_price: Some(prices.0.into()),
            new_price: Some(prices.1.into()),
            old_stock: Some(stock.0),
            new_stock: Some(stock.1),
        }
    }

    fn everyone(_: &str, _: &str) -> Vec<String> {
        vec!["erp".into()]
    }

    fn items(e: &NewEvent) -> Vec<String> {
        let body: Value = serde_json::from_str(&e.payload).unwrap();
        body["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["sku"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn price_and_stock_moves_become_their_own_event_types() {
        let rows = [
            price("A", "changed", ("1.00", "2.00"), (5, 5)),
            price("B", "changed", ("1.00", "1.00"), (5, 0)),
            price("C", "changed", ("1.00", "3.00"), (5, 1)),
            price("D", "added", ("", "4.00"), (0, 2)),
        ];
        let events = compose(&rows, 500, Utc::now(), &everyone);
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(kinds, ["price.changed", "stock.changed"]);
        assert_eq!(items(&events[0]), ["A", "C", "D"]);
        assert_eq!(items(&events[1]), ["B", "C"], "a row with both is in both");
        let body: Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(body["data"]["feed"], "ingram");
        assert_eq!(body["data"]["event_id"], json!(events[0].id));
        assert_eq!(events[0].endpoints, ["erp"]);
    }

    #[test]
    fn a_big_import_is_split_into_events_of_at_most_max_items() {
        let rows: Vec<OutboxRow> = (0..5)
            .map(|i| price(&format!("P{i}"), "removed", ("1.00", ""), (1, 0)))
            .collect();
        let events = compose(&rows, 2, Utc::now(), &everyone);
        let sizes: Vec<usize> = events.iter().map(|e| items(e).len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(events.iter().all(|e| e.event_type == "price.changed"));
    }

    #[test]
    fn nobody_subscribed_makes_no_event_and_companies_carry_their_data() {
        let rows = [
            price("A", "changed", ("1.00", "2.00"), (5, 5)),
            OutboxRow::Company {
                tenant: "acme".into(),
                crm: "apollo".into(),
                run: "r2".into(),
                domain: "example.com".into(),
                change: "enriched".into(),
                data: r#"{"industry":"it"}"#.into(),
            },
        ];
        let only_companies = |_: &str, t: &str| {
            if t == "company.enriched" {
                vec!["crm-hook".to_string()]
            } else {
                Vec::new()
            }
        };
        let events = compose(&rows, 500, Utc::now(), &only_companies);
        assert_eq!(events.len(), 1);
        let body: Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(body["type"], "company.enriched");
        assert_eq!(body["data"]["crm"], "apollo");
        assert_eq!(body["data"]["items"][0]["data"]["industry"], "it");
    }
}
