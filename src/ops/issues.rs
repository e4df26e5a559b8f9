//! The issues log as admins read it.

use crate::store::Store;
use crate::store::issues::{Issue, IssueFilter};

/// Open issues (every issue with `filter.all`), of one tenant or all.
pub async fn list(store: &Store, filter: &IssueFilter) -> anyhow::Result<Vec<Issue>> {
    Ok(store.list_issues(filter).await?)
}
