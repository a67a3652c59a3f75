//! CodeDeploy over JSON 1.1 (`X-Amz-Target: CodeDeploy_20141006.<Operation>`), with errors as
//! HTTP 400 and `{"__type": "<Code>", "message": …}` [aws-behaviour §3 Protocols].

use hyper::StatusCode;
use serde_json::{Value, json};
use turnstile_model::{ApiError, Cloud, Creator, Deployment, Ms, TargetStatus};

use super::{Reply, Simulator};

const PREFIX: &str = "CodeDeploy_20141006.";
/// `BatchGetDeploymentTargets` takes at most 25 ids [aws-behaviour §3.2].
const MAX_TARGETS: usize = 25;
/// Revisions live in this (imaginary) bucket; the model's revision name is the object key.
pub const REVISION_BUCKET: &str = "turnstile-local-revisions";

pub fn handle(sim: &Simulator, target: &str, body: &[u8], request_id: &str) -> Reply {
    let Some(op) = target.strip_prefix(PREFIX) else {
        return error(
            "UnknownOperationException",
            &format!("unknown target {target}"),
        );
    };
    let input: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    if sim.throttle() {
        return error("ThrottlingException", "Rate exceeded");
    }
    let mut cloud = sim.cloud();
    let result = match op {
        "GetDeploymentGroup" => get_deployment_group(&mut cloud, &input),
        "GetDeploymentConfig" => get_deployment_config(&mut cloud, &input),
        "CreateDeployment" => create_deployment(&mut cloud, &input),
        "GetDeployment" => get_deployment(&mut cloud, &input),
        "ListDeployments" => list_deployments(&mut cloud, &input),
        "ListDeploymentTargets" => list_targets(&mut cloud, &input),
        "BatchGetDeploymentTargets" => batch_get_targets(&mut cloud, &input),
        "StopDeployment" => stop_deployment(&mut cloud, &input),
        other => Err(Failure::new(
            "UnknownOperationException",
            format!("the simulator does not implement {other}"),
        )),
    };
    tracing::trace!(op, request_id, "codedeploy");
    match result {
        Ok(v) => Reply {
            status: StatusCode::OK,
            content_type: "application/x-amz-json-1.1",
            body: v.to_string(),
        },
        Err(f) => error(f.code, &f.message),
    }
}

struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::DeploymentLimitExceeded { message, .. } => {
                Failure::new("DeploymentLimitExceededException", message)
            }
            ApiError::DeploymentGroupDoesNotExist(g) => Failure::new(
                "DeploymentGroupDoesNotExistException",
                format!("No Deployment Group found for name: {g}"),
            ),
            ApiError::DeploymentDoesNotExist(d) => Failure::new(
                "DeploymentDoesNotExistException",
                format!("The deployment {d} could not be found"),
            ),
            ApiError::DeploymentAlreadyCompleted(d) => Failure::new(
                "DeploymentAlreadyCompletedException",
                format!("Deployment {d} has already completed"),
            ),
            ApiError::RevisionRequired => Failure::new(
                "RevisionRequiredException",
                "RevisionLocation must be specified",
            ),
            ApiError::NoActiveAction(m) => Failure::new("InvalidInputException", m),
        }
    }
}

fn error(code: &str, message: &str) -> Reply {
    Reply {
        status: StatusCode::BAD_REQUEST,
        content_type: "application/x-amz-json-1.1",
        body: json!({"__type": code, "message": message}).to_string(),
    }
}

fn string<'a>(input: &'a Value, field: &'static str) -> Result<&'a str, Failure> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            let code = match field {
                "applicationName" => "ApplicationNameRequiredException",
                "deploymentGroupName" => "DeploymentGroupNameRequiredException",
                "deploymentId" => "DeploymentIdRequiredException",
                _ => "InvalidInputException",
            };
            Failure::new(code, format!("{field} is required"))
        })
}

fn epoch(ms: Ms) -> f64 {
    ms as f64 / 1000.0
}

/// A model revision as an S3 revision location.
pub fn revision_json(revision: &str) -> Value {
    json!({
        "revisionType": "S3",
        "s3Location": {"bucket": REVISION_BUCKET, "key": format!("{revision}.zip"), "bundleType": "zip"}
    })
}

/// The model revision a request's revision location names.
fn revision_of(v: &Value) -> Option<String> {
    let loc = v.get("s3Location")?;
    let key = loc.get("key")?.as_str()?;
    Some(key.strip_suffix(".zip").unwrap_or(key).to_owned())
}

fn creator(c: Creator) -> &'static str {
    match c {
        Creator::User => "user",
        Creator::Autoscaling => "autoscaling",
    }
}

fn deployment_info(d: &Deployment) -> Value {
    let mut overview = json!({"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0});
    for t in d.targets.values() {
        if let Some(n) = overview.get_mut(t.status.as_api()) {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    }
    let mut info = json!({
        "deploymentId": d.id,
        "applicationName": d.group.0,
        "deploymentGroupName": d.group.1,
        "deploymentConfigName": d.config.as_api(),
        "status": d.status.as_api(),
        "creator": creator(d.creator),
        "description": d.description,
        "revision": revision_json(&d.revision),
        "createTime": epoch(d.created_at),
        "deploymentOverview": overview,
    });
    if let (Some(end), Some(obj)) = (d.ended_at, info.as_object_mut()) {
        obj.insert("completeTime".into(), json!(epoch(end)));
    }
    info
}

fn group_key(input: &Value) -> Result<(String, String), Failure> {
    Ok((
        string(input, "applicationName")?.to_owned(),
        string(input, "deploymentGroupName")?.to_owned(),
    ))
}

/// `deploymentGroupInfo` with `targetRevision` (the last successful deployment's revision)
/// and `lastAttemptedDeployment` [aws-behaviour §3.1 Target revision], the associated Auto
/// Scaling groups with the hooks CodeDeploy installed, and the tag groups of `ec2TagSet`
/// [aws-behaviour §3.8].
fn get_deployment_group(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    let key = group_key(input)?;
    let g = cloud.get_deployment_group(&key)?;
    let last = cloud
        .deployments
        .values()
        .filter(|d| d.group == key)
        .max_by_key(|d| (d.created_at, d.id.clone()));
    let tag_set: Vec<Vec<Value>> = g
        .tag_set
        .iter()
        .map(|any| {
            any.iter()
                .map(|(k, v)| json!({"Key": k, "Value": v, "Type": "KEY_AND_VALUE"}))
                .collect()
        })
        .collect();
    let asgs: Vec<Value> = cloud
        .associated_asgs(&key)
        .into_iter()
        .map(|(name, hook)| json!({"name": name, "hook": hook}))
        .collect();
    let mut info = json!({
        "applicationName": g.app,
        "deploymentGroupName": g.name,
        "autoScalingGroups": asgs,
        "deploymentGroupId": format!("{}-{}", g.app, g.name),
        "deploymentConfigName": g.config.as_api(),
        "ec2TagSet": {"ec2TagSetList": tag_set},
        "computePlatform": "Server",
    });
    if let Some(obj) = info.as_object_mut() {
        if let Some(r) = &g.target_revision {
            obj.insert("targetRevision".into(), revision_json(r));
        }
        if let Some(d) = last {
            let mut summary = json!({
                "deploymentId": d.id,
                "status": d.status.as_api(),
                "createTime": epoch(d.created_at),
            });
            if let (Some(end), Some(s)) = (d.ended_at, summary.as_object_mut()) {
                s.insert("endTime".into(), json!(epoch(end)));
            }
            obj.insert("lastAttemptedDeployment".into(), summary);
        }
    }
    Ok(json!({ "deploymentGroupInfo": info }))
}

/// The predefined EC2/On-Premises configurations and what `GetDeploymentConfig` says of their
/// minimum healthy hosts [aws-behaviour §3.9 GetDeploymentConfig].
const BUILT_IN_CONFIGS: &[(&str, &str, u64)] = &[
    ("CodeDeployDefault.OneAtATime", "MOST_CONCURRENCY", 1),
    ("CodeDeployDefault.HalfAtATime", "FLEET_PERCENT", 50),
    ("CodeDeployDefault.AllAtOnce", "HOST_COUNT", 0),
];

/// GetDeploymentConfig [aws-behaviour §3.9]: the predefined EC2/On-Premises configurations
/// (the model has no custom ones); any other name is `DeploymentConfigDoesNotExistException`.
fn get_deployment_config(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    *cloud.calls.entry("GetDeploymentConfig").or_default() += 1;
    let name = input
        .get("deploymentConfigName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Failure::new(
                "DeploymentConfigNameRequiredException",
                "deploymentConfigName is required",
            )
        })?;
    let Some((n, kind, value)) = BUILT_IN_CONFIGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(Failure::new(
            "DeploymentConfigDoesNotExistException",
            format!("No deployment configuration found for name: {name}"),
        ));
    };
    Ok(json!({
        "deploymentConfigInfo": {
            "deploymentConfigId": format!("00000000-0000-4000-8000-{:012x}", n.len()),
            "deploymentConfigName": n,
            "minimumHealthyHosts": {"type": kind, "value": value},
            "createTime": 0.0,
            "computePlatform": "Server",
        }
    }))
}

fn create_deployment(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    let key = group_key(input)?;
    let revision = input.get("revision").map(|r| {
        revision_of(r).ok_or_else(|| {
            Failure::new(
                "InvalidRevisionException",
                "the simulator stores S3 revisions only",
            )
        })
    });
    let revision = revision.transpose()?;
    let description = input
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if description.len() > 256 {
        return Err(Failure::new(
            "DescriptionTooLongException",
            "description is longer than 256 characters",
        ));
    }
    let config = input.get("deploymentConfigName").and_then(Value::as_str);
    if let Some(c) = config
        && turnstile_model::DeployConfig::parse(c).is_none()
    {
        return Err(Failure::new(
            "DeploymentConfigDoesNotExistException",
            format!("No deployment configuration found for name: {c}"),
        ));
    }
    let outdated = input
        .get("updateOutdatedInstancesOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let id = cloud.create_deployment(
        &key,
        revision.as_deref(),
        config,
        outdated,
        description,
        Creator::User,
    )?;
    Ok(json!({ "deploymentId": id }))
}

fn get_deployment(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    let d = cloud.get_deployment(string(input, "deploymentId")?)?;
    Ok(json!({ "deploymentInfo": deployment_info(&d) }))
}

fn list_deployments(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    let key = group_key(input)?;
    if !cloud.groups.contains_key(&key) {
        return Err(ApiError::DeploymentGroupDoesNotExist(format!("{}/{}", key.0, key.1)).into());
    }
    let statuses: Vec<&str> = input
        .get("includeOnlyStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let since = input
        .pointer("/createTimeRange/start")
        .and_then(Value::as_f64)
        .map_or(0, |s| (s.max(0.0) * 1000.0) as Ms);
    // `includeOnlyStatuses` keeps the deployments in one of the listed statuses
    // [aws-behaviour §3.1 Group already busy]; the model's one active status is `InProgress`.
    let ids: Vec<String> = cloud
        .list_deployments(&key, false, since)
        .into_iter()
        .filter(|id| {
            statuses.is_empty()
                || cloud
                    .deployments
                    .get(id)
                    .is_some_and(|d| statuses.contains(&d.status.as_api()))
        })
        .collect();
    Ok(json!({ "deployments": ids }))
}

fn deployment<'a>(cloud: &'a Cloud, input: &Value) -> Result<&'a Deployment, Failure> {
    let id = string(input, "deploymentId")?;
    cloud
        .deployments
        .get(id)
        .ok_or_else(|| ApiError::DeploymentDoesNotExist(id.to_owned()).into())
}

fn list_targets(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    *cloud.calls.entry("ListDeploymentTargets").or_default() += 1;
    let d = deployment(cloud, input)?;
    Ok(json!({ "targetIds": d.targets.keys().collect::<Vec<_>>() }))
}

fn batch_get_targets(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    *cloud.calls.entry("BatchGetDeploymentTargets").or_default() += 1;
    let d = deployment(cloud, input)?;
    let ids: Vec<&str> = input
        .get("targetIds")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ids.len() > MAX_TARGETS {
        return Err(Failure::new(
            "DeploymentTargetListSizeExceededException",
            format!("at most {MAX_TARGETS} target ids"),
        ));
    }
    let mut out = Vec::new();
    for id in ids {
        let Some(t) = d.targets.get(id) else {
            return Err(Failure::new(
                "DeploymentTargetDoesNotExistException",
                format!(
                    "The deployment target {id} does not exist in deployment {}",
                    d.id
                ),
            ));
        };
        let updated = t.ended_at.or(t.started_at).unwrap_or(d.created_at);
        out.push(json!({
            "deploymentTargetType": "InstanceTarget",
            "instanceTarget": {
                "deploymentId": d.id,
                "targetId": id,
                "targetArn": format!("arn:aws:ec2:{}:{}:instance/{id}", cloud.region, cloud.account),
                "status": t.status.as_api(),
                "lastUpdatedAt": epoch(updated),
                "lifecycleEvents": lifecycle_events(t.status),
            }
        }));
    }
    Ok(json!({ "deploymentTargets": out }))
}

/// The instance's lifecycle events as far as the model knows them: all pending, running, or
/// done together.
fn lifecycle_events(status: TargetStatus) -> Vec<Value> {
    let event_status = match status {
        TargetStatus::Pending => "Pending",
        TargetStatus::InProgress => "InProgress",
        TargetStatus::Succeeded => "Succeeded",
        TargetStatus::Failed => "Failed",
        TargetStatus::Skipped => "Skipped",
    };
    [
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    .iter()
    .map(|name| json!({"lifecycleEventName": name, "status": event_status}))
    .collect()
}

/// StopDeployment [aws-behaviour §3.5]: `Pending` while in-flight targets wind down.
fn stop_deployment(cloud: &mut Cloud, input: &Value) -> Result<Value, Failure> {
    let id = string(input, "deploymentId")?.to_owned();
    cloud.stop_deployment(&id)?;
    Ok(json!({"status": "Succeeded", "statusMessage": format!("Deployment {id} stopped")}))
}
