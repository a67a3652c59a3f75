//! `turnstile dlq list | redrive` against moto server's SQS: the messages the queue function
//! could not handle, with the field that broke each, and sending them back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::{Ran, run};
use turnstile_cli::Exit;

pub struct Queues {
    _moto: turnstile_harness::Service,
    pub sqs: aws_sdk_sqs::Client,
    pub queue: String,
    pub dlq: String,
}

pub async fn queues() -> Queues {
    let moto = turnstile_harness::moto_server().unwrap();
    let conf = turnstile_harness::sdk_config(&moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let url = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let (queue, dlq) = (url("turnstile").await, url("turnstile-dlq").await);
    Queues {
        _moto: moto,
        sqs,
        queue,
        dlq,
    }
}

/// Three dead letters: not JSON, an operator message naming an unknown field, and one that
/// parses (it failed while being handled). Returns their message ids in that order.
pub async fn dead_letters(q: &Queues) -> Vec<String> {
    let mut ids = Vec::new();
    for body in [
        "not json at all",
        r#"{"turnstile":"operator","version":1,"request":"op-1","action":"retry","instance":"i-1","reason":"r","actor":"root"}"#,
        r#"{"turnstile":"wakeup","key":{"Instance":"i-2"}}"#,
    ] {
        let sent = q
            .sqs
            .send_message()
            .queue_url(&q.dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
        ids.push(sent.message_id.unwrap());
    }
    ids
}

pub async fn dlq(q: &Queues, args: &[&str]) -> Ran {
    let mut all = vec!["dlq"];
    all.extend(args);
    all.extend(["--dlq-url", &q.dlq, "--queue-url", &q.queue]);
    let mut ctx = support::ctx(0, None);
    ctx.sqs = Some(q.sqs.clone());
    run(&all, ctx).await
}

async fn bodies_in(q: &Queues, url: &str) -> Vec<String> {
    let got = q
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    got.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.body.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn dlq_list_names_why_each_message_failed_and_deletes_nothing() {
    let q = queues().await;
    let ids = dead_letters(&q).await;
    let ran = dlq(&q, &["list", "--output", "json"]).await;
    assert_eq!(ran.exit, Exit::Ok, "{}", ran.err);
    let doc = ran.json();
    assert_eq!(doc["schema"], "turnstile.dlq/v1");
    let messages = doc["messages"].as_array().unwrap();
    let by_id = |id: &str| {
        messages
            .iter()
            .find(|m| m["messageId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(messages.len(), 3);
    assert!(by_id(&ids[0])["why"].as_str().unwrap().contains("not JSON"));
    assert_eq!(by_id(&ids[1])["field"], "actor", "the field that broke it");
    assert_eq!(by_id(&ids[2])["parses"], true);
    assert!(by_id(&ids[2])["why"].as_str().unwrap().contains("logs"));
    assert!(by_id(&ids[0])["receiveCount"].as_u64().unwrap() >= 1);

    let table = dlq(&q, &["list", "--max", "10"]).await;
    assert_eq!(table.exit, Exit::Ok, "{}", table.err);
    assert!(table.out.starts_with("MESSAGE "), "{}", table.out);
    let again = dlq(&q, &["list", "--output", "json"]).await.json();
    assert_eq!(
        again["messages"].as_array().unwrap().len(),
        3,
        "listing deletes nothing and leaves every message visible"
    );
}

#[tokio::test]
async fn dlq_redrive_sends_one_message_back_and_an_unknown_id_is_not_found() {
    let q = queues().await;
    let ids = dead_letters(&q).await;
    let dry = dlq(&q, &["redrive", "--id", &ids[2], "--dry-run"]).await;
    assert_eq!(dry.exit, Exit::Ok, "{}", dry.err);
    assert!(dry.out.contains("would send 1"), "{}", dry.out);
    assert!(
        bodies_in(&q, &q.queue).await.is_empty(),
        "dry run sends nothing"
    );

    let r = dlq(&q, &["redrive", "--id", &ids[2], "--output", "json"]).await;
    assert_eq!(r.exit, Exit::Ok, "{}", r.err);
    assert_eq!(r.json()["schema"], "turnstile.dlq-redrive/v1");
    assert_eq!(r.json()["redriven"][0], ids[2].as_str());
    assert_eq!(
        bodies_in(&q, &q.queue).await,
        [r#"{"turnstile":"wakeup","key":{"Instance":"i-2"}}"#]
    );
    let left = dlq(&q, &["list", "--output", "json"]).await.json();
    assert_eq!(left["messages"].as_array().unwrap().len(), 2, "{left}");

    let unknown = dlq(&q, &["redrive", "--id", "no-such-id"]).await;
    assert_eq!(unknown.exit, Exit::NotFound, "{}", unknown.err);
}
