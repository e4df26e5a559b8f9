//! `[[crm]]` entries: HubSpot and Apollo.io sources and where their secrets come from.

use super::{Schedule, SecretRef};
use crate::duration;
use serde::Deserialize;
use std::time::Duration;

/// A CRM source (`[[crm]]`): HubSpot companies and contacts, or Apollo.io enrichment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSpec {
    /// Unique within the tenant (across feeds too).
    pub name: String,
    /// Which service.
    pub provider: CrmProvider,
    /// When it runs.
    pub schedule: Schedule,
    /// A `stale_data` issue is raised when the last success is older than this.
    #[serde(default, with = "duration::option")]
    pub stale_after: Option<Duration>,
    /// The API's base URL (default: the provider's public one).
    #[serde(default)]
    pub base_url: Option<String>,
    /// HubSpot private app: environment variable holding the access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// HubSpot OAuth: the app's client id (not a secret).
    #[serde(default)]
    pub client_id: Option<String>,
    /// HubSpot OAuth: environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// HubSpot OAuth: environment variable holding the refresh token granted at install.
    #[serde(default)]
    pub refresh_token_env: Option<String>,
    /// Apollo.io: environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A stored credential (`"tenant/name"`, see `syncd credentials set`) instead of the
    /// `…_env` keys; its fields are `token` (HubSpot private app), `client_secret` and
    /// `refresh_token` (HubSpot OAuth, with `client_id` in the catalog) or `api_key` (Apollo).
    #[serde(default)]
    pub credential: Option<String>,
}

/// CRM providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmProvider {
    /// HubSpot CRM (private app token or OAuth).
    Hubspot,
    /// Apollo.io organization enrichment (API key).
    Apollo,
}

impl CrmProvider {
    /// The name used in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmProvider::Hubspot => "hubspot",
            CrmProvider::Apollo => "apollo",
        }
    }

    /// The public API base URL.
    pub fn default_base_url(self) -> &'static str {
        match self {
            CrmProvider::Hubspot => "https://api.hubapi.com",
            CrmProvider::Apollo => "https://api.apollo.io",
        }
    }
}

impl CrmSpec {
    /// The API base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(self.provider.default_base_url())
            .trim_end_matches('/')
    }

    /// Every environment variable this source reads a secret from.
    pub fn secret_envs(&self) -> Vec<&str> {
        [
            &self.token_env,
            &self.client_secret_env,
            &self.refresh_token_env,
            &self.api_key_env,
        ]
        .into_iter()
        .filter_map(|e| e.as_deref())
        .collect()
    }

    /// Whether HubSpot is reached with OAuth (a `client_id`) rather than a private app token.
    pub fn is_oauth(&self) -> bool {
        self.client_id.is_some()
    }

    /// The secret fields this source needs, by their stored-credential names.
    pub fn secret_fields(&self) -> &'static [&'static str] {
        match self.provider {
            CrmProvider::Hubspot if self.is_oauth() => &["client_secret", "refresh_token"],
            CrmProvider::Hubspot => &["token"],
            CrmProvider::Apollo => &["api_key"],
        }
    }

    /// Where the secret `field` (`token`, `client_secret`, `refresh_token`, `api_key`) comes
    /// from: the stored credential, or the environment variable its `…_env` key names.
    pub fn secret_ref(&self, field: &str) -> Option<SecretRef> {
        if let Some(credential) = &self.credential {
            return Some(SecretRef::Stored {
                credential: credential.clone(),
                field: field.to_string(),
            });
        }
        let env = match field {
            "token" => &self.token_env,
            "client_secret" => &self.client_secret_env,
            "refresh_token" => &self.refresh_token_env,
            "api_key" => &self.api_key_env,
            _ => &None,
        };
        env.clone().map(SecretRef::Env)
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if self.credential.is_some() {
            if let Some(env) = [
                ("token_env", &self.token_env),
                ("client_secret_env", &self.client_secret_env),
                ("refresh_token_env", &self.refresh_token_env),
                ("api_key_env", &self.api_key_env),
            ]
            .iter()
            .find_map(|(k, v)| v.is_some().then_some(*k))
            {
                return Err(format!(
                    "key `credential` replaces the `…_env` keys: give either `credential` or `{env}`, not both"
                ));
            }
            if self.provider == CrmProvider::Apollo && self.client_id.is_some() {
                return Err(
                    "Apollo takes only `credential` (field `api_key`), no `client_id`".into(),
                );
            }
            return self.check_base_url();
        }
        let oauth = [
            ("client_id", self.client_id.is_some()),
            ("client_secret_env", self.client_secret_env.is_some()),
            ("refresh_token_env", self.refresh_token_env.is_some()),
        ];
        let oauth_count = oauth.iter().filter(|(_, set)| *set).count();
        match self.provider {
            CrmProvider::Hubspot => {
                if self.api_key_env.is_some() {
                    return Err(
                        "key `api_key_env` is for Apollo; HubSpot takes `token_env` (private app) or `client_id`, `client_secret_env` and `refresh_token_env` (OAuth)".into(),
                    );
                }
                match (self.token_env.is_some(), oauth_count) {
                    (true, 0) | (false, 3) => {}
                    (true, _) => {
                        return Err("give either `token_env` (private app) or the OAuth keys `client_id`, `client_secret_env`, `refresh_token_env`, not both".into());
                    }
                    (false, 0) => {
                        return Err("HubSpot needs `token_env` (private app) or `client_id`, `client_secret_env` and `refresh_token_env` (OAuth)".into());
                    }
                    (false, _) => {
                        let missing: Vec<&str> = oauth
                            .iter()
                            .filter(|(_, set)| !set)
                            .map(|(k, _)| *k)
                            .collect();
                        return Err(format!(
                            "OAuth also needs key(s) {}",
                            missing
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
            CrmProvider::Apollo => {
                if self.api_key_env.is_none() {
                    return Err("Apollo needs `api_key_env`".into());
                }
                if self.token_env.is_some() || oauth_count > 0 {
                    return Err("Apollo takes only `api_key_env` (no token or OAuth keys)".into());
                }
            }
        }
        self.check_base_url()?;
        for env in self.secret_envs() {
            if env.is_empty() {
                return Err("an `…_env` key names an empty environment variable".into());
            }
        }
        Ok(())
    }

    fn check_base_url(&self) -> Result<(), String> {
        if let Some(base) = &self.base_url {
            let url = url::Url::parse(base)
                .map_err(|e| format!("key `base_url`: `{base}` is not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "key `base_url`: `{base}` must be an http(s) URL with a host"
                ));
            }
        }
        Ok(())
    }
}
