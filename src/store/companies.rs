//! A tenant's companies: imported by operators, pulled from HubSpot, enriched by Apollo.io.
//! Every write that changes a company's data records a `company_changes` row in the same
//! transaction (the source of `company.enriched` webhook events).

use super::Store;
use super::db;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One company as `syncd companies list --json` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Company {
    /// Tenant id.
    pub tenant: String,
    /// Web domain, lower case, without `www.`.
    pub domain: String,
    /// Display name.
    pub name: Option<String>,
    /// The company's id in the tenant's HubSpot.
    pub hubspot_id: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Number of employees.
    pub employee_count: Option<i64>,
    /// Country.
    pub country: Option<String>,
    /// Contacts from HubSpot (JSON array).
    #[serde(serialize_with = "as_json")]
    pub contacts: Option<String>,
    /// `pending`, `enriched` or `no_data`.
    pub enrichment_status: String,
    /// When enrichment was last looked up (any result).
    pub enriched_at: Option<DateTime<Utc>>,
    /// HubSpot's last-modified time of the record.
    pub hubspot_updated_at: Option<DateTime<Utc>>,
    /// HubSpot's fields as sent (JSON object).
    #[serde(serialize_with = "as_json")]
    pub hubspot_raw: Option<String>,
    /// Apollo.io's fields as sent (JSON object).
    #[serde(serialize_with = "as_json")]
    pub apollo_raw: Option<String>,
}

fn as_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let parsed: Option<Value> = v.as_deref().and_then(|t| serde_json::from_str(t).ok());
    parsed.serialize(s)
}

/// Companies by enrichment status, as `status` shows them for a CRM source.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CompanyCounts {
    /// All of the tenant's companies.
    pub total: i64,
    /// Enriched with data.
    pub enriched: i64,
    /// Looked up; the provider had nothing (expected for small or new companies).
    pub no_data: i64,
    /// Not looked up yet.
    pub pending: i64,
}

/// A company as HubSpot describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubspotCompany {
    /// HubSpot's record id.
    pub id: String,
    /// Normalised domain.
    pub domain: String,
    /// Name.
    pub name: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Number of employees.
    pub employee_count: Option<i64>,
    /// Country.
    pub country: Option<String>,
    /// Contacts (JSON array).
    pub contacts: Value,
    /// Last modified in HubSpot.
    pub updated_at: Option<DateTime<Utc>>,
    /// All properties as sent.
    pub raw: Value,
}

/// What Apollo.io knows of one domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    /// Normalised domain.
    pub domain: String,
    /// Name.
    pub name: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Estimated number of employees.
    pub employee_count: Option<i64>,
    /// Country.
    pub country: Option<String>,
    /// The organization object as sent.
    pub raw: Value,
}

/// Lower-case host of a domain or URL, without `www.` and a trailing dot; `None` when it is
/// not a plausible domain.
pub fn normalize_domain(input: &str) -> Option<String> {
    let s = input.trim().to_ascii_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    let host = s.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host).trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    let ok = host.contains('.')
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then(|| host.to_string())
}

const COLUMNS: &str =
    "tenant, domain, name, hubspot_id, industry, employee_count, country, contacts,
    enrichment_status, enriched_at, hubspot_updated_at, hubspot_raw, apollo_raw";

impl Store {
    /// Adds companies (domain, name) for a tenant; existing ones keep their data and get the
    /// name if they had none. Returns how many were new.
    pub async fn import_companies(
        &self,
        tenant: &str,
        rows: &[(String, Option<String>)],
    ) -> sqlx::Result<u64> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("companies/{tenant}"))
            .await?;
        let mut added = 0;
        for (domain, name) in rows {
            let existed: Option<(i64,)> =
                db::query_as("SELECT 1 FROM companies WHERE tenant = ? AND domain = ?")
                    .bind(tenant)
                    .bind(domain)
                    .fetch_optional(&mut tx)
                    .await?;
            db::query(
                "INSERT INTO companies (tenant, domain, name, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (tenant, domain) DO UPDATE SET
                     name = COALESCE(companies.name, excluded.name)",
            )
            .bind(tenant)
            .bind(domain)
            .bind(name)
            .bind(now)
            .bind(now)
            .execute(&mut tx)
            .await?;
            if existed.is_none() {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Stores a page of HubSpot companies in one transaction; a company whose data differs
    /// from what was stored gets a change record. Returns how many changed.
    pub async fn upsert_hubspot_companies(
        &self,
        tenant: &str,
        crm: &str,
        run: &str,
        companies: &[HubspotCompany],
    ) -> sqlx::Result<u64> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("companies/{tenant}"))
            .await?;
        let mut changed = 0;
        for c in companies {
            let contacts = c.contacts.to_string();
            let raw = c.raw.to_string();
            // A change is a change of what we keep, not of HubSpot's bookkeeping (an edit
            // that touched other properties moves hs_lastmodifieddate only).
            type Kept = (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<String>,
                Option<String>,
            );
            let before: Option<Kept> = db::query_as(
                "SELECT name, hubspot_id, industry, employee_count, country, contacts
                 FROM companies WHERE tenant = ? AND domain = ?",
            )
            .bind(tenant)
            .bind(&c.domain)
            .fetch_optional(&mut tx)
            .await?;
            let now_kept: Kept = (
                c.name.clone(),
                Some(c.id.clone()),
                c.industry.clone(),
                c.employee_count,
                c.country.clone(),
                Some(contacts.clone()),
            );
            let differs = before.is_none_or(|b| b != now_kept);
            db::query(
                "INSERT INTO companies (tenant, domain, name, hubspot_id, industry, employee_count,
                     country, contacts, hubspot_raw, hubspot_updated_at, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (tenant, domain) DO UPDATE SET
                     name = COALESCE(excluded.name, companies.name),
                     hubspot_id = excluded.hubspot_id,
                     industry = COALESCE(excluded.industry, companies.industry),
                     employee_count = COALESCE(excluded.employee_count, companies.employee_count),
                     country = COALESCE(excluded.country, companies.country),
                     contacts = excluded.contacts,
                     hubspot_raw = excluded.hubspot_raw,
                     hubspot_updated_at = excluded.hubspot_updated_at,
                     updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(&c.domain)
            .bind(&c.name)
            .bind(&c.id)
            .bind(&c.industry)
            .bind(c.employee_count)
            .bind(&c.country)
            .bind(&contacts)
            .bind(&raw)
            .bind(c.updated_at)
            .bind(now)
            .bind(now)
            .execute(&mut tx)
            .await?;
            if differs {
                changed += 1;
                let data = serde_json::json!({
                    "domain": c.domain,
                    "name": c.name,
                    "hubspot_id": c.id,
                    "industry": c.industry,
                    "employee_count": c.employee_count,
                    "country": c.country,
                    "contacts": c.contacts,
                    "source": "hubspot",
                });
                record_change(&mut tx, tenant, crm, run, &c.domain, &data, now).await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Up to `limit` domains that were never looked up or were looked up before `before`,
    /// oldest first.
    pub async fn companies_to_enrich(
        &self,
        tenant: &str,
        before: DateTime<Utc>,
        limit: i64,
    ) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = db::query_as(
            "SELECT domain FROM companies
             WHERE tenant = ? AND (enrichment_status = 'pending' OR enriched_at < ?)
             ORDER BY enriched_at IS NOT NULL, enriched_at, domain
             LIMIT ?",
        )
        .bind(tenant)
        .bind(before)
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Stores the answers for a batch of looked-up domains in one transaction: found ones are
    /// `enriched` (with a change record), the rest `no_data`. Returns (enriched, no_data).
    pub async fn record_enrichment(
        &self,
        tenant: &str,
        crm: &str,
        run: &str,
        looked_up: &[String],
        found: &[Enrichment],
    ) -> sqlx::Result<(u64, u64)> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("companies/{tenant}"))
            .await?;
        let (mut enriched, mut no_data) = (0, 0);
        for domain in looked_up {
            match found.iter().find(|e| &e.domain == domain) {
                Some(e) => {
                    enriched += 1;
                    db::query(
                        "UPDATE companies SET
                             name = COALESCE(name, ?),
                             industry = COALESCE(?, industry),
                             employee_count = COALESCE(?, employee_count),
                             country = COALESCE(?, country),
                             apollo_raw = ?, enrichment_status = 'enriched',
                             enriched_at = ?, updated_at = ?
                         WHERE tenant = ? AND domain = ?",
                    )
                    .bind(&e.name)
                    .bind(&e.industry)
                    .bind(e.employee_count)
                    .bind(&e.country)
                    .bind(e.raw.to_string())
                    .bind(now)
                    .bind(now)
                    .bind(tenant)
                    .bind(domain)
                    .execute(&mut tx)
                    .await?;
                    let data = serde_json::json!({
                        "domain": e.domain,
                        "name": e.name,
                        "industry": e.industry,
                        "employee_count": e.employee_count,
                        "country": e.country,
                        "source": "apollo",
                    });
                    record_change(&mut tx, tenant, crm, run, domain, &data, now).await?;
                }
                None => {
                    no_data += 1;
                    // A company that had data keeps it; the lookup time moves on either way.
                    db::query(
                        "UPDATE companies SET
                             enrichment_status = CASE WHEN enrichment_status = 'enriched'
                                 THEN 'enriched' ELSE 'no_data' END,
                             enriched_at = ?, updated_at = ?
                         WHERE tenant = ? AND domain = ?",
                    )
                    .bind(now)
                    .bind(now)
                    .bind(tenant)
                    .bind(domain)
                    .execute(&mut tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok((enriched, no_data))
    }

    /// A tenant's companies by enrichment status.
    pub async fn company_counts(&self, tenant: &str) -> sqlx::Result<CompanyCounts> {
        let rows: Vec<(String, i64)> = db::query_as(
            "SELECT enrichment_status, COUNT(*) FROM companies WHERE tenant = ?
             GROUP BY enrichment_status",
        )
        .bind(tenant)
        .fetch_all(self.db())
        .await?;
        let mut c = CompanyCounts::default();
        for (status, n) in rows {
            c.total += n;
            match status.as_str() {
                "enriched" => c.enriched = n,
                "no_data" => c.no_data = n,
                _ => c.pending += n,
            }
        }
        Ok(c)
    }

    /// A tenant's companies, by domain.
    pub async fn companies(&self, tenant: &str) -> sqlx::Result<Vec<Company>> {
        db::query_as::<Company>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM companies WHERE tenant = ? ORDER BY domain"
        )))
        .bind(tenant)
        .fetch_all(self.db())
        .await
    }

    /// Change records of a CRM source (oldest first): (domain, change, data).
    pub async fn company_changes(
        &self,
        tenant: &str,
        crm: &str,
    ) -> sqlx::Result<Vec<(String, String, String)>> {
        db::query_as(
            "SELECT domain, change, data FROM company_changes WHERE tenant = ? AND crm = ?
             ORDER BY id",
        )
        .bind(tenant)
        .bind(crm)
        .fetch_all(self.db())
        .await
    }
}

async fn record_change(
    tx: &mut db::Tx,
    tenant: &str,
    crm: &str,
    run: &str,
    domain: &str,
    data: &Value,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    db::query(
        "INSERT INTO company_changes (tenant, crm, run, domain, change, data, recorded_at)
         VALUES (?, ?, ?, ?, 'enriched', ?, ?)",
    )
    .bind(tenant)
    .bind(crm)
    .bind(run)
    .bind(domain)
    .bind(data.to_string())
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_domain;

    #[test]
    fn domains_are_normalised_from_what_people_type() {
        for (input, want) in [
            ("Example.COM", Some("example.com")),
            ("https://www.example.com/about?x=1", Some("example.com")),
            ("http://shop.example.co.uk:8080", Some("shop.example.co.uk")),
            ("www.example.com.", Some("example.com")),
            ("  acme.io ", Some("acme.io")),
            ("localhost", None),
            ("", None),
            ("not a domain.com", None),
        ] {
            assert_eq!(normalize_domain(input).as_deref(), want, "{input}");
        }
    }
}
