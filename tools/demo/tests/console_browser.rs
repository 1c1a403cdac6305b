//! The web console in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver, `fantoccini`), against the demo on
//! moto (services and api in this process, the api's dev issuer as the
//! OIDC issuer). Signs in through the dev issuer's page as acme admin,
//! checks that every page loads with the expected numbers (the overview's
//! month to date equals the api's and kopterctl's, the cost page's CSV is
//! the api's CSV, the inventory's kind filter narrows the table, the audit
//! log opens a raw record), that a console form without its CSRF token is
//! refused, that acme's session cannot open a globex resource, and that
//! sign-out ends the session. A screenshot of every page visited goes to the run
//! directory (printed; under `.run/`, never committed).
//!
//! Page checks are one helper each ([`Console`]'s methods): add one per
//! page and call it from the test.
//!
//! Needs `chromium` and `chromedriver` (`scripts/deps-chromium.sh`,
//! called by `make test`): without them the test fails, naming the
//! install command — it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use kopter_demo::{Demo, DemoAccount, Mode, Options};
use kopter_tests::{endpoint, random_account, unique};
use serde_json::json;

const INSTALL: &str = "scripts/deps-chromium.sh (apt-get install chromium chromium-driver)";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The absolute path of `program` on `PATH`; panics with the install
/// command when it is missing.
fn require(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed; the console's browser test needs it: run {INSTALL}")
        })
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(binary: &Path, log: &Path) -> Driver {
        let port = free_port();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium as root on a closed network: no sandbox (root), no
/// GPU, and none of the background connections (component updates,
/// sync, QUIC probes) that a network without internet refuses.
async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// The console in the browser, with a screenshot of every page visited.
struct Console {
    client: Client,
    base: String,
    shots: PathBuf,
    taken: usize,
}

impl Console {
    async fn goto(&mut self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn shot(&mut self, name: &str) {
        self.taken += 1;
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).unwrap();
    }

    /// Opening the console signed out ends on the dev issuer's sign-in
    /// page (via `/console/sign-in`).
    async fn expect_sign_in_page(&mut self, from: &str) {
        self.goto(from).await;
        let path = self.path().await;
        assert!(
            path.starts_with("/dev-issuer/authorize?"),
            "{from} signed out should end on the sign-in page, not {path}"
        );
        let text = self.text().await;
        assert!(text.contains("acme admin"), "{text}");
        self.shot("dev-issuer-sign-in").await;
    }

    /// The dev issuer's button `id` → back on `expect_path`, signed in.
    async fn choose(&mut self, id: &str, expect_path: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("button #{id}: {e}"))
            .click()
            .await
            .unwrap();
        self.wait_for_path(expect_path).await;
    }

    async fn wait_for_path(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let path = self.path().await;
            if path == want {
                return;
            }
            assert!(Instant::now() < deadline, "stuck on {path}, want {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The session cookie's ID token (the console's session is the token).
    async fn token(&self) -> String {
        self.client
            .get_named_cookie("kopter_session")
            .await
            .expect("the session cookie")
            .value()
            .to_owned()
    }

    /// `GET path` outside the browser: with the session cookie (a console
    /// page) or as a bearer token (the JSON api) → (status, body).
    async fn fetch(&self, path: &str, bearer: bool) -> (u16, String) {
        let token = self.token().await;
        let req = reqwest::Client::new().get(format!("{}{path}", self.base));
        let req = if bearer {
            req.bearer_auth(token)
        } else {
            req.header("cookie", format!("kopter_session={token}"))
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .attr(name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{css} has no {name}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The overview, signed in to `tenant`: its month-to-date total equals
    /// the JSON api's daily series by account (summed) and what
    /// `kopterctl cost` prints for the same days (`kopterctl` = the
    /// operator's view over the same DynamoDB rows).
    async fn check_overview(&mut self, tenant: &str, kopterctl: &Kopterctl, expect_cost: bool) {
        self.goto("/console/").await;
        assert_eq!(self.path().await, "/console", "/console/ redirects");
        assert_eq!(self.path().await, "/console", "signed in: no redirect");
        let text = self.text().await;
        assert!(text.contains(tenant), "overview of {tenant}: {text}");
        assert!(self.count("svg").await > 0, "the 48-hour chart is drawn");
        let shown: f64 = self
            .attr("#month-to-date .big", "data-usd")
            .await
            .parse()
            .unwrap();
        let now = Utc::now();
        let month_start = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .unwrap();
        let tomorrow = (now + chrono::Duration::days(1)).format("%Y-%m-%d");
        let (status, ndjson) = self
            .fetch(
                &format!(
                    "/v1/cost?granularity=day&by=account&from={}&to={tomorrow}T00:00:00Z&format=ndjson",
                    month_start.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                true,
            )
            .await;
        assert_eq!(status, 200, "{ndjson}");
        let api: f64 = ndjson
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|p| p["cost_usd"].as_f64())
            .sum();
        let cli: f64 = kopterctl
            .json(&[
                "cost",
                "--tenant",
                tenant,
                "--granularity",
                "day",
                "--by",
                "account",
                "--from",
                &month_start.format("%Y-%m-%d").to_string(),
                "--format",
                "json",
            ])
            .await
            .as_array()
            .expect("kopterctl cost --format json prints an array")
            .iter()
            .map(|p| p["cost_usd"].as_f64().unwrap())
            .sum();
        assert!(
            (shown - api).abs() < 1e-9 && (api - cli).abs() < 1e-9,
            "month to date: console {shown}, api {api}, kopterctl {cli}"
        );
        if expect_cost {
            assert!(shown > 0.0, "the demo's priced hours are this month's");
        }
        self.shot("overview").await;
    }

    /// The cost page draws its chart and table, and its CSV link (fetched
    /// with the session) is byte for byte the api's CSV for the same
    /// parameters.
    async fn check_cost(&mut self) {
        self.goto("/console/cost").await;
        assert!(self.count("#cost-table tbody tr").await > 0, "cost rows");
        assert!(self.count("svg").await > 0, "the cost chart");
        let href = self.attr("a#csv", "href").await;
        let href = href.strip_prefix(&self.base).unwrap_or(&href).to_owned();
        let query = href
            .strip_prefix("/console/cost.csv?")
            .unwrap_or_else(|| panic!("csv link {href}"));
        let (status, console_csv) = self.fetch(&href, false).await;
        assert_eq!(status, 200, "{console_csv}");
        let (status, api_csv) = self
            .fetch(&format!("/v1/cost?{query}&format=csv"), true)
            .await;
        assert_eq!(status, 200, "{api_csv}");
        assert!(console_csv.lines().count() > 1, "{console_csv}");
        assert_eq!(console_csv, api_csv, "the console's CSV is the api's");
        self.shot("cost").await;
    }

    /// The inventory's Kind filter, chosen in the form and submitted,
    /// narrows the table to that kind.
    async fn check_inventory_filter(&mut self) {
        self.goto("/console/inventory").await;
        let all = self.count("#inventory-table tbody tr").await;
        self.shot("inventory").await;
        self.client
            .find(Locator::Css("select[name=kind] option[value=volume]"))
            .await
            .expect("the kind filter")
            .click()
            .await
            .unwrap();
        self.client
            .find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.path().await.contains("kind=volume") {
            assert!(Instant::now() < deadline, "the filter did not submit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kinds = self
            .column_texts("#inventory-table tbody tr td:nth-child(5)")
            .await;
        assert!(!kinds.is_empty(), "the demo has volumes");
        assert!(kinds.iter().all(|k| k == "volume"), "{kinds:?}");
        assert!(kinds.len() < all, "{} of {all} rows: narrowed", kinds.len());
        self.shot("inventory-volumes").await;
    }

    async fn column_texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    /// The session's own resource: its page answers 200 with its state
    /// history.
    async fn check_resource(&mut self, id: &str) {
        self.goto(&format!("/console/resources/{id}")).await;
        let (status, _) = self.fetch(&format!("/console/resources/{id}"), false).await;
        assert_eq!(status, 200);
        assert!(self.text().await.contains(id));
        assert!(self.count("#history li").await > 0, "a state history");
        self.shot("resource").await;
    }

    /// The audit log lists the demo's CloudTrail records and a record page
    /// shows the raw record.
    async fn check_audit(&mut self) {
        self.goto("/console/audit").await;
        let rows = self.count("#audit-table tbody tr a").await;
        assert!(rows > 0, "the demo's trail records are listed");
        self.shot("audit").await;
        let first = self.attr("#audit-table tbody tr a", "href").await;
        self.client
            .goto(&if first.starts_with("http") {
                first
            } else {
                format!("{}{first}", self.base)
            })
            .await
            .unwrap();
        let raw = self
            .client
            .find(Locator::Id("raw"))
            .await
            .expect("the raw record")
            .text()
            .await
            .unwrap();
        let raw: serde_json::Value = serde_json::from_str(&raw).expect("the raw record is JSON");
        assert!(raw["eventID"].is_string(), "{raw}");
        self.shot("audit-record").await;
    }

    /// Notifications and (admin) settings load.
    async fn check_notifications_and_settings(&mut self) {
        self.goto("/console/notifications").await;
        assert!(self.count("#notifications-table").await == 1);
        self.shot("notifications").await;
        self.goto("/console/settings").await;
        assert!(self.count("#budget-form").await == 1, "admin settings");
        self.shot("settings").await;
    }

    /// A same-origin form posted without the CSRF token (built in the page
    /// by the WebDriver, which the page's CSP does not govern) is refused,
    /// and the session lives on.
    async fn check_form_without_csrf_is_refused(&mut self) {
        self.goto("/console").await;
        self.client
            .execute(
                "const f = document.createElement('form');
                 f.method = 'post'; f.action = '/console/sign-out';
                 const i = document.createElement('input');
                 i.type = 'hidden'; i.name = 'note'; i.value = 'no token';
                 f.appendChild(i); document.body.appendChild(f); f.submit();",
                vec![],
            )
            .await
            .expect("submit a form");
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = self.text().await;
            if text.contains("Form refused") || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(text.contains("Form refused"), "{text}");
        self.shot("form-without-csrf-refused").await;
        self.goto("/console").await;
        assert_eq!(self.path().await, "/console", "still signed in");
    }

    /// `/console/resources/{id}` of another tenant's resource: the browser
    /// is not sent to sign in (the session holds), the answer is 404, and
    /// the session's own token, used against the JSON api, finds the same
    /// id missing while it finds `own_id` — so the 404 is tenancy, not an
    /// absent page.
    async fn check_foreign_resource_is_404(&mut self, foreign_id: &str, own_id: &str) {
        self.goto(&format!("/console/resources/{foreign_id}")).await;
        assert_eq!(
            self.path().await,
            format!("/console/resources/{foreign_id}")
        );
        self.shot("foreign-resource").await;
        let token = self.token().await;
        let http = reqwest::Client::new();
        let status = |path: String| {
            let http = http.clone();
            let url = format!("{}{path}", self.base);
            let token = token.clone();
            async move {
                let cookie = http
                    .get(&url)
                    .header("cookie", format!("kopter_session={token}"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                let bearer = http
                    .get(url.replace("/console/resources/", "/v1/resources/"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                (cookie, bearer)
            }
        };
        let (page, api) = status(format!("/console/resources/{foreign_id}")).await;
        assert_eq!(page.as_u16(), 404, "the console page");
        assert_eq!(api.as_u16(), 404, "the api with the console's session");
        let (_, api) = status(format!("/console/resources/{own_id}")).await;
        assert_eq!(api.as_u16(), 200, "the session's own tenant's resource");
    }

    /// Sign-out (the form with the session's CSRF token) ends the session:
    /// the overview sends the browser to sign in again.
    async fn check_sign_out(&mut self) {
        self.goto("/console/sign-out").await;
        self.shot("sign-out").await;
        self.client
            .find(Locator::Id("sign-out"))
            .await
            .expect("the sign-out button")
            .click()
            .await
            .unwrap();
        self.wait_for_path("/console/signed-out").await;
        self.shot("signed-out").await;
        assert!(
            self.client
                .get_named_cookie("kopter_session")
                .await
                .is_err(),
            "the session cookie is gone"
        );
        self.expect_sign_in_page("/console").await;
    }
}

/// target/debug (this test runs from target/debug/deps; `make test`
/// builds the binaries first).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn month_start() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap()
}

/// The operator's CLI, configured for the demo's environment.
struct Kopterctl {
    bin: PathBuf,
    vars: Vec<(String, String)>,
}

impl Kopterctl {
    async fn json(&self, args: &[&str]) -> serde_json::Value {
        assert!(
            self.bin.is_file(),
            "{} is missing: run `cargo build --workspace --bins` (make test does)",
            self.bin.display()
        );
        let out = tokio::process::Command::new(&self.bin)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "kopterctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "kopterctl {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_real_browser_shows_the_apis_numbers_and_keeps_tenants_apart() {
    let chromium = require("chromium");
    let chromedriver = require("chromedriver");

    let run_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.run")
        .join(unique("console-browser-"));
    std::fs::create_dir_all(&run_dir).unwrap();
    let run_dir = run_dir.canonicalize().unwrap();
    println!(
        "console browser test: screenshots and logs in {}",
        run_dir.display()
    );

    let mut opts = Options::standard(endpoint(), Mode::InProcess);
    // Only the fixed-list tenants: this test's figures are about them.
    opts.org = None;
    opts.env = unique("t-");
    opts.accounts = vec![
        DemoAccount {
            tenant: "acme".into(),
            account: random_account(),
            label: "prod".into(),
        },
        DemoAccount {
            tenant: "globex".into(),
            account: random_account(),
            label: "prod".into(),
        },
    ];
    opts.first_port = free_port() + 1;
    opts.api_port = free_port();
    opts.run_dir = run_dir.clone();
    opts.verbose = false;
    opts.settle_timeout = Duration::from_secs(300);
    let mut demo = Demo::up(opts).await.expect("the demo comes up and settles");
    let instance_of = |i: usize| {
        demo.estate[&demo.opts.accounts[i].account].instances[0]
            .1
            .clone()
    };
    let (acme_id, globex_id) = (instance_of(0), instance_of(1));

    let kopterctl = Kopterctl {
        bin: bin_dir().join("kopterctl"),
        vars: kopter_demo::config_keys::env_vars(&demo.config, None),
    };
    let driver = Driver::start(&chromedriver, &run_dir.join("chromedriver.log")).await;
    let client = browser(&driver, &chromium, &run_dir.join("chromium-profile")).await;
    let mut console = Console {
        client,
        base: demo.config.api.public_url.clone(),
        shots: run_dir.clone(),
        taken: 0,
    };

    let steps = async {
        console.expect_sign_in_page("/console").await;
        console.choose("signin-acme-admin", "/console").await;
        console
            .check_overview("acme", &kopterctl, demo.period_from >= month_start())
            .await;
        console.check_cost().await;
        console.check_inventory_filter().await;
        console.check_resource(&acme_id).await;
        console.check_audit().await;
        console.check_notifications_and_settings().await;
        console.check_form_without_csrf_is_refused().await;
        console
            .check_foreign_resource_is_404(&globex_id, &acme_id)
            .await;
        console.check_sign_out().await;
    };
    // Close the browser and stop the demo whatever happened, then report.
    let outcome = tokio::time::timeout(Duration::from_secs(300), steps).await;
    let _ = console.client.clone().close().await;
    drop(driver);
    demo.down().await;
    println!(
        "console browser test: {} screenshots in {}",
        console.taken,
        run_dir.display()
    );
    outcome.expect("the browser steps finish within 5 minutes");
}
