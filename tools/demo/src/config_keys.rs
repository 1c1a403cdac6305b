//! Configuration as environment variables: every key of
//! [`kopter_runtime::Config`] is `KOPTER_` + its path in capitals with `__`
//! between levels (`worker.concurrency` → `KOPTER_WORKER__CONCURRENCY`).
//! The demo passes its configuration to service processes this way, and
//! the compose-file check uses [`known_env_vars`] to refuse variables that
//! are not configuration keys.

use std::collections::BTreeMap;

use kopter_runtime::Config;
use kopter_schema::Service;
use serde_json::Value;

fn walk(prefix: &str, v: &Value, with_nulls: bool, out: &mut BTreeMap<String, Option<String>>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    format!("KOPTER_{}", k.to_uppercase())
                } else {
                    format!("{prefix}__{}", k.to_uppercase())
                };
                walk(&key, v, with_nulls, out);
            }
        }
        Value::Null => {
            if with_nulls {
                out.insert(prefix.to_owned(), None);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_owned(), Some(s.clone()));
        }
        other => {
            out.insert(prefix.to_owned(), Some(other.to_string()));
        }
    }
}

/// `KOPTER_…` variable → value of every set key of `config`.
pub fn flatten(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(config).expect("config serializes"),
        false,
        &mut out,
    );
    out.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Every configuration key as an environment variable (unset options
/// included), plus `KOPTER_CONFIG` (the file's path).
pub fn known_env_vars() -> Vec<String> {
    let mut out = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(Config::defaults(None)).expect("config serializes"),
        true,
        &mut out,
    );
    let mut keys: Vec<String> = out.into_keys().collect();
    keys.push("KOPTER_CONFIG".into());
    keys
}

/// The variables that make a process of `service` (or the all-in-one,
/// `None`) load `config`: every key whose value differs from that
/// process's defaults.
pub fn env_vars(config: &Config, service: Option<Service>) -> Vec<(String, String)> {
    let defaults = flatten(&Config::defaults(service));
    flatten(config)
        .into_iter()
        .filter(|(k, v)| defaults.get(k) != Some(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_paths_with_double_underscores() {
        let keys = known_env_vars();
        for k in [
            "KOPTER_ENV",
            "KOPTER_AWS__ENDPOINT_URL",
            "KOPTER_WORKER__CONCURRENCY",
            "KOPTER_TELEMETRY__LISTEN",
            "KOPTER_PRICING__OFFERS_URL",
            "KOPTER_NOTIFIER__EMAIL_FROM",
            "KOPTER_CONFIG",
        ] {
            assert!(keys.contains(&k.to_owned()), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"KOPTER_WORKER".to_owned()));
    }

    #[test]
    fn env_vars_round_trip_through_the_loader() {
        let mut c = Config::defaults(Some(Service::Pricing));
        c.env = "demo".into();
        c.aws.endpoint_url = Some("http://127.0.0.1:5066".into());
        c.worker.wait_time_seconds = 2;
        c.worker.retry_base = std::time::Duration::from_secs(1);
        c.pricing.allow_http = true;
        c.aggregator.spike_factor = 3.5;
        c.notifier.burst_window = std::time::Duration::ZERO;
        let vars = env_vars(&c, Some(Service::Pricing));
        assert_eq!(vars.len(), 7, "{vars:?}");
        // figment's `Env` parses each value with `Value::from_str`: do the
        // same, as keyed layers over the defaults.
        let mut f = Config::figment(Some(Service::Pricing), "/nonexistent.toml".into());
        for (k, v) in &vars {
            let key = k
                .trim_start_matches("KOPTER_")
                .to_lowercase()
                .replace("__", ".");
            let value: figment::value::Value = v.parse().unwrap();
            f = f.merge(figment::providers::Serialized::default(&key, value));
        }
        let loaded: Config = f.extract().unwrap();
        assert_eq!(loaded, c);
    }
}
