//! Loading: defaults, then the file, then `REPRISE__SECTION__KEY` environment
//! overrides; and the keys the config names by environment variable.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use super::{invalid, Config, ConfigError};

impl Config {
    /// Defaults, then the file (if any), then `REPRISE__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("REPRISE__").split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Caller keys from `server.api_keys` plus the `api_keys_env` variable.
    pub fn caller_keys(&self) -> Vec<String> {
        let mut keys = self.server.api_keys.clone();
        keys.extend(keys_from_env(self.server.api_keys_env.as_deref()));
        keys
    }

    /// Admin keys from the `admin_keys_env` variable.
    pub fn admin_keys(&self) -> Vec<String> {
        keys_from_env(self.server.admin_keys_env.as_deref())
    }

    /// Keys that may read `/metrics`, from the `metrics_keys_env` variable.
    pub fn metrics_keys(&self) -> Vec<String> {
        keys_from_env(self.server.metrics_keys_env.as_deref())
    }
}

fn keys_from_env(var: Option<&str>) -> Vec<String> {
    var.and_then(|v| std::env::var(v).ok())
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
