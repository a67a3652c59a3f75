//! Identifiers. Plain strings with a type each, so an instance id is never passed where a
//! deployment id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id!(
    /// An EC2 instance id (`i-…`).
    InstanceId
);
id!(
    /// A CodeDeploy deployment id (`d-…`).
    DeploymentId
);
id!(
    /// A lifecycle action token (a UUID).
    Token
);
id!(
    /// An event id (EventBridge `id`, SQS message id, or a synthetic id from reconciliation).
    EventId
);
id!(
    /// Identifies one intent to create a deployment; written before `CreateDeployment` is
    /// called and carried in the deployment's description, so a crashed creator's deployment
    /// can be recognised and adopted.
    IntentId
);
id!(
    /// An opaque, comparable description of an application revision (S3 object + version/etag,
    /// GitHub commit, or content hash), as produced by the CodeDeploy adapter.
    Revision
);

impl IntentId {
    /// The marker written into the description of every deployment the orchestrator creates,
    /// so a crashed creator's deployment can be recognised and adopted instead of created twice.
    pub const MARKER: &'static str = "turnstile intent=";

    /// The description of the deployment created for this intent (CreateDeployment's
    /// `description`): the marker, the id, and a word for whoever reads the console.
    pub fn description(&self) -> String {
        format!(
            "{}{} (launch deployment by turnstile)",
            Self::MARKER,
            self.0
        )
    }

    /// How far before the intent's time a search for its deployment looks: CodeDeploy stamps
    /// `createTime` with its own clock, which may run behind the orchestrator's.
    pub const FIND_SLACK_MS: u64 = 60_000;

    /// The intent a deployment description carries, if turnstile created the deployment.
    pub fn from_description(description: &str) -> Option<IntentId> {
        let rest = description.split(Self::MARKER).nth(1)?;
        rest.split_whitespace().next().map(IntentId::from)
    }

    /// Whether a deployment with this description was created for this intent.
    pub fn marks(&self, description: &str) -> bool {
        Self::from_description(description).as_ref() == Some(self)
    }
}

/// A CodeDeploy deployment group, named by its application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub application: String,
    pub deployment_group: String,
}

impl GroupKey {
    pub fn new(application: impl Into<String>, deployment_group: impl Into<String>) -> Self {
        Self {
            application: application.into(),
            deployment_group: deployment_group.into(),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.application, self.deployment_group)
    }
}

/// Milliseconds since the Unix epoch. The core never reads a clock: time is an argument.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }
    pub fn plus_secs(self, s: u64) -> Self {
        Self(self.0.saturating_add(s.saturating_mul(1000)))
    }
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_marker_round_trips() {
        assert_eq!(
            IntentId::from_description("turnstile intent=123-4 for 3 instance(s)"),
            Some(IntentId::from("123-4"))
        );
        assert_eq!(
            IntentId::from_description("turnstile intent=9-0"),
            Some(IntentId::from("9-0"))
        );
        assert_eq!(IntentId::from_description("a user's deployment"), None);
    }

    #[test]
    fn a_deployment_description_carries_its_intent() {
        let intent = IntentId::from("17-2");
        let description = intent.description();
        assert!(description.starts_with(IntentId::MARKER));
        assert_eq!(IntentId::from_description(&description), Some(intent));
    }

    #[test]
    fn an_intent_marks_only_its_own_deployment() {
        let intent = IntentId::from("17-2");
        assert!(intent.marks(&intent.description()));
        assert!(!intent.marks(&IntentId::from("17-3").description()));
        assert!(!IntentId::from("17").marks(&intent.description()));
        assert!(!intent.marks("a user's deployment"));
    }
}
