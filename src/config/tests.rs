//! Tests of the configuration: parsing, validation, the shipped files.

use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use super::*;
use crate::cache::ttl::Ttl;

mod parsing {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[cache]\nttll = \"1h\"\n"))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("ttll"), "{err}");
    }

    #[test]
    fn bad_default_provider_is_named() {
        let mut c = Config::default();
        c.routing.default_provider = Some("nope".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("routing.default_provider"), "{err}");
    }

    #[test]
    fn durations_accept_text_and_seconds() {
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[server]\nupstream_timeout = \"2m\"\nconnect_timeout = 3\n[cache]\nttl = \"forever\"\n",
            ))
            .extract()
            .unwrap();
        assert_eq!(c.server.upstream_timeout, Duration::from_secs(120));
        assert_eq!(c.server.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.cache.ttl, Ttl::Forever);
    }

    #[test]
    fn per_tenant_encryption_needs_a_long_enough_secret() {
        use crate::cache::seal::Encryption;
        let mut c = Config::default();
        c.cache.encryption = Encryption::PerTenant;
        let field = |c: &Config| match c.validate() {
            Err(ConfigError::Invalid { field, message }) => format!("{field}: {message}"),
            other => format!("{other:?}"),
        };
        assert!(field(&c).starts_with("cache.encryption_key_env: is required"));
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_SHORT".into());
        std::env::set_var("REPRISE_TEST_SEAL_SHORT", "too short");
        let said = field(&c);
        assert!(said.starts_with("cache.encryption_key_env:"), "{said}");
        assert!(
            said.contains("REPRISE_TEST_SEAL_SHORT") && said.contains("holds 9"),
            "{said}"
        );
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_UNSET".into());
        assert!(field(&c).contains("holds 0"));
        std::env::set_var("REPRISE_TEST_SEAL_LONG", "x".repeat(32));
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_LONG".into());
        c.validate().unwrap();
        assert!(c.cache.sealer().unwrap().is_on());
        let toml = "[cache]\nencryption = \"per-tenant\"\nencryption_key_env = \"X\"\n";
        let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .unwrap();
        assert_eq!(parsed.cache.encryption, Encryption::PerTenant);
    }
}

mod shipped_files {
    use super::*;

    /// The documented defaults file must equal the built-in defaults.
    #[test]
    fn reprise_toml_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reprise.toml");
        let from_file: Config = Figment::from(Toml::file(path)).extract().unwrap();
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}
