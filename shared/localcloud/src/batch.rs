//! Peak memory of the queue handler on a batch of ten messages: a child process builds the
//! runner exactly as the Lambda function does (`turnstile_aws::bootstrap`, real SDK
//! clients configured from the environment), handles one SQS event of ten launch events
//! against the local cloud, and reports its peak resident set size (`VmHWM`).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::json;
use turnstile_aws::config::Config;
use turnstile_aws::store::dynamo::DynamoStore;

use crate::scenario::Mode;
use crate::stack::Stack;
use crate::wire::{self, Simulator, WireFaults};

/// The child's side: handle the batch in `file`, print failures and peak memory.
pub async fn child(file: &str) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let sdk = turnstile_aws::bootstrap::sdk_config().await;
    let runner = turnstile_aws::bootstrap::runner_with(&sdk, &config);
    let redelivery = turnstile_aws::bootstrap::redelivery(&sdk, &config);
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let event: SqsEvent = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    let (response, _) = turnstile_aws::handler::handle_batch(&runner, &redelivery, event).await;
    println!("failures={}", response.batch_item_failures.len());
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("peak_rss_kb={hwm}");
    Ok(())
}

/// The parent's side: the local cloud, ten launch events, the child, its answer (in kB).
pub async fn measure() -> Result<u64, String> {
    let stack = Stack::start().map_err(|e| e.to_string())?;
    let scenario = crate::bench::scenario(10, 1, None);
    let sim = Simulator::new(scenario.cloud(Mode::Orchestrator), WireFaults::default(), 1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis();
    sim.cloud()
        .advance_to(u64::try_from(now).map_err(|e| e.to_string())?);
    let server = wire::serve(sim.clone()).await.map_err(|e| e.to_string())?;
    let moto = stack.config(&stack.moto.endpoint()).await;
    let queue = aws_sdk_sqs::Client::new(&moto)
        .create_queue()
        .queue_name("batch")
        .send()
        .await
        .map_err(|e| format!("CreateQueue: {e:?}"))?
        .queue_url
        .ok_or("CreateQueue: no url")?;
    DynamoStore::new(turnstile_harness::dynamodb_client(&stack.dynamodb), "batch")
        .create_table()
        .await
        .map_err(|e| e.to_string())?;
    let events = {
        let mut c = sim.cloud();
        c.scale_out(&scenario.fleet.auto_scaling_group, 10);
        c.drain()
    };
    let records: Vec<serde_json::Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "messageId": format!("00000000-0000-4000-8000-{i:012}"),
                "receiptHandle": format!("r{i}"),
                "body": e.json.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:batch",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let _: SqsEvent =
        serde_json::from_value(json!({"Records": records.clone()})).map_err(|e| e.to_string())?;
    let file = std::env::temp_dir().join(format!("turnstile-batch-{}.json", std::process::id()));
    std::fs::write(&file, json!({"Records": records}).to_string()).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = tokio::process::Command::new(exe)
        .arg("--batch-child")
        .arg(&file)
        .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb.endpoint())
        .env("AWS_ENDPOINT_URL_SQS", stack.moto.endpoint())
        .env("AWS_ENDPOINT_URL_AUTO_SCALING", server.endpoint())
        .env("AWS_ENDPOINT_URL_CODEDEPLOY", server.endpoint())
        .env("AWS_ENDPOINT_URL_EC2", server.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("TURNSTILE_TABLE", "batch")
        .env("TURNSTILE_QUEUE_URL", &queue)
        .env("RUST_LOG", "off")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "child exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    if !stdout.lines().any(|l| l == "failures=0") {
        return Err(format!("the batch had failures: {stdout}"));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no peak_rss_kb in the child's output: {stdout}"))
}
