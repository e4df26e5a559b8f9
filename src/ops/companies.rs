//! The companies CRM enrichment works on: import a CSV list, list what is stored.

use super::pick_tenant;
use crate::catalog::Catalog;
use crate::store::Store;
use crate::store::companies::{Company, normalize_domain};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;

/// The rows of a companies CSV, checked and grouped by tenant: `(domain, name)` pairs.
pub type Rows = BTreeMap<String, Vec<(String, Option<String>)>>;

/// What an import added for one tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The tenant.
    pub tenant: String,
    /// Companies in the file for this tenant.
    pub rows: usize,
    /// Of those, new.
    pub added: u64,
}

/// Reads a CSV file with a `domain` column (and optional `name` and `tenant` columns).
/// Rows without a `tenant` column go to `tenant`, or to the catalog's only tenant. Every
/// row is checked before anything is stored: one bad row refuses the whole file, with the
/// first ten problems named by line.
pub fn read_csv(catalog: &Catalog, file: &Path, tenant: Option<&str>) -> anyhow::Result<Rows> {
    let shown = file.display();
    let default_tenant = pick_tenant(catalog, tenant)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("{shown}: cannot open"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{shown}: cannot read the header row"))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let Some(domain_col) = col("domain") else {
        anyhow::bail!(
            "{shown}: the header row has no `domain` column (found: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let (name_col, tenant_col) = (col("name"), col("tenant"));
    if tenant_col.is_none() && default_tenant.is_none() {
        anyhow::bail!(
            "{shown}: no `tenant` column and the catalog has {} tenants: name one with --tenant",
            catalog.tenants.len()
        );
    }
    let mut by_tenant = Rows::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{shown}: line {line}"))?;
        let raw = record.get(domain_col).unwrap_or("");
        let Some(domain) = normalize_domain(raw) else {
            errors.push(format!("line {line}: `{raw}` is not a domain"));
            continue;
        };
        let t = match tenant_col
            .and_then(|c| record.get(c))
            .filter(|t| !t.is_empty())
        {
            Some(t) => {
                if !catalog.tenants.iter().any(|x| x.name == t) {
                    errors.push(format!("line {line}: unknown tenant `{t}`"));
                    continue;
                }
                t.to_string()
            }
            None => match default_tenant {
                Some(t) => t.to_string(),
                None => {
                    errors.push(format!("line {line}: no tenant"));
                    continue;
                }
            },
        };
        let name = name_col
            .and_then(|c| record.get(c))
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        by_tenant.entry(t).or_default().push((domain, name));
    }
    if !errors.is_empty() {
        let shown_errors: Vec<&str> = errors.iter().take(10).map(String::as_str).collect();
        anyhow::bail!(
            "{shown}: {} row(s) cannot be imported, nothing was imported:\n  {}",
            errors.len(),
            shown_errors.join("\n  ")
        );
    }
    Ok(by_tenant)
}

/// Stores the companies of [`read_csv`]; existing companies keep their data.
pub async fn import(store: &Store, rows: &Rows) -> anyhow::Result<Vec<Imported>> {
    let mut out = Vec::new();
    for (tenant, list) in rows {
        let added = store.import_companies(tenant, list).await?;
        out.push(Imported {
            tenant: tenant.clone(),
            rows: list.len(),
            added,
        });
    }
    Ok(out)
}

/// A tenant's companies with their enrichment status; the tenant may be left out when the
/// catalog has only one.
pub async fn list(
    store: &Store,
    catalog: &Catalog,
    tenant: Option<&str>,
) -> anyhow::Result<(String, Vec<Company>)> {
    let Some(tenant) = pick_tenant(catalog, tenant)? else {
        anyhow::bail!(
            "the catalog has {} tenants: name one with --tenant",
            catalog.tenants.len()
        );
    };
    Ok((tenant.to_string(), store.companies(tenant).await?))
}
