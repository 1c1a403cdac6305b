//! The demo's path as a test: the same orchestration as `make demo`
//! (price files, bootstrap, onboarding with roles, estate, CloudTrail
//! files, every service — here inside the test process, as the `kopter`
//! all-in-one runs them — ticks, settling), in its own environment and
//! fresh random accounts on the shared moto; then the report's numbers.

use std::time::Duration;

use kopter_demo::estate::estate_of;
use kopter_demo::{Demo, DemoAccount, Mode, Options};
use kopter_store::inventory::{Resource, ResourceKind};
use kopter_tests::{endpoint, random_account, unique};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_settles_and_reports_inventory_cost_audit_and_notifications() {
    let run_dir = tempfile::tempdir().unwrap();
    let mut opts = Options::standard(endpoint(), Mode::InProcess);
    opts.env = unique("t-");
    opts.accounts = vec![
        DemoAccount {
            tenant: "acme".into(),
            account: random_account(),
            label: "prod".into(),
        },
        DemoAccount {
            tenant: "acme".into(),
            account: random_account(),
            label: "staging".into(),
        },
        DemoAccount {
            tenant: "globex".into(),
            account: random_account(),
            label: "prod".into(),
        },
    ];
    // One tenant comes through `org connect`: a fresh management account
    // (moto keeps one organization per account).
    let management = random_account();
    opts.org = Some(kopter_demo::org::DemoOrg {
        tenant: "initech".into(),
        management: management.clone(),
        members: 2,
    });
    // The in-process services listen on first_port - 1.
    opts.first_port = free_port() + 1;
    // The api runs in process too.
    opts.api_port = free_port();
    opts.run_dir = run_dir.path().to_path_buf();
    opts.verbose = false;
    opts.settle_timeout = Duration::from_secs(300);
    let mut demo = Demo::up(opts).await.expect("the demo comes up and settles");
    let report = demo.report().await.expect("report");
    let text = report.render();
    println!("{text}");

    // Inventory: every instance made, in the state it was left in, under
    // its own tenant and account.
    // Three accounts onboarded one by one, two through the organization.
    assert_eq!(report.accounts.len(), 5);
    let org_accounts = demo.org_accounts();
    assert_eq!(org_accounts.len(), 2, "{org_accounts:?}");
    for rec in demo.records.iter().filter(|r| r.organization.is_some()) {
        assert_eq!(rec.tenant_id.as_str(), "initech");
        assert!(org_accounts.contains(&rec.account_id.to_string()));
        assert_ne!(rec.account_id.as_str(), management);
        assert_eq!(
            rec.organization.as_ref().map(|m| m.as_str()),
            Some(management.as_str())
        );
        assert_eq!(
            rec.role_arn,
            format!("arn:aws:iam::{}:role/KopterAccess", rec.account_id)
        );
        assert_eq!(
            rec.external_id,
            format!("kopter-initech-members-{management}")
        );
    }
    for (n, a) in report.accounts.iter().enumerate() {
        let specs = estate_of(n);
        assert_eq!(
            a.count(ResourceKind::Instance),
            specs.len(),
            "{}",
            a.account
        );
        let stopped = specs.iter().filter(|s| s.stopped).count();
        assert_eq!(a.instances_in("stopped"), stopped, "{}", a.account);
        assert_eq!(
            a.instances_in("running"),
            specs.len() - stopped,
            "{}",
            a.account
        );
        for r in &a.rows {
            assert_eq!(r.account.as_str(), a.account);
            if let Resource::Instance(i) = &r.resource {
                let spec = specs
                    .iter()
                    .find(|s| i.tags.get("Name").map(String::as_str) == Some(s.name))
                    .expect("instance of the estate");
                assert_eq!(i.instance_type, spec.instance_type);
                assert_eq!(
                    i.platform_details == "Windows",
                    spec.windows,
                    "{}",
                    spec.name
                );
                assert_eq!(i.lifecycle == "spot", spec.spot, "{}", spec.name);
            }
        }
        assert!(a.count(ResourceKind::Volume) > a.count(ResourceKind::Instance));
        // Cost: positive, every resource priced, and the account's roll-up
        // equals the sum of its resource rows.
        assert!(a.cost_usd > 0.0, "{} cost {}", a.account, a.cost_usd);
        assert_eq!(a.price_missing, 0, "{}", a.account);
        let by_resource: f64 = a.resource_cost.values().sum();
        assert!(
            (by_resource - a.cost_usd).abs() < 1e-6,
            "{by_resource} vs {}",
            a.cost_usd
        );
        // A running on-demand instance costs something; a stopped one ran
        // for at most seconds.
        let running_od = a
            .rows
            .iter()
            .filter_map(|r| match &r.resource {
                Resource::Instance(i) if i.state == "running" && i.lifecycle == "on-demand" => {
                    Some(a.resource_cost.get(&r.resource_id).copied().unwrap_or(0.0))
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        assert!(running_od.iter().all(|c| *c > 0.0), "{running_od:?}");
    }
    // The tenants' costs equal what the aggregator stored as daily totals.
    let tenants = report.tenant_costs();
    assert_eq!(tenants.len(), 3);
    for (t, c) in &tenants {
        let stored = report.stored_daily_totals[t];
        assert!(
            (c - stored).abs() < 1e-6,
            "{t}: report {c} vs stored {stored}"
        );
    }

    // Audit: every record written is filed once, with findings.
    let acme = &report.audit["acme"];
    let globex = &report.audit["globex"];
    assert!(acme.len() >= 20, "acme audit rows: {}", acme.len());
    assert!(globex.len() >= 10, "globex audit rows: {}", globex.len());
    assert!(acme.iter().all(|r| r.tenant.as_str() == "acme"));
    let findings = |rows: &[kopter_store::audit::AuditRow]| -> Vec<String> {
        rows.iter().flat_map(|r| r.findings.clone()).collect()
    };
    let acme_findings = findings(acme);
    for rule in [
        "console-login-without-mfa",
        "security-group-open-to-world",
        "iam-access-key-created",
        "console-login-failed",
        "iam-user-created",
    ] {
        assert!(
            acme_findings.iter().any(|f| f == rule),
            "{rule}: {acme_findings:?}"
        );
    }
    let globex_findings = findings(globex);
    for rule in ["root-activity", "cloudtrail-stopped"] {
        assert!(
            globex_findings.iter().any(|f| f == rule),
            "{rule}: {globex_findings:?}"
        );
    }

    // Notifications: in each tenant's feed, and posted to its webhook.
    for t in ["acme", "globex"] {
        let feed = &report.notifications[t];
        assert!(!feed.is_empty(), "{t} has no notifications");
        assert!(
            feed.iter()
                .any(|r| format!("{:?}", r.severity) == "Critical"),
            "{t}: no critical notification"
        );
        assert!(report.webhooks[t] >= 1, "{t}: no webhook post");
    }

    // The organization's tenant hears of each member it gained.
    let initech = &report.notifications["initech"];
    let mut joined: Vec<String> = initech
        .iter()
        .filter(|r| r.rule == "org.onboarded")
        .filter_map(|r| r.account.as_ref().map(|a| a.to_string()))
        .collect();
    joined.sort();
    let mut expected = org_accounts.clone();
    expected.sort();
    assert_eq!(joined, expected, "initech feed: {initech:?}");

    // Everything settled: no queue holds a message, no DLQ either.
    for (s, q, dlq) in &report.queues {
        assert_eq!(*q, [0, 0, 0], "{} queue", s.name());
        assert_eq!(*dlq, 0, "{} DLQ", s.name());
    }
    assert!(text.contains("== queues") && text.contains("/metrics"));

    // `.run/demo.env` points another shell at this demo.
    let bin = run_dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = demo.write_env_file(Some(&bin)).unwrap();
    assert_eq!(path, run_dir.path().join("demo.env"));
    let env_file = std::fs::read_to_string(&path).unwrap();
    for line in [
        format!("export KOPTER_ENV={}", demo.config.env),
        format!("export KOPTER_AWS__ENDPOINT_URL={}", endpoint()),
        "export AWS_ACCESS_KEY_ID=testing".into(),
        "export AWS_REGION=us-east-1".into(),
        format!(
            "export KOPTER_DEMO_ORG_ACCOUNTS=\"{}\"",
            org_accounts.join(" ")
        ),
        format!(
            "export PATH=\"{}:$PATH\"",
            std::fs::canonicalize(&bin).unwrap().display()
        ),
    ] {
        assert!(
            env_file.lines().any(|l| l == line),
            "{line:?} in:\n{env_file}"
        );
    }

    let stopped = demo.down().await;
    assert!(stopped.is_empty(), "in-process: no child processes");
}

/// A port the demo needs is taken: `kopter-demo` refuses before starting
/// anything (no moto needed), naming the port, its role and the holder.
#[test]
fn a_busy_port_is_refused_naming_its_holder() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let run_dir = tempfile::tempdir().unwrap();
    // The describer's metrics port is `--first-port`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kopter-demo"))
        .args(["--endpoint", "http://127.0.0.1:9", "--first-port"])
        .arg(port.to_string())
        .arg("--run-dir")
        .arg(run_dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "port {port} (describer metrics) is in use by pid {} (",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(
        !run_dir.path().join("describer.log").exists(),
        "nothing may start"
    );
}
