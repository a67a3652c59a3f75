//! What the model publishes to EventBridge, as the JSON AWS publishes.

use serde_json::json;

use crate::{Cloud, EventKind, Hook, Instance, Ms, Place, Published, Transition};

impl Cloud {
    /// The EventBridge event of a lifecycle action, in the shape of [aws-behaviour §1.1], with
    /// where the transition comes from and goes to [aws-behaviour §1.1 Origin and Destination].
    pub(crate) fn publish_lifecycle(
        &mut self,
        inst: &Instance,
        h: &Hook,
        token: &str,
        (origin, destination): (Place, Place),
    ) {
        let detail_type = match h.transition {
            Transition::Launching => "EC2 Instance-launch Lifecycle Action",
            Transition::Terminating => "EC2 Instance-terminate Lifecycle Action",
        };
        let transition = h.transition.as_api();
        let mut detail = json!({
            "LifecycleActionToken": token,
            "AutoScalingGroupName": inst.asg,
            "LifecycleHookName": h.name,
            "EC2InstanceId": inst.id,
            "LifecycleTransition": transition,
            "Origin": origin.as_api(),
            "Destination": destination.as_api(),
        });
        if let (Some(m), Some(obj)) = (&h.metadata, detail.as_object_mut()) {
            obj.insert("NotificationMetadata".into(), m.clone().into());
        }
        let id = self.uuid();
        let json = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": "aws.autoscaling",
            "account": self.account,
            "time": iso(self.now),
            "region": self.region,
            "resources": [format!("arn:aws:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{}", self.region, self.account, id, inst.asg)],
            "detail": detail,
        });
        self.outbox.push(Published {
            at: self.now,
            json,
            kind: EventKind::Lifecycle,
        });
    }

    /// `CodeDeploy Deployment State-change Notification` [aws-behaviour §1.3].
    pub(crate) fn publish_deployment(&mut self, id: &str, state: &str) {
        self.publish_codedeploy(id, None, state);
    }

    /// `CodeDeploy Instance State-change Notification` [aws-behaviour §1.3].
    pub(crate) fn publish_instance(&mut self, id: &str, inst: &str, state: &str) {
        self.publish_codedeploy(id, Some(inst), state);
    }

    /// The two CodeDeploy events share their envelope; the instance event adds the instance
    /// (in `detail` and first in `resources`).
    fn publish_codedeploy(&mut self, id: &str, inst: Option<&str>, state: &str) {
        let Some(d) = self.deployments.get(id) else {
            return;
        };
        let (app, dg) = d.group.clone();
        let event_id = self.uuid();
        let (region, account) = (&self.region, &self.account);
        let application = format!("arn:aws:codedeploy:{region}:{account}:application:{app}");
        let group = format!("arn:aws:codedeploy:{region}:{account}:deploymentgroup:{app}/{dg}");
        let mut detail = json!({"region": region, "application": app, "deploymentId": id, "state": state, "deploymentGroup": dg});
        let (detail_type, resources, instance_group) = match inst {
            None => (
                "CodeDeploy Deployment State-change Notification",
                vec![application, group],
                "9fd2fbef-2157-40d8-91e7-6845af69e2d2",
            ),
            Some(i) => (
                "CodeDeploy Instance State-change Notification",
                vec![
                    format!("arn:aws:ec2:{region}:{account}:instance/{i}"),
                    group,
                    application,
                ],
                "8cd3bfa8-9e72-4cbe-a1e5-da4efc7efd49",
            ),
        };
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("instanceGroupId".into(), instance_group.into());
            if let Some(i) = inst {
                obj.insert("instanceId".into(), i.into());
            }
        }
        let json = json!({
            "account": account, "region": region, "detail-type": detail_type,
            "source": "aws.codedeploy", "version": "0", "time": iso(self.now), "id": event_id,
            "resources": resources, "detail": detail,
        });
        self.outbox.push(Published {
            at: self.now,
            json,
            kind: EventKind::CodeDeploy,
        });
    }

    /// `Tag Change on Resource` for an instance whose tags just changed: the keys that changed
    /// (added, updated or deleted) and every tag it has now [aws-behaviour §5.7 Tag change events].
    pub(crate) fn publish_tag_change(&mut self, id: &str, changed: &[String]) {
        let event_id = self.tag_uuid();
        let (region, account, now) = (self.region.clone(), self.account.clone(), self.now);
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.tag_version += 1;
        let json = json!({
            "version": "0",
            "id": event_id,
            "detail-type": "Tag Change on Resource",
            "source": "aws.tag",
            "account": account,
            "time": iso(now),
            "region": region,
            "resources": [format!("arn:aws:ec2:{region}:{account}:instance/{id}")],
            "detail": {
                "changed-tag-keys": changed,
                "service": "ec2",
                "resource-type": "instance",
                "version": inst.tag_version,
                "tags": inst.tags,
            },
        });
        self.outbox.push(Published {
            at: now,
            json,
            kind: EventKind::Tag,
        });
    }

    /// Takes the events published so far.
    pub fn drain(&mut self) -> Vec<Published> {
        std::mem::take(&mut self.outbox)
    }
}

/// RFC 3339 with milliseconds, as EventBridge writes `time`.
pub fn iso(ms: Ms) -> String {
    // Civil-from-days (Howard Hinnant), to keep the model free of a date crate.
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}
