//! notifier end to end against moto (SNS → filtered queue → worker →
//! DynamoDB feed, SES email) and a local HTTP receiver for webhooks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_runtime::config::Config;
use kopter_runtime::messaging::envelope;
use kopter_runtime::worker::{RunSummary, WorkerSettings};
use kopter_runtime::{Delivery, HandlerError, SqsQueue, Worker};
use kopter_schema::messages::{DailyDigest, SecurityFinding, Severity};
use kopter_schema::{AccountId, Message, Service, TenantId};
use kopter_store::channels::{Channel, ChannelUpdate};
use kopter_tests::{TestEnv, endpoint, eventually, random_account, unique};
use notifier::deliver::{Claim, Dispatch, Markers, SendErrorKind};
use notifier::webhook::{AddressPolicy, Lookup, LookupFuture, WebhookClient, WebhookUrl};
use notifier::{Handled, Notifier, NotifierHandler};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- receiver

/// A local webhook receiver: records every POST per path; answers with the
/// status set for that path (200 by default).
#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    status: Arc<Mutex<HashMap<String, Arc<AtomicU16>>>>,
    /// How long a path takes to answer (default: at once).
    delay: Arc<Mutex<HashMap<String, Duration>>>,
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/hook/{name}", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, addr)
    }

    fn answer(&self, name: &str, status: u16) {
        self.status
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .store(status, Ordering::SeqCst);
    }

    fn slow(&self, name: &str, delay: Duration) {
        self.delay.lock().unwrap().insert(name.to_owned(), delay);
    }

    fn calls(&self, name: &str) -> Vec<serde_json::Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    body: String,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    r.calls.lock().unwrap().push((name.clone(), value));
    let delay = r.delay.lock().unwrap().get(&name).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let status = r
        .status
        .lock()
        .unwrap()
        .get(&name)
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|s| *s != 0)
        .unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        // For the redirect test: where a followed redirect would go.
        [("location", "http://169.254.169.254/latest/meta-data/")],
        "ok",
    )
}

// ------------------------------------------------------------------- setup

struct Setup {
    env: TestEnv,
    notifier: Arc<Notifier>,
    receiver: Receiver,
    addr: SocketAddr,
    /// Unique per test, so emails can be told apart in moto's shared store.
    mail_domain: String,
    ses_region: &'static str,
    /// Emails moto had counted in the region before the test.
    baseline: u64,
}

/// moto's SES send counter of a region (SES v1 `GetSendQuota`).
async fn sent_last_24h(region: &str) -> u64 {
    let resp = reqwest::Client::new()
        .post(endpoint())
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ses/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=GetSendQuota&Version=2010-12-01")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let n = resp
        .split_once("<SentLast24Hours>")
        .and_then(|(_, r)| r.split_once('<'))
        .and_then(|(n, _)| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("GetSendQuota: {resp}"));
    n as u64
}

/// Every test sends email in its own SES region: moto counts sends per
/// region (`GetSendQuota`), which tells one test's emails from another's.
async fn setup(ses_region: &'static str, tweak: impl FnOnce(&mut Config)) -> Setup {
    let mail_domain = format!("{}.example.com", unique("m"));
    let from = format!("kopter@{mail_domain}");
    let env = TestEnv::with(|c| {
        c.notifier.webhook_allow_local = true;
        c.notifier.burst_window = Duration::ZERO;
        c.notifier.email_from = Some(from.clone());
        c.notifier.webhook_timeout = Duration::from_secs(3);
        tweak(c)
    })
    .await;
    let ses = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&env.ctx.aws.sdk)
            .region(aws_sdk_sesv2::config::Region::new(ses_region))
            .build(),
    );
    // moto, like SES, sends only from verified identities.
    ses.create_email_identity()
        .email_identity(&mail_domain)
        .send()
        .await
        .expect("verify the sender domain in moto");
    let (receiver, addr) = Receiver::start().await;
    let mut notifier = notifier::notifier(&env.ctx);
    notifier.deliverer.mailer = notifier::email::Mailer::new(ses, Some(from));
    let baseline = sent_last_24h(ses_region).await;
    Setup {
        env,
        notifier: Arc::new(notifier),
        receiver,
        addr,
        mail_domain,
        ses_region,
        baseline,
    }
}

impl Setup {
    fn tenant(&self, t: &str) -> TenantId {
        TenantId::new(t).unwrap()
    }

    fn hook(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    fn inbox(&self, t: &str) -> String {
        format!("{t}-ops@{}", self.mail_domain)
    }

    /// Gives a tenant a webhook (path `/hook/{tenant}`) and an inbox, both
    /// for every severity.
    async fn channels(&self, t: &str) {
        let url = WebhookUrl::parse(&self.hook(t), AddressPolicy { allow_local: true }).unwrap();
        self.notifier
            .deliverer
            .channels
            .update(
                &self.tenant(t),
                &ChannelUpdate {
                    webhook: Some(Some(url)),
                    webhook_min_severity: Some(Severity::Info),
                    email: Some(vec![self.inbox(t)]),
                    email_min_severity: Some(Severity::Info),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    async fn start(&self) -> (CancellationToken, tokio::task::JoinHandle<RunSummary>) {
        let q = SqsQueue::resolve(self.env.sqs(), &self.env.ctx.names.queue(Service::Notifier))
            .await
            .unwrap();
        let handler = Arc::new(NotifierHandler(self.notifier.clone()));
        let token = CancellationToken::new();
        let settings = WorkerSettings::from(&self.env.config.worker);
        let task = tokio::spawn(Worker::new(Arc::new(q), handler, settings).run(token.clone()));
        (token, task)
    }

    async fn drained(&self) {
        let url = self.env.queue_url(Service::Notifier).await;
        eventually(
            "the notifier queue to drain",
            Duration::from_secs(30),
            || async { (self.env.depth(&url).await == (0, 0)).then_some(()) },
        )
        .await;
    }

    async fn publish(&self, m: Message) {
        self.env.ctx.outbox.publish(&envelope(m)).await.unwrap();
    }

    /// Emails (recipients) SES accepted in this test.
    async fn sent(&self) -> u64 {
        sent_last_24h(self.ses_region).await - self.baseline
    }
}

fn finding(tenant: &str, account: &str, event_id: &str, rule: &str, sev: Severity) -> Message {
    Message::SecurityFinding(SecurityFinding {
        tenant: TenantId::new(tenant).unwrap(),
        account: AccountId::new(account).unwrap(),
        region: "us-east-1".into(),
        rule: rule.into(),
        severity: sev,
        event_id: event_id.into(),
        event_name: "ConsoleLogin".into(),
        principal: Some(format!("arn:aws:iam::{account}:user/mallory")),
        at: "2026-03-04T05:06:07Z".parse().unwrap(),
        summary: "Failed console sign-in".into(),
    })
}

fn delivery(m: Message, receive_count: u32) -> Delivery {
    let env = envelope(m);
    Delivery {
        message_id: env.id.clone(),
        body: env.to_json(),
        receive_count,
        attributes: HashMap::new(),
        sent_at_ms: None,
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn one_event_is_one_feed_row_one_webhook_call_one_email_and_duplicates_add_nothing() {
    let s = setup("eu-north-1", |_| {}).await;
    s.channels("acme").await;
    s.channels("globex").await;
    let acct = random_account();
    let (stop, task) = s.start().await;

    // Through the topic: the notifier's filter policy routes it.
    s.publish(finding(
        "acme",
        &acct,
        "ev-1",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    let acme = s.tenant("acme");
    let rows = eventually("acme's feed row", Duration::from_secs(30), || async {
        let rows = s.notifier.feed.list(&acme, false, 100).await.unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    eventually(
        "the webhook call and the email",
        Duration::from_secs(30),
        || async { (s.receiver.calls("acme").len() == 1 && s.sent().await == 1).then_some(()) },
    )
    .await;
    s.drained().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.kind, "security.finding");
    assert_eq!(row.severity, Severity::Critical);
    assert!(row.unread());
    let audit = row.audit.as_ref().expect("a link to the audit record");
    assert_eq!(audit.pk, "acme#2026-03-04");
    assert_eq!(audit.sk, "2026-03-04T05:06:07.000Z#ev-1");

    let call = &s.receiver.calls("acme")[0];
    let text = call["text"]
        .as_str()
        .expect("Slack-compatible {\"text\": …}");
    assert!(
        text.contains("Failed console sign-in") && text.contains(&acct),
        "{text}"
    );

    // The same finding republished (a new envelope, as trail-ingest does
    // for duplicate records) and redelivered: nothing new anywhere.
    s.publish(finding(
        "acme",
        &acct,
        "ev-1",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    let same = finding("acme", &acct, "ev-1", "root-activity", Severity::Critical);
    let again = s.notifier.handle(&delivery(same, 2)).await.unwrap();
    assert!(
        matches!(again, Handled::Duplicate(Some(ref d)) if d.sent.is_empty() && d.already.len() == 2),
        "{again:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.drained().await;
    assert_eq!(
        s.notifier.feed.list(&acme, false, 100).await.unwrap().len(),
        1
    );
    assert_eq!(s.receiver.calls("acme").len(), 1);
    assert_eq!(s.sent().await, 1);

    // Tenancy: globex saw nothing of it.
    assert!(
        s.notifier
            .feed
            .list(&s.tenant("globex"), false, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.receiver.calls("globex").is_empty());

    // Unread → read.
    assert_eq!(
        s.notifier.feed.list(&acme, true, 100).await.unwrap().len(),
        1
    );
    assert!(s.notifier.feed.mark_read(&acme, &row.sk).await.unwrap());
    assert!(
        s.notifier
            .feed
            .list(&acme, true, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let read = s.notifier.feed.list(&acme, false, 100).await.unwrap();
    assert!(read[0].read_at.is_some() && !read[0].unread());
    // Another tenant cannot mark it (its partition has no such row).
    assert!(
        !s.notifier
            .feed
            .mark_read(&s.tenant("globex"), &row.sk)
            .await
            .unwrap()
    );

    // A routine change is not told; a termination is.
    let change = |c: &str, id: &str| {
        Message::InventoryChanged(kopter_schema::messages::InventoryChanged {
            tenant: acme.clone(),
            account: AccountId::new(acct.clone()).unwrap(),
            region: "eu-west-1".into(),
            resource_id: id.into(),
            resource_kind: "instance".into(),
            change: c.into(),
            at: Utc::now(),
            detail: serde_json::Value::Null,
        })
    };
    let h = s
        .notifier
        .handle(&delivery(change("state_changed", "i-1"), 1))
        .await
        .unwrap();
    assert_eq!(h, Handled::Ignored);
    s.notifier
        .handle(&delivery(change("terminated", "i-2"), 1))
        .await
        .unwrap();
    let rows = s.notifier.feed.list(&acme, false, 100).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].resource.as_deref(),
        Some(format!("{acct}/eu-west-1/i-2").as_str())
    );
    // Both channels take info here.
    assert_eq!(s.receiver.calls("acme").len(), 2);
    assert_eq!(s.sent().await, 2);

    // Metrics: by channel and outcome, no tenant anywhere.
    let text = kopter_runtime::metrics::render();
    assert!(
        text.contains(r#"kopter_notifier_deliveries_total{channel="webhook",outcome="sent"}"#),
        "{text}"
    );
    assert!(text.contains(r#"kopter_notifier_deliveries_total{channel="email",outcome="sent"}"#));
    assert!(!text.contains("acme") && !text.contains("/hook/"));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_burst_is_one_message_with_a_count() {
    let window = Duration::from_secs(12);
    let s = setup("ap-south-1", |c| c.notifier.burst_window = window).await;
    s.channels("acme").await;
    let acct = random_account();
    let (stop, task) = s.start().await;
    // Start right after a window boundary so the burst fits in one window.
    let w = window.as_millis() as i64;
    let now = Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis((w - now.rem_euclid(w) + 100) as u64)).await;
    let n = 20;
    for i in 0..n {
        s.env
            .send_raw(
                &s.env.queue_url(Service::Notifier).await,
                &envelope(finding(
                    "acme",
                    &acct,
                    &format!("login-{i}"),
                    "console-login-failed",
                    Severity::Info,
                ))
                .to_json(),
            )
            .await;
    }
    // One of them again: counted once.
    s.publish(finding(
        "acme",
        &acct,
        "login-3",
        "console-login-failed",
        Severity::Info,
    ))
    .await;
    // Counts per message: "×N" in the text, or one event without it.
    let counted = |calls: &[serde_json::Value]| -> usize {
        calls
            .iter()
            .map(|c| {
                let t = c["text"].as_str().unwrap();
                t.split_once('×')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .map_or(1, |n| n.parse::<usize>().unwrap())
            })
            .sum()
    };
    eventually(
        "every event counted in a delivered message",
        Duration::from_secs(60),
        || async { (counted(&s.receiver.calls("acme")) >= n).then_some(()) },
    )
    .await;
    s.drained().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = s.receiver.calls("acme");
    assert_eq!(counted(&calls), n, "{calls:?}");
    // Sent within one window they are one message; a slow machine may
    // spill into the next window, never more.
    assert!(
        calls.len() <= 2,
        "{} messages for one burst: {calls:?}",
        calls.len()
    );
    let text = calls[0]["text"].as_str().unwrap();
    assert!(text.contains("Failed console sign-in ×"), "{text}");
    assert_eq!(s.sent().await, calls.len() as u64);
    // Every event is in the feed, once, linked to its burst.
    let rows = s
        .notifier
        .feed
        .list(&s.tenant("acme"), false, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), n);
    let bursts: std::collections::HashSet<_> = rows.iter().map(|r| r.burst.clone()).collect();
    assert_eq!(bursts.len(), calls.len());
    assert!(bursts.iter().all(Option::is_some));
    stop.cancel();
    task.await.unwrap();
}

/// One dispatch in several handlers at once (a duplicated event, a burst
/// flush scheduled twice, a redelivered slow message): each channel is sent
/// once; the other handlers wait for the first's outcome and succeed.
#[tokio::test]
async fn one_dispatch_in_four_handlers_at_once_is_sent_once() {
    let s = setup("ap-northeast-1", |_| {}).await;
    s.channels("acme").await;
    // The send takes long enough for every handler to reach it.
    s.receiver.slow("acme", Duration::from_millis(700));
    let d = Dispatch {
        tenant: s.tenant("acme"),
        id: format!("b-{}", unique("race")),
        severity: Severity::Warning,
        subject: "Race".into(),
        text: "one dispatch, four handlers".into(),
        digest: false,
    };
    let dl = &s.notifier.deliverer;
    let (a, b, c, e) = tokio::join!(
        dl.deliver(&d, 1),
        dl.deliver(&d, 1),
        dl.deliver(&d, 1),
        dl.deliver(&d, 1)
    );
    let reports = [a.unwrap(), b.unwrap(), c.unwrap(), e.unwrap()];
    for ch in [Channel::Webhook, Channel::Email] {
        let sent = reports.iter().filter(|r| r.sent.contains(&ch)).count();
        let already = reports.iter().filter(|r| r.already.contains(&ch)).count();
        assert_eq!((sent, already), (1, 3), "{ch:?}: {reports:?}");
    }
    assert_eq!(s.receiver.calls("acme").len(), 1);
    assert_eq!(s.sent().await, 1);
    // A fifth, later: nothing sent.
    let r = dl.deliver(&d, 2).await.unwrap();
    assert!(r.sent.is_empty() && r.already.len() == 2, "{r:?}");
    assert_eq!(s.receiver.calls("acme").len(), 1);
}

/// A handler killed mid-send leaves its lease: the retry waits it out,
/// then sends; the dead handler's release (had it lived) would not undo
/// the delivery.
#[tokio::test]
async fn a_killed_handlers_lease_runs_out_and_the_retry_sends() {
    let s = setup("ap-southeast-2", |_| {}).await;
    s.channels("acme").await;
    let tenant = s.tenant("acme");
    let lease = Duration::from_millis(900);
    let markers = Markers::new(s.env.ctx.aws.dynamodb(), &s.env.ctx.names, 7, lease);
    let mut dl = s.notifier.deliverer.clone();
    dl.markers = markers.clone();
    let id = format!("n-{}", unique("lease"));
    // The killed handler: it holds both channels' leases and never returns.
    let mut dead = Vec::new();
    for ch in [Channel::Webhook, Channel::Email] {
        match markers.claim(&tenant, &id, ch).await.unwrap() {
            Claim::Mine(owner) => dead.push((ch, owner)),
            other => panic!("a fresh marker is free: {other:?}"),
        }
        assert!(matches!(
            markers.claim(&tenant, &id, ch).await.unwrap(),
            Claim::Busy(_)
        ));
    }
    let d = Dispatch {
        tenant: tenant.clone(),
        id: id.clone(),
        severity: Severity::Critical,
        subject: "Lease".into(),
        text: "sent after the lease ran out".into(),
        digest: false,
    };
    let started = std::time::Instant::now();
    let r = dl.deliver(&d, 2).await.unwrap();
    assert!(started.elapsed() >= lease, "{:?}", started.elapsed());
    assert_eq!(r.sent, vec![Channel::Webhook, Channel::Email]);
    assert_eq!(s.receiver.calls("acme").len(), 1);
    assert_eq!(s.sent().await, 1);
    for (ch, owner) in dead {
        markers.release(&tenant, &id, ch, &owner).await.unwrap();
        assert_eq!(
            markers.claim(&tenant, &id, ch).await.unwrap(),
            Claim::Delivered
        );
    }
    // A failed send gives its lease back at once: the next try sends
    // without waiting.
    s.receiver.answer("acme", 503);
    let d2 = Dispatch {
        id: format!("n-{}", unique("lease")),
        ..d
    };
    assert!(matches!(
        dl.deliver(&d2, 1).await,
        Err(HandlerError::Retry(_))
    ));
    s.receiver.answer("acme", 200);
    let started = std::time::Instant::now();
    let r = dl.deliver(&d2, 2).await.unwrap();
    assert!(started.elapsed() < lease, "{:?}", started.elapsed());
    assert_eq!(r.sent, vec![Channel::Webhook], "email went the first time");
    assert_eq!(s.receiver.calls("acme").len(), 3);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_then_dead_lettered_and_other_tenants_go_on() {
    let s = setup("sa-east-1", |c| c.queues.max_receive_count = 3).await;
    s.channels("acme").await;
    s.channels("globex").await;
    s.receiver.answer("acme", 503);
    let (a, g) = (random_account(), random_account());
    let (stop, task) = s.start().await;
    s.publish(finding(
        "acme",
        &a,
        "a-1",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    s.publish(finding(
        "globex",
        &g,
        "g-1",
        "root-activity",
        Severity::Critical,
    ))
    .await;

    // globex is delivered at once, while acme's receiver keeps failing.
    eventually("globex's webhook call", Duration::from_secs(20), || async {
        (s.receiver.calls("globex").len() == 1).then_some(())
    })
    .await;
    let dlq = s.env.dlq_url(Service::Notifier).await;
    eventually(
        "acme's message in the DLQ",
        Duration::from_secs(60),
        || async { (s.env.depth(&dlq).await.0 == 1).then_some(()) },
    )
    .await;
    // Retried up to the limit, not more; the email went out once.
    assert_eq!(s.receiver.calls("acme").len(), 3);
    // acme's email went out once (no retries of a delivered channel),
    // and globex's.
    assert_eq!(s.sent().await, 2);
    let acme = s
        .notifier
        .deliverer
        .channels
        .get(&s.tenant("acme"))
        .await
        .unwrap();
    let failing = acme.failing(Channel::Webhook).expect("marked failing");
    assert!(failing.reason.contains("503"), "{}", failing.reason);
    assert!(!failing.reason.contains("/hook/"), "{}", failing.reason);
    assert!(acme.failing(Channel::Email).is_none());
    let globex = s
        .notifier
        .deliverer
        .channels
        .get(&s.tenant("globex"))
        .await
        .unwrap();
    assert!(globex.failing(Channel::Webhook).is_none());
    // The feed row was written before delivery was tried.
    assert_eq!(
        s.notifier
            .feed
            .list(&s.tenant("acme"), false, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // While marked failing, acme's messages are not attempted: DLQ.
    s.publish(finding(
        "acme",
        &a,
        "a-2",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    eventually(
        "the second message in the DLQ",
        Duration::from_secs(30),
        || async { (s.env.depth(&dlq).await.0 == 2).then_some(()) },
    )
    .await;
    assert_eq!(s.receiver.calls("acme").len(), 3);
    // globex still fine.
    s.publish(finding(
        "globex",
        &g,
        "g-2",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    eventually("globex's second call", Duration::from_secs(20), || async {
        (s.receiver.calls("globex").len() == 2).then_some(())
    })
    .await;

    // Fixed and reset: delivered again, mark gone.
    s.receiver.answer("acme", 200);
    s.notifier
        .deliverer
        .channels
        .update(
            &s.tenant("acme"),
            &ChannelUpdate {
                reset: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.publish(finding(
        "acme",
        &a,
        "a-3",
        "root-activity",
        Severity::Critical,
    ))
    .await;
    eventually(
        "acme delivered after the reset",
        Duration::from_secs(20),
        || async { (s.receiver.calls("acme").len() == 4).then_some(()) },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
}

/// Resolves chosen names to chosen addresses (a hostile DNS answer).
struct FakeDns(HashMap<String, IpAddr>);

impl Lookup for FakeDns {
    fn lookup(&self, host: String) -> LookupFuture {
        let r = self
            .0
            .get(&host)
            .copied()
            .map(|ip| vec![ip])
            .ok_or_else(|| std::io::Error::other(format!("{host}: no such name")));
        Box::pin(async move { r })
    }
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused() {
    let (receiver, addr) = Receiver::start().await;
    let port = addr.port();
    let dns = Arc::new(FakeDns(HashMap::from([
        (
            "internal.example.com".to_owned(),
            "10.0.0.7".parse().unwrap(),
        ),
        (
            "metadata.example.com".to_owned(),
            "169.254.169.254".parse().unwrap(),
        ),
        (
            "sneaky.example.com".to_owned(),
            "127.0.0.1".parse().unwrap(),
        ),
        (
            "mapped.example.com".to_owned(),
            "::ffff:127.0.0.1".parse().unwrap(),
        ),
    ])));
    let strict = WebhookClient::new(
        Duration::from_secs(3),
        AddressPolicy::default(),
        dns.clone(),
    );
    let local = WebhookClient::new(
        Duration::from_secs(3),
        AddressPolicy { allow_local: true },
        dns.clone(),
    );
    // Stored URLs are parsed without the policy (as from the table), so
    // the delivery-time checks are what is tested.
    let stored = |u: &str| -> WebhookUrl { serde_json::from_value(u.into()).unwrap() };
    let refused = [
        (&strict, format!("https://127.0.0.1:{port}/hook/x")),
        (&strict, format!("http://127.0.0.1:{port}/hook/x")),
        (
            &strict,
            "https://169.254.169.254/latest/meta-data/".to_owned(),
        ),
        (&strict, "https://10.1.2.3/hook".to_owned()),
        (
            &strict,
            format!("https://internal.example.com:{port}/hook/x"),
        ),
        (&strict, "https://metadata.example.com/latest".to_owned()),
        (&strict, format!("https://sneaky.example.com:{port}/hook/x")),
        (&strict, format!("https://mapped.example.com:{port}/hook/x")),
        (&strict, format!("https://[::1]:{port}/hook/x")),
        // Local development allows loopback, nothing else.
        (&local, format!("http://internal.example.com:{port}/hook/x")),
        (
            &local,
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ),
        (&local, "http://10.1.2.3/hook".to_owned()),
    ];
    for (client, url) in &refused {
        let err = client.post(&stored(url), "hi").await.unwrap_err();
        assert_eq!(err.kind, SendErrorKind::Refused, "{url}: {err}");
    }
    // A name the real resolver maps to loopback.
    let system = WebhookClient::new(
        Duration::from_secs(3),
        AddressPolicy::default(),
        Arc::new(notifier::webhook::SystemLookup),
    );
    let err = system
        .post(&stored(&format!("https://localhost:{port}/hook/x")), "hi")
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::Refused, "{err}");
    assert!(err.reason.contains("loopback"), "{err}");
    assert_eq!(
        receiver.total(),
        0,
        "a refused request reached the receiver"
    );

    // Allowed in local mode; credentials in the URL never.
    local
        .post(
            &stored(&format!("http://sneaky.example.com:{port}/hook/ok")),
            "hi",
        )
        .await
        .unwrap();
    assert_eq!(receiver.calls("ok").len(), 1);
    let err = local
        .post(
            &stored(&format!("http://u:p@127.0.0.1:{port}/hook/x")),
            "hi",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::Refused);
    // Redirects are not followed (the receiver points at the metadata
    // service), and the failure does not show the URL.
    receiver.answer("redirect", 302);
    let err = local
        .post(
            &stored(&format!("http://127.0.0.1:{port}/hook/redirect")),
            "hi",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::Permanent);
    assert!(err.reason.contains("redirects are not followed"), "{err}");
    assert!(!err.reason.contains("/hook/"), "{err}");
    // Connection errors do not show the URL either.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = local
        .post(
            &stored(&format!("http://127.0.0.1:{closed}/hook/s3cr3t")),
            "hi",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::Retry);
    assert!(!err.reason.contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn a_tenant_webhook_resolving_to_a_private_address_is_refused_and_marked() {
    let s = setup("ca-central-1", |c| c.notifier.webhook_allow_local = false).await;
    let dns = Arc::new(FakeDns(HashMap::from([(
        "hooks.evil.example".to_owned(),
        "10.9.8.7".parse().unwrap(),
    )])));
    let notifier = notifier::notifier_with_lookup(&s.env.ctx, dns);
    let acme = s.tenant("acme");
    // A name that passes the static check (it is not an IP literal).
    let url = WebhookUrl::parse(
        "https://hooks.evil.example/services/x",
        AddressPolicy::default(),
    )
    .unwrap();
    notifier
        .deliverer
        .channels
        .update(
            &acme,
            &ChannelUpdate {
                webhook: Some(Some(url)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let acct = random_account();
    let err = notifier
        .handle(&delivery(
            finding("acme", &acct, "x-1", "root-activity", Severity::Critical),
            1,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("resolves to 10.9.8.7"), "{err}");
    assert!(!err.to_string().contains("/services/x"), "{err}");
    let ch = notifier.deliverer.channels.get(&acme).await.unwrap();
    assert!(
        ch.failing(Channel::Webhook)
            .unwrap()
            .reason
            .contains("private")
    );
    // The feed row is there regardless.
    assert_eq!(notifier.feed.list(&acme, false, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_daily_digest_sums_up_each_tenants_day() {
    let s = setup("eu-west-3", |_| {}).await;
    s.channels("acme").await;
    s.channels("globex").await;
    let (a, g) = (random_account(), random_account());
    let role = |x: &str| format!("arn:aws:iam::{x}:role/KopterAccess");
    for (t, acct) in [("acme", &a), ("globex", &g)] {
        s.env
            .ctx
            .accounts
            .onboard(Onboarding::parse(t, acct, &role(acct), &[]).unwrap(), None)
            .await
            .unwrap();
    }
    // acme's day: an audit record with a finding, and a finding in the feed.
    let day: chrono::NaiveDate = "2026-03-04".parse().unwrap();
    let at: DateTime<Utc> = "2026-03-04T05:06:07Z".parse().unwrap();
    let rec = trail_ingest::normalise::normalise(
        serde_json::json!({
            "eventVersion": "1.08", "eventID": "d-1", "eventTime": "2026-03-04T05:06:07Z",
            "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1", "recipientAccountId": a,
            "userIdentity": {"type": "Root", "arn": format!("arn:aws:iam::{a}:root")},
            "responseElements": {"ConsoleLogin": "Success"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(rec.event_time, at);
    let row = kopter_store::audit::AuditRow::new(
        &s.tenant("acme"),
        &AccountId::new(a.clone()).unwrap(),
        &rec,
        vec!["root-activity".into()],
        365,
    );
    s.notifier.audit.put(&row).await.unwrap();
    s.notifier
        .handle(&delivery(
            finding("acme", &a, "d-1", "root-activity", Severity::Critical),
            1,
        ))
        .await
        .unwrap();
    // A waste finding of acme's: a warning in the feed (60 USD a month),
    // and the digest's waste line from the open rows.
    let waste = kopter_schema::messages::WasteFinding {
        tenant: s.tenant("acme"),
        account: AccountId::new(a.clone()).unwrap(),
        region: "us-east-1".into(),
        resource_id: "vol-idle".into(),
        rule: "unattached-volume".into(),
        status: "open".into(),
        since: "2026-03-01T00:00:00Z".parse().unwrap(),
        accrued_usd: 5.5,
        unpriced_hours: 0,
        monthly_usd: Some(60.0),
        action: "Delete it".into(),
        detail: "750 GiB gp3".into(),
        at,
        resolution: None,
    };
    s.notifier
        .handle(&delivery(Message::WasteFinding(waste.clone()), 1))
        .await
        .unwrap();
    let feed = s
        .notifier
        .feed
        .between(
            &s.tenant("acme"),
            at - chrono::Duration::hours(1),
            at + chrono::Duration::hours(1),
            100,
        )
        .await
        .unwrap();
    let told = feed
        .iter()
        .find(|r| r.kind == "waste.finding")
        .expect("the waste finding in the feed");
    assert_eq!(told.severity, Severity::Warning, "{told:?}");
    assert!(told.text.contains("60.00 USD a month"), "{}", told.text);
    let row = kopter_store::waste::FindingRow {
        pk: kopter_store::waste::pk(&s.tenant("acme")),
        sk: kopter_store::waste::sk(
            &waste.account,
            "vol-idle",
            kopter_store::waste::Rule::UnattachedVolume,
        ),
        tenant: s.tenant("acme"),
        finding: kopter_store::waste::Finding {
            account: waste.account.clone(),
            region: "us-east-1".into(),
            resource_id: "vol-idle".into(),
            kind: kopter_store::inventory::ResourceKind::Volume,
            rule: kopter_store::waste::Rule::UnattachedVolume,
            since: waste.since,
            accrued_usd: 5.5,
            unpriced_hours: 0,
            unpriced_reason: None,
            accrued_through: None,
            accrual_digest: None,
            monthly_usd: Some(60.0),
            action: "Delete it".into(),
            detail: String::new(),
        },
        status: kopter_store::waste::Status::Open,
        evaluated_at: at,
        resolved_at: None,
        resolution: None,
        open_published: Some(waste.since),
        resolve_published: false,
        expires_at: None,
    };
    s.env.put_row(kopter_schema::Table::PriceGraph, &row).await;
    let calls_before = s.receiver.calls("acme").len();

    // The schedule's message fans out one message per tenant.
    let fan = s
        .notifier
        .handle(&delivery(
            Message::DailyDigest(DailyDigest { day, tenant: None }),
            1,
        ))
        .await
        .unwrap();
    assert_eq!(fan, Handled::DigestFannedOut(2));
    let url = s.env.queue_url(Service::Notifier).await;
    let mut per_tenant = Vec::new();
    for m in s.env.receive(&url, Duration::from_secs(60)).await {
        let d = Delivery {
            message_id: m.message_id.clone().unwrap(),
            body: m.body.clone().unwrap(),
            receive_count: 1,
            attributes: HashMap::new(),
            sent_at_ms: None,
        };
        per_tenant.push(s.notifier.handle(&d).await.unwrap());
    }
    assert_eq!(per_tenant.len(), 2, "{per_tenant:?}");
    let acme_calls = s.receiver.calls("acme");
    assert_eq!(acme_calls.len(), calls_before + 1);
    let digest = acme_calls.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    for needle in [
        "Daily digest 2026-03-04",
        "root-activity: 1",
        "ConsoleLogin",
        "no cost data",
        "Waste: 1 idle resource, 60.00 USD/month",
    ] {
        assert!(digest.contains(needle), "{needle} missing from {digest}");
    }
    let globex = s.receiver.calls("globex");
    assert_eq!(globex.len(), 1);
    let text = globex[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Security findings: 0")
            && text.contains("Waste: 0 idle resources, 0.00 USD/month")
            && !text.contains(&a),
        "{text}"
    );
    // acme's critical finding and waste warning, then one digest email
    // per tenant.
    assert_eq!(s.sent().await, 4);

    // Again (a redelivery): no second digest.
    let again = s.notifier.digest(&s.tenant("acme"), day, 2).await.unwrap();
    assert!(
        matches!(again, Handled::Digest(ref d) if d.sent.is_empty()),
        "{again:?}"
    );
    assert_eq!(s.receiver.calls("acme").len(), calls_before + 1);
    assert_eq!(s.sent().await, 4);
}
