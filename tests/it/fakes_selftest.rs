//! The fake HubSpot and fake Apollo.io keep the rules of the real services.

use crate::support::fake_apollo::{ApolloOptions, FakeApollo};
use crate::support::fake_hubspot::{FakeHubSpot, HubSpotOptions, Scripted};
use chrono::{Timelike, Utc};
use serde_json::{Value, json};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// JSON in and out without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}

async fn hubspot(opts: HubSpotOptions) -> FakeHubSpot {
    let hs = FakeHubSpot::start(opts).await;
    hs.add_private_app_token("pat-na1-test");
    hs
}

async fn list(hs: &FakeHubSpot, token: &str) -> reqwest::Response {
    client()
        .get(format!("{}/crm/v3/objects/companies?limit=10", hs.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn search(hs: &FakeHubSpot, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/crm/v3/objects/companies/search", hs.url))
        .bearer_auth("pat-na1-test")
        .json_body(&body)
        .send()
        .await
        .unwrap()
}

async fn refresh(hs: &FakeHubSpot, id: &str, secret: &str, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/oauth/v1/token", hs.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("client_id", id)
                .append_pair("client_secret", secret)
                .append_pair("refresh_token", token)
                .finish(),
        )
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn hubspot_answers_the_101st_call_inside_ten_seconds_with_its_ten_secondly_429() {
    let hs = hubspot(HubSpotOptions::default()).await;
    hs.add_companies(3);
    for i in 0..100 {
        let r = list(&hs, "pat-na1-test").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-hubspot-ratelimit-max").as_deref(),
            Some("100")
        );
        assert_eq!(
            header(&r, "x-hubspot-ratelimit-remaining"),
            Some((99 - i).to_string())
        );
        assert_eq!(
            header(&r, "x-hubspot-ratelimit-interval-milliseconds").as_deref(),
            Some("10000")
        );
        assert!(
            header(&r, "x-hubspot-ratelimit-daily").is_some(),
            "private app"
        );
    }
    let r = list(&hs, "pat-na1-test").await;
    assert_eq!(r.status(), 429);
    assert!(
        header(&r, "retry-after").is_none(),
        "real HubSpot often omits it"
    );
    let body: Value = r.json_value().await;
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(hs.count_429(), 1);
    assert_eq!(hs.count("/crm/v3/objects/companies"), 101);
}

#[tokio::test]
async fn hubspot_sends_retry_after_on_its_429_only_when_told_to() {
    let hs = hubspot(HubSpotOptions {
        limit_per_10s: 2,
        retry_after_on_429: Some(7),
        ..HubSpotOptions::default()
    })
    .await;
    list(&hs, "pat-na1-test").await;
    list(&hs, "pat-na1-test").await;
    let r = list(&hs, "pat-na1-test").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("7"));
}

#[tokio::test]
async fn a_refused_hubspot_call_does_not_consume_the_rolling_window() {
    let hs = hubspot(HubSpotOptions {
        limit_per_10s: 2,
        ..HubSpotOptions::default()
    })
    .await;
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 200);
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..5 {
        assert_eq!(list(&hs, "pat-na1-test").await.status(), 429);
    }
    // The first two leave the window at 10 s; the refused five would still be in it.
    tokio::time::sleep(Duration::from_millis(5_300)).await;
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 200);
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 200);
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 429);
}

#[tokio::test]
async fn an_expired_hubspot_access_token_gets_expired_authentication_and_an_unknown_one_is_not_found()
 {
    let hs = hubspot(HubSpotOptions {
        access_token_ttl: Duration::from_secs(1),
        ..HubSpotOptions::default()
    })
    .await;
    hs.add_oauth_client("client-1", "secret-1", "rt-0");
    let r = refresh(&hs, "client-1", "secret-1", "rt-0").await;
    assert_eq!(r.status(), 200);
    let tok: Value = r.json_value().await;
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["expires_in"], 1);
    let access = tok["access_token"].as_str().unwrap().to_string();

    let r = list(&hs, &access).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "x-hubspot-ratelimit-daily").is_none(),
        "no daily headers on OAuth calls"
    );

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let r = list(&hs, &access).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json_value().await;
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    let m = body["message"].as_str().unwrap();
    assert!(
        m.starts_with("The OAuth token used to make this call expired ")
            && m.ends_with(" second(s) ago."),
        "{m}"
    );

    let r = list(&hs, "no-such-token").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json_value().await;
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication credentials not found.")
    );
}

#[tokio::test]
async fn hubspot_rotates_refresh_tokens_and_refuses_old_revoked_and_wrong_secret_ones() {
    let hs = hubspot(HubSpotOptions::default()).await;
    hs.add_oauth_client("client-1", "secret-1", "rt-0");
    let tok: Value = refresh(&hs, "client-1", "secret-1", "rt-0")
        .await
        .json_value()
        .await;
    let rt1 = tok["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, "rt-0");
    assert_eq!(tok["expires_in"], 1800);
    assert_eq!(hs.current_refresh_token("client-1"), Some(rt1.clone()));

    let r = refresh(&hs, "client-1", "secret-1", "rt-0").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json_value().await;
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(body["message"], "missing or invalid refresh token");

    let r = refresh(&hs, "client-1", "wrong", &rt1).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json_value().await;
    assert_eq!(body["status"], "BAD_CLIENT_SECRET");

    hs.revoke_refresh_token(&rt1);
    let r = refresh(&hs, "client-1", "secret-1", &rt1).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json_value().await;
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(hs.refresh_calls(), 4);
}

#[tokio::test]
async fn hubspot_keeps_the_refresh_token_when_rotation_is_off() {
    let hs = hubspot(HubSpotOptions {
        rotate_refresh_tokens: false,
        ..HubSpotOptions::default()
    })
    .await;
    hs.add_oauth_client("client-1", "secret-1", "rt-0");
    for _ in 0..2 {
        let tok: Value = refresh(&hs, "client-1", "secret-1", "rt-0")
            .await
            .json_value()
            .await;
        assert_eq!(tok["refresh_token"], "rt-0");
    }
}

#[tokio::test]
async fn hubspot_search_pages_by_after_and_the_last_page_has_no_paging() {
    let hs = hubspot(HubSpotOptions {
        search_per_second: 100,
        ..HubSpotOptions::default()
    })
    .await;
    let made = hs.add_companies(450);
    let mut after: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let mut body = json!({
            "filterGroups": [],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": ["domain", "name", "industry", "numberofemployees", "country"],
            "limit": 200,
        });
        if let Some(a) = &after {
            body["after"] = json!(a);
        }
        let r = search(&hs, body).await;
        assert_eq!(r.status(), 200);
        assert!(
            header(&r, "x-hubspot-ratelimit-remaining").is_none(),
            "search answers carry no rate-limit headers"
        );
        let page: Value = r.json_value().await;
        pages += 1;
        assert_eq!(page["total"], 450);
        for c in page["results"].as_array().unwrap() {
            let p = &c["properties"];
            assert!(p["hs_object_id"].is_string() && p["hs_lastmodifieddate"].is_string());
            assert!(p["numberofemployees"].is_string() || p["numberofemployees"].is_null());
            assert!(p["hs_lastmodifieddate"].as_str().unwrap().ends_with('Z'));
            assert_eq!(c["archived"], false);
            ids.push(c["id"].as_str().unwrap().to_string());
        }
        match page.get("paging") {
            Some(p) => after = Some(p["next"]["after"].as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = made.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn hubspot_search_filters_by_last_modified_in_millis_or_iso_and_by_domain() {
    let hs = hubspot(HubSpotOptions {
        search_per_second: 100,
        ..HubSpotOptions::default()
    })
    .await;
    let made = hs.add_companies(20);
    let since = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    hs.touch_company(&made[4].id);
    hs.touch_company(&made[9].id);
    for value in [
        json!(since.timestamp_millis().to_string()),
        json!(since.to_rfc3339()),
    ] {
        let page: Value = search(
            &hs,
            json!({
                "filterGroups": [{"filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": value}
                ]}],
                "sorts": ["hs_lastmodifieddate"],
                "limit": 100,
            }),
        )
        .await
        .json_value()
        .await;
        assert_eq!(page["total"], 2, "{page}");
        assert!(page.get("paging").is_none());
    }
    let page: Value = search(
        &hs,
        json!({"filterGroups": [{"filters": [
            {"propertyName": "domain", "operator": "EQ", "value": "CO7.example"}
        ]}]}),
    )
    .await
    .json_value()
    .await;
    assert_eq!(page["results"][0]["properties"]["domain"], "co7.example");
    let page: Value = search(
        &hs,
        json!({"filterGroups": [{"filters": [
            {"propertyName": "hs_object_id", "operator": "GT", "value": made[17].id}
        ]}], "limit": 50}),
    )
    .await
    .json_value()
    .await;
    assert_eq!(page["total"], 2);
}

#[tokio::test]
async fn hubspot_search_sees_an_edit_only_after_the_index_lag_while_reads_by_id_see_it_at_once() {
    let hs = hubspot(HubSpotOptions {
        search_per_second: 100,
        search_index_lag: Duration::from_millis(400),
        ..HubSpotOptions::default()
    })
    .await;
    let made = hs.add_companies(5);
    let since = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    hs.touch_company(&made[2].id);
    let query = json!({"filterGroups": [{"filters": [{
        "propertyName": "hs_lastmodifieddate",
        "operator": "GTE",
        "value": since.timestamp_millis().to_string(),
    }]}]});
    let page = search(&hs, query.clone()).await.json_value().await;
    assert_eq!(page["total"], 0, "not indexed yet: {page}");
    let by_id = client()
        .get(format!(
            "{}/crm/v3/objects/companies/{}",
            hs.url, made[2].id
        ))
        .bearer_auth("pat-na1-test")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let modified = by_id["properties"]["hs_lastmodifieddate"].as_str().unwrap();
    assert!(
        modified
            >= since
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .as_str()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = search(&hs, query).await.json_value().await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn hubspot_search_refuses_big_pages_and_paging_past_ten_thousand_and_has_a_secondly_limit() {
    let hs = hubspot(HubSpotOptions::default()).await;
    let r = search(&hs, json!({"limit": 201})).await;
    assert_eq!(r.status(), 400);
    let r = search(&hs, json!({"limit": 200, "after": "9900"})).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json_value().await;
    assert_eq!(body["category"], "VALIDATION_ERROR");
    // Two calls above and three more are five inside the second; the sixth is refused.
    for _ in 0..3 {
        assert_eq!(search(&hs, json!({"limit": 1})).await.status(), 200);
    }
    let r = search(&hs, json!({"limit": 1})).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json_value().await;
    assert_eq!(body["message"], "You have reached your secondly limit.");
    assert_eq!(
        list(&hs, "pat-na1-test").await.status(),
        200,
        "the search limit is separate"
    );
}

#[tokio::test]
async fn hubspot_reads_a_company_with_contacts_and_batches_contacts() {
    let hs = hubspot(HubSpotOptions::default()).await;
    let made = hs.add_companies(4);
    let with = made.iter().find(|c| c.contacts.len() >= 2).unwrap();
    let without = made.iter().find(|c| c.contacts.is_empty()).unwrap();
    let get = |id: &str| {
        client()
            .get(format!(
                "{}/crm/v3/objects/companies/{id}?properties=domain,industry&associations=contacts",
                hs.url
            ))
            .bearer_auth("pat-na1-test")
            .send()
    };
    let c: Value = get(&with.id).await.unwrap().json_value().await;
    let assoc = c["associations"]["contacts"]["results"].as_array().unwrap();
    assert_eq!(assoc.len(), with.contacts.len());
    assert_eq!(assoc[0]["type"], "company_to_contact");
    assert!(c["properties"]["domain"].is_string());
    let c: Value = get(&without.id).await.unwrap().json_value().await;
    assert!(c.get("associations").is_none());
    let r = get("999").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json_value().await["category"], "OBJECT_NOT_FOUND");

    let mut inputs: Vec<Value> = with.contacts.iter().map(|c| json!({"id": c.id})).collect();
    let r = client()
        .post(format!("{}/crm/v3/objects/contacts/batch/read", hs.url))
        .bearer_auth("pat-na1-test")
        .json_body(&json!({"inputs": inputs, "properties": ["email", "jobtitle", "phone"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json_value().await;
    assert_eq!(b["status"], "COMPLETE");
    assert_eq!(b["results"].as_array().unwrap().len(), with.contacts.len());

    inputs.push(json!({"id": "1"}));
    let r = client()
        .post(format!("{}/crm/v3/objects/contacts/batch/read", hs.url))
        .bearer_auth("pat-na1-test")
        .json_body(&json!({"inputs": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207, "a missing id makes a multi-status answer");
    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    let r = client()
        .post(format!("{}/crm/v3/objects/contacts/batch/read", hs.url))
        .bearer_auth("pat-na1-test")
        .json_body(&json!({"inputs": too_many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn hubspot_serves_scripted_replies_once_and_in_order() {
    let hs = hubspot(HubSpotOptions::default()).await;
    hs.fail_next("/crm/v3/objects/companies", Scripted::rate_limited(Some(2)));
    hs.fail_next(
        "/crm/v3/objects/companies",
        Scripted::status(502, "Bad gateway"),
    );
    let r = list(&hs, "pat-na1-test").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("2"));
    let body: Value = r.json_value().await;
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 502);
    assert_eq!(list(&hs, "pat-na1-test").await.status(), 200);
    assert_eq!(hs.requests().len(), 3);
}

// ---- Apollo.io ----

async fn apollo(opts: ApolloOptions) -> FakeApollo {
    let ap = FakeApollo::start(opts).await;
    ap.add_key("key-good");
    ap
}

async fn enrich(ap: &FakeApollo, key: &str, domain: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/api/v1/organizations/enrich?{}",
            ap.url,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("domain", domain)
                .finish()
        ))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Fixed windows are aligned to the UTC minute: start a burst well inside one.
async fn well_inside_a_minute() {
    let s = Utc::now().second();
    if s >= 50 {
        tokio::time::sleep(Duration::from_secs(61 - s as u64)).await;
    }
}

#[tokio::test]
async fn apollo_refuses_the_fourth_call_in_a_minute_of_three_after_saying_none_are_left() {
    let ap = apollo(ApolloOptions {
        per_minute: 3,
        ..ApolloOptions::default()
    })
    .await;
    ap.add_orgs(2);
    well_inside_a_minute().await;
    let mut left = Vec::new();
    for d in ["co1.example", "co2.example", "nowhere.example"] {
        let r = enrich(&ap, "key-good", d).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-rate-limit-minute").as_deref(), Some("3"));
        assert!(header(&r, "x-hourly-requests-left").is_some());
        assert!(header(&r, "x-24-hour-usage").is_some());
        left.push(header(&r, "x-minute-requests-left").unwrap());
    }
    assert_eq!(left, ["2", "1", "0"]);
    let r = enrich(&ap, "key-good", "co1.example").await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").is_none());
    let body: Value = r.json_value().await;
    let m = body["message"].as_str().unwrap();
    assert!(
        m.starts_with(
            "The maximum number of api calls allowed for api/v1/organizations/enrich is 3 times per minute."
        ),
        "{m}"
    );
    // The refusal did not count.
    let r = enrich(&ap, "key-good", "co1.example").await;
    assert_eq!(header(&r, "x-minute-usage").as_deref(), Some("3"));
    assert_eq!(ap.count_429(), 2);
}

#[tokio::test]
async fn apollo_says_which_window_is_exhausted() {
    let ap = apollo(ApolloOptions {
        per_hour: 2,
        ..ApolloOptions::default()
    })
    .await;
    well_inside_a_minute().await;
    enrich(&ap, "key-good", "a.example").await;
    enrich(&ap, "key-good", "b.example").await;
    let body: Value = enrich(&ap, "key-good", "c.example")
        .await
        .json_value()
        .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("is 2 times per hour"),
        "{body}"
    );
}

#[tokio::test]
async fn apollo_can_count_each_endpoint_in_its_own_windows() {
    let ap = apollo(ApolloOptions {
        per_minute: 1,
        per_endpoint: true,
        ..ApolloOptions::default()
    })
    .await;
    well_inside_a_minute().await;
    assert_eq!(enrich(&ap, "key-good", "a.example").await.status(), 200);
    let r = client()
        .get(format!("{}/api/v1/auth/health", ap.url))
        .header("x-api-key", "key-good")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another endpoint, another window");
    assert_eq!(enrich(&ap, "key-good", "a.example").await.status(), 429);
}

#[tokio::test]
async fn apollo_enrich_answers_an_empty_object_when_nothing_matches() {
    let ap = apollo(ApolloOptions::default()).await;
    ap.add_org(
        "https://www.Acme.example/",
        json!({"name": "Acme Corp", "estimated_num_employees": 42}),
    );
    let r = enrich(&ap, "key-good", "unknown.example").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await, json!({}));
    let org: Value = enrich(&ap, "key-good", "acme.example")
        .await
        .json_value()
        .await;
    let o = &org["organization"];
    assert_eq!(o["name"], "Acme Corp");
    assert_eq!(o["estimated_num_employees"], 42);
    assert_eq!(o["primary_domain"], "acme.example");
    assert!(o["industry"].is_string() && o["id"].is_string() && o["country"].is_string());
}

#[tokio::test]
async fn apollo_bulk_enrich_leaves_unmatched_domains_out_and_takes_ten_at_most() {
    let ap = apollo(ApolloOptions::default()).await;
    let domains = ap.add_orgs(2);
    let post = |body: Value| {
        client()
            .post(format!("{}/api/v1/organizations/bulk_enrich", ap.url))
            .header("x-api-key", "key-good")
            .json_body(&body)
            .send()
    };
    let r = post(json!({"domains": [domains[0], "missing.example", domains[1]]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json_value().await;
    assert_eq!(b["status"], "success");
    assert_eq!(b["total_requested_domains"], 3);
    assert_eq!(b["unique_enriched_records"], 2);
    assert_eq!(b["missing_records"], 1);
    let found: Vec<&str> = b["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["primary_domain"].as_str().unwrap())
        .collect();
    assert_eq!(found, [domains[0].as_str(), domains[1].as_str()]);

    let eleven: Vec<String> = (0..11).map(|i| format!("d{i}.example")).collect();
    assert_eq!(
        post(json!({ "domains": eleven })).await.unwrap().status(),
        422
    );
}

#[tokio::test]
async fn apollo_rejects_bad_keys_keys_without_access_and_keys_outside_the_header() {
    let ap = apollo(ApolloOptions::default()).await;
    ap.add_key_without_access("key-free-plan");

    let r = enrich(&ap, "key-wrong", "a.example").await;
    assert_eq!(r.status(), 401);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap(), "Invalid access credentials.");

    let r = enrich(&ap, "key-free-plan", "a.example").await;
    assert_eq!(r.status(), 403);
    let b: Value = r.json_value().await;
    assert_eq!(b["error_code"], "API_INACCESSIBLE");

    let r = client()
        .get(format!(
            "{}/api/v1/organizations/enrich?domain=a.example&api_key=key-good",
            ap.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = client()
        .get(format!("{}/api/v1/auth/health", ap.url))
        .header("x-api-key", "key-good")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json_value().await,
        json!({"healthy": true, "is_logged_in": true})
    );
    assert_eq!(ap.count("/api/v1/organizations/enrich"), 3);

    let json_401 = apollo(ApolloOptions {
        plain_text_401: false,
        ..ApolloOptions::default()
    })
    .await;
    let r = enrich(&json_401, "key-wrong", "a.example").await;
    assert_eq!(r.json_value().await["error"], "Invalid access credentials.");
}
