//! DynamoDB Local for the store tests, started on a free port by `turnstile-harness` and stopped
//! by PID when dropped.

pub struct DynamoLocal(turnstile_harness::Service);

impl DynamoLocal {
    pub fn start() -> Self {
        match turnstile_harness::dynamodb_local() {
            Ok(s) => Self(s),
            Err(e) => panic!("{e}"),
        }
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        turnstile_harness::dynamodb_client(&self.0)
    }
}
