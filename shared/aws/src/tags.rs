//! The EC2 tags adapter: opens and closes gates (CreateTags / DeleteTags).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Tag;
use turnstile_core::{Gate, InstanceId};

use crate::error::port_error;
use crate::ports::{PortError, Tags};

/// The AWS operations the runner makes through this adapter, in both functions (`service:Operation`, as the SDK names them). `make iam-check`
/// (infra/iam.py) fails when this file calls an SDK operation missing here, lists one it no
/// longer calls, or the template does not allow what the caller needs.
pub const AWS_CALLS: &[&str] = &["ec2:CreateTags", "ec2:DeleteTags"];

/// The AWS operations of [`Tags::read`], which the timer's readiness pass (`readiness.rs`)
/// and `turnstile doctor` call; checked as [`AWS_CALLS`] is.
pub const READINESS_AWS_CALLS: &[&str] = &["ec2:DescribeTags"];

/// Instances per CreateTags / DeleteTags call.
pub const INSTANCES_PER_CALL: usize = 500;
/// Instance ids per DescribeTags `resource-id` filter: EC2 filters take a bounded number of
/// values, and 200 stays well inside it.
pub const FILTER_VALUES_PER_CALL: usize = 200;

pub struct Ec2Tags {
    client: Client,
}

impl Ec2Tags {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    async fn apply(
        &self,
        gates: &[Gate],
        instances: &[InstanceId],
        open: bool,
    ) -> Result<(), PortError> {
        let op = if open { "CreateTags" } else { "DeleteTags" };
        if gates.is_empty() {
            return Ok(());
        }
        // Every gate in one call: a tag without a value deletes the key whatever its value.
        let tags: Vec<Tag> = gates
            .iter()
            .map(|g| {
                let tag = Tag::builder().key(&g.key);
                if open { tag.value(&g.value) } else { tag }.build()
            })
            .collect();
        let keys: Vec<&str> = gates.iter().map(|g| g.key.as_str()).collect();
        for chunk in instances.chunks(INSTANCES_PER_CALL) {
            let mut ids: Vec<String> = chunk.iter().map(|i| i.0.clone()).collect();
            // CreateTags is all-or-nothing: a terminated instance fails the whole call, and the
            // error names it. Drop the named instances and try again with the rest.
            for _ in 0..3 {
                if ids.is_empty() {
                    break;
                }
                let result = if open {
                    let call = self
                        .client
                        .create_tags()
                        .set_resources(Some(ids.clone()))
                        .set_tags(Some(tags.clone()));
                    call.send().await.map(|_| ()).map_err(|e| failure(op, e))
                } else {
                    let call = self
                        .client
                        .delete_tags()
                        .set_resources(Some(ids.clone()))
                        .set_tags(Some(tags.clone()));
                    call.send().await.map(|_| ()).map_err(|e| failure(op, e))
                };
                match result {
                    Ok(()) => break,
                    Err((Some(code), Some(message), _))
                        if code.starts_with("InvalidInstanceID") =>
                    {
                        let missing = instance_ids_in(&message);
                        let before = ids.len();
                        ids.retain(|i| !missing.contains(i));
                        if ids.len() == before {
                            // Nothing we can drop: report it.
                            return Err(PortError::Permanent {
                                op,
                                source: message.into(),
                            });
                        }
                        tracing::info!(gone = ?missing, gates = ?keys, "instances no longer exist; tagging the others");
                    }
                    Err((_, _, e)) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The error's code and message (to recognise missing instances) and its classification.
fn failure<E, R>(op: &'static str, e: SdkError<E, R>) -> (Option<String>, Option<String>, PortError)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    (
        e.code().map(str::to_owned),
        e.message().map(str::to_owned),
        port_error(op, e),
    )
}

/// Instance ids (`i-` followed by hex) mentioned in an error message.
pub fn instance_ids_in(message: &str) -> Vec<String> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            w.strip_prefix("i-")
                .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .map(str::to_owned)
        .collect()
}

impl Tags for Ec2Tags {
    async fn open(&self, gates: &[Gate], instances: &[InstanceId]) -> Result<(), PortError> {
        self.apply(gates, instances, true).await
    }

    async fn close(&self, gates: &[Gate], instances: &[InstanceId]) -> Result<(), PortError> {
        self.apply(gates, instances, false).await
    }

    /// DescribeTags filtered by `resource-id` and `key` (values of one filter ORed, filters
    /// ANDed), paged [aws-behaviour §5.6 DescribeTags].
    async fn read(
        &self,
        instances: &[InstanceId],
        keys: &[String],
    ) -> Result<Vec<(InstanceId, String, String)>, PortError> {
        use aws_sdk_ec2::types::Filter;
        let mut out = Vec::new();
        if instances.is_empty() || keys.is_empty() {
            return Ok(out);
        }
        let key_filter = Filter::builder()
            .name("key")
            .set_values(Some(keys.to_vec()))
            .build();
        for chunk in instances.chunks(FILTER_VALUES_PER_CALL) {
            let ids = Filter::builder()
                .name("resource-id")
                .set_values(Some(chunk.iter().map(|i| i.0.clone()).collect()))
                .build();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .describe_tags()
                    .filters(ids.clone())
                    .filters(key_filter.clone())
                    .max_results(1000)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| port_error("DescribeTags", e))?;
                for t in page.tags() {
                    if let (Some(id), Some(k)) = (t.resource_id(), t.key()) {
                        out.push((
                            InstanceId(id.to_owned()),
                            k.to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        ));
                    }
                }
                token = page
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_instances_are_read_from_the_error_message() {
        assert_eq!(
            super::instance_ids_in("The instance IDs 'i-0abc1, i-0def2' do not exist"),
            vec!["i-0abc1".to_owned(), "i-0def2".to_owned()]
        );
        assert_eq!(
            super::instance_ids_in("The instance ID 'i-1234567890abcdef0' does not exist"),
            vec!["i-1234567890abcdef0".to_owned()]
        );
    }
}
