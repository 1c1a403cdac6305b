//! `kopterctl dlq` against moto: a message poisoned into the describer's
//! DLQ through the real redrive policy by the real worker (which records
//! why it failed), listed and shown without being consumed, then redriven
//! back to the describer's queue.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use kopter_runtime::messaging::envelope;
use kopter_runtime::{UnimplementedHandler, run_workers};
use kopter_schema::messages::Sweep;
use kopter_schema::{Message, Service};
use kopter_tests::{TestEnv, eventually};
use tokio_util::sync::CancellationToken;

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    env.run(env!("CARGO_BIN_EXE_kopterctl"), args).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn a_dead_letter_is_listed_shown_and_redriven() {
    let env = TestEnv::with(|c| c.queues.max_receive_count = 2).await;
    let queue = env.queue_url(Service::Describer).await;
    let dlq = env.dlq_url(Service::Describer).await;
    let body = serde_json::to_string(&envelope(Message::DescribeSweep(Sweep {}))).unwrap();
    env.send_raw(&queue, &body).await;

    // A build that cannot handle the message fails it permanently each
    // time; the redrive policy moves it to the DLQ after 2 receives.
    let stop = CancellationToken::new();
    let worker = {
        let ctx = env.ctx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handler = Arc::new(UnimplementedHandler(Service::Describer));
            run_workers(&ctx, vec![(Service::Describer, handler)], stop).await
        })
    };
    eventually(
        "the message in the DLQ",
        Duration::from_secs(60),
        || async { (env.depth(&dlq).await.0 == 1).then_some(()) },
    )
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(env.depth(&queue).await, (0, 0));

    let listed = kopterctl(
        &env,
        &["dlq", "list", "--service", "describer", "--format", "json"],
    )
    .await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let letters: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    let id = letter["message_id"].as_str().unwrap().to_owned();
    assert_eq!(letter["kind"], "describe.sweep");
    assert!(letter["receive_count"].as_u64().unwrap() >= 2, "{letter}");
    assert!(letter["sent_at"].is_string(), "{letter}");
    let failure = &letter["failure"];
    assert_eq!(failure["outcome"], "permanent", "{letter}");
    assert_eq!(failure["failures"], 2, "{letter}");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("does not handle \"describe.sweep\""),
        "{letter}"
    );
    assert!(
        failure["first_failed_at"].as_str().unwrap() <= failure["last_failed_at"].as_str().unwrap()
    );
    // Looking did not consume: the message is visible in the DLQ again.
    assert_eq!(env.depth(&dlq).await, (1, 0));

    let table = kopterctl(&env, &["dlq", "list", "--service", "describer"]).await;
    let text = stdout(&table);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(text.contains(&id) && text.contains("permanent: "), "{text}");
    assert!(text.contains("1 message(s) in"), "{text}");

    let shown = kopterctl(&env, &["dlq", "show", "--service", "describer", &id]).await;
    let text = stdout(&shown);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(text.contains("kind            describe.sweep"), "{text}");
    assert!(
        text.contains("\"kind\": \"describe.sweep\""),
        "pretty body: {text}"
    );
    assert!(
        text.contains("failures        2 (last: permanent)"),
        "{text}"
    );

    let missing = kopterctl(
        &env,
        &["dlq", "show", "--service", "describer", "no-such-id"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no message no-such-id"),
        "{}",
        stderr(&missing)
    );
    let refused = kopterctl(&env, &["dlq", "redrive", "--service", "describer"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(env.depth(&dlq).await, (1, 0));

    let moved = kopterctl(
        &env,
        &["dlq", "redrive", "--service", "describer", "--id", &id],
    )
    .await;
    let text = stdout(&moved);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert!(text.contains(&format!("moved {id} → ")), "{text}");
    assert!(text.contains("1 message(s) moved"), "{text}");
    assert_eq!(env.depth(&dlq).await, (0, 0));
    let back = env.receive(&queue, Duration::from_secs(30)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body.as_deref(), Some(body.as_str()));
    assert_ne!(back[0].message_id.as_deref(), Some(id.as_str()));

    // Nothing left to move: --all is a no-op, an unknown id is named.
    let again = kopterctl(&env, &["dlq", "redrive", "--service", "describer", "--all"]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("0 message(s) moved"));
    let gone = kopterctl(
        &env,
        &["dlq", "redrive", "--service", "describer", "--id", &id],
    )
    .await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains(&id), "{}", stderr(&gone));
}
