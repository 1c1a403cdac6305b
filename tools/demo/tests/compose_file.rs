//! `compose.yaml` against the workspace: every Kopter container runs a
//! workspace binary that the image contains, sets only real configuration
//! keys, and exposes the port its service's configuration listens on.
//! (`make compose-check` validates the file itself with `docker-compose
//! config`.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use kopter_demo::config_keys::known_env_vars;
use kopter_schema::Service;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("compose.yaml")).expect("compose.yaml");
    let mut v: Value = serde_yaml::from_str(&text).expect("compose.yaml is YAML");
    v.apply_merge().expect("merge keys resolve");
    // Anchors inside a merged mapping are merged by a second pass.
    v.apply_merge().expect("merge keys resolve");
    v
}

/// Binaries of the workspace (`cargo metadata`).
fn workspace_binaries() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_services_match_binaries_config_keys_and_ports() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    let binaries = workspace_binaries();
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let keys: BTreeSet<String> = known_env_vars().into_iter().collect();
    // Variables the AWS SDK reads itself.
    let aws_vars = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    let mut ours = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        // Every published port is bound to the loopback interface only.
        for p in str_list(&svc["ports"]) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: port {p} not bound to 127.0.0.1"
            );
        }
        if svc["image"].as_str() != Some("kopter:local") {
            continue;
        }
        ours += 1;
        assert_eq!(
            svc["build"]["dockerfile"].as_str(),
            Some("docker/Dockerfile"),
            "{name}"
        );
        let command = str_list(&svc["command"]);
        let bin = command
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"));
        assert!(
            binaries.contains(bin),
            "{name}: {bin} is not a workspace binary ({binaries:?})"
        );
        assert!(
            dockerfile.contains(&format!(" {bin} ")) || dockerfile.contains(&format!(" {bin};")),
            "{name}: the image does not copy {bin}"
        );
        let env = svc["environment"].as_mapping().cloned().unwrap_or_default();
        for (k, _) in &env {
            let k = k.as_str().unwrap();
            assert!(
                keys.contains(k) || aws_vars.contains(&k),
                "{name}: {k} is not a configuration key"
            );
        }
        if let Ok(service) = name.parse::<Service>() {
            assert_eq!(command, vec![service.name().to_owned()], "{name}: command");
            let port = service.default_http_port();
            let listen = env
                .get(Value::from("KOPTER_TELEMETRY__LISTEN"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{name}: no KOPTER_TELEMETRY__LISTEN"));
            assert_eq!(listen, format!("0.0.0.0:{port}"), "{name}");
            assert_eq!(
                str_list(&svc["ports"]),
                vec![format!("127.0.0.1:{port}:{port}")],
                "{name}"
            );
            assert_eq!(
                svc["depends_on"]["bootstrap"]["condition"].as_str(),
                Some("service_completed_successfully"),
                "{name}"
            );
            let test = str_list(&svc["healthcheck"]["test"]);
            assert!(
                test.iter().any(|t| t.ends_with("kopter-healthcheck")),
                "{name}: {test:?}"
            );
            assert_eq!(svc["stop_signal"].as_str(), Some("SIGTERM"), "{name}");
            assert!(svc["stop_grace_period"].as_str().is_some(), "{name}");
        }
    }
    // The five services, the api, the bootstrap and the price-file server.
    assert_eq!(ours, 8);
    for s in Service::ALL {
        assert!(
            services.contains_key(Value::from(s.name())),
            "{} missing",
            s.name()
        );
    }
    assert_eq!(
        str_list(&c["services"]["bootstrap"]["command"]),
        ["kopterctl", "bootstrap"]
    );

    // The api: its own ports (the config's defaults), the dev issuer on
    // with its key on a named volume, the same drain and health check as
    // the services.
    let api = &c["services"]["api"];
    assert_eq!(str_list(&api["command"]), ["api"]);
    let defaults = kopter_runtime::Config::api_defaults();
    let env = |k: &str| {
        api["environment"][k]
            .as_str()
            .unwrap_or_else(|| panic!("api: no {k}"))
            .to_owned()
    };
    let http = defaults.api.listen.port();
    let telemetry = defaults.telemetry.listen.port();
    assert_eq!(env("KOPTER_API__LISTEN"), format!("0.0.0.0:{http}"));
    assert_eq!(
        env("KOPTER_TELEMETRY__LISTEN"),
        format!("0.0.0.0:{telemetry}")
    );
    assert_eq!(
        str_list(&api["ports"]),
        [
            format!("127.0.0.1:{http}:{http}"),
            format!("127.0.0.1:{telemetry}:{telemetry}")
        ]
    );
    assert_eq!(env("KOPTER_API__DEV_ISSUER"), "true");
    // Tokens carry {public_url}/dev-issuer as `iss`: the URL the host uses.
    assert_eq!(
        env("KOPTER_API__PUBLIC_URL"),
        format!("http://127.0.0.1:{http}")
    );
    let key = env("KOPTER_API__DEV_ISSUER_KEY_FILE");
    let volume = str_list(&api["volumes"])
        .into_iter()
        .find(|v| key.starts_with(&format!("{}/", v.split(':').nth(1).unwrap_or("-"))))
        .unwrap_or_else(|| panic!("api: {key} is not on a volume"));
    let name = volume.split(':').next().unwrap();
    assert!(
        c["volumes"]
            .as_mapping()
            .is_some_and(|v| v.contains_key(Value::from(name))),
        "api: {name} is not a named volume"
    );
    // The image makes that directory writable by its user.
    let dir = volume.split(':').nth(1).unwrap();
    assert!(
        dockerfile.contains(&format!("--chown=nonroot:nonroot /state {dir}")),
        "the image does not create {dir} for nonroot"
    );
    assert_eq!(api["stop_signal"].as_str(), Some("SIGTERM"));
    assert_eq!(
        api["depends_on"]["bootstrap"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    // No two services publish the same host port.
    let mut published = BTreeSet::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        for p in str_list(&svc["ports"]) {
            let host = p.rsplit_once(':').unwrap().0.to_owned();
            assert!(
                published.insert(host.clone()),
                "{name}: {host} published twice"
            );
        }
    }
    // The local AWS is pinned; LocalStack, Prometheus and Grafana are opt-in.
    let moto = c["services"]["moto"]["image"].as_str().unwrap();
    assert!(
        moto.starts_with("motoserver/moto:") && !moto.ends_with(":latest"),
        "{moto}"
    );
    for (svc, profile) in [
        ("localstack", "localstack"),
        ("prometheus", "monitoring"),
        ("grafana", "monitoring"),
    ] {
        assert_eq!(
            str_list(&c["services"][svc]["profiles"]),
            [profile],
            "{svc}"
        );
    }
    let volumes = |s: &str| str_list(&c["services"][s]["volumes"]);
    assert!(
        volumes("prometheus")
            .iter()
            .any(|v| v.starts_with("./deploy/prometheus:"))
    );
    // Mounted paths exist in the repository (deploy/ is the monitoring
    // configuration's home).
    for v in volumes("prometheus").iter().chain(&volumes("grafana")) {
        let host = v.split(':').next().unwrap();
        assert!(root().join(host).exists(), "{v}: {host} does not exist");
    }
    assert!(
        volumes("grafana")
            .iter()
            .any(|v| v.starts_with("./deploy/grafana/provisioning:"))
    );
    // The image stops with SIGTERM (the drain) and has a health check.
    assert!(dockerfile.contains("STOPSIGNAL SIGTERM"));
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("USER nonroot"));
}
