//! Auto Scaling (`Version=2011-01-01`) and EC2 (`Version=2016-11-15`) over the Query protocol:
//! a form-encoded POST, an XML `<Action>Response`, and the service's XML error document
//! (`ErrorResponse` for Auto Scaling, `Response/Errors` for EC2).

use std::collections::BTreeMap;

use hyper::StatusCode;
use turnstile_model::{ApiError, HookResult};

use super::{Reply, Simulator, xml_escape};

const AUTOSCALING_NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Form parameters, in order of appearance (last one wins for a repeated name).
type Params = BTreeMap<String, String>;

pub fn handle(sim: &Simulator, body: &[u8], request_id: &str) -> Reply {
    let params: Params = form_urlencoded::parse(body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    let ec2 = params.get("Version").map(String::as_str) == Some("2016-11-15");
    if sim.throttle() {
        return if ec2 {
            ec2_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded.",
                request_id,
            )
        } else {
            autoscaling_error("Throttling", "Rate exceeded", request_id)
        };
    }
    match (ec2, action.as_str()) {
        (false, "CompleteLifecycleAction") => complete(sim, &params, request_id),
        (false, "RecordLifecycleActionHeartbeat") => heartbeat(sim, &params, request_id),
        (false, "DescribeLifecycleHooks") => describe_hooks(sim, &params, request_id),
        (false, "DescribeAutoScalingGroups") => describe_groups(sim, &params, request_id),
        (false, "DescribeWarmPool") => describe_warm_pool(sim, &params, request_id),
        (true, "CreateTags") => tags(sim, &params, request_id, true),
        (true, "DescribeTags") => describe_tags(sim, &params, request_id),
        (true, "DeleteTags") => tags(sim, &params, request_id, false),
        (true, other) => ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("The action {other} is not valid for this web service."),
            request_id,
        ),
        (false, other) => autoscaling_error(
            "InvalidAction",
            &format!("The action {other} is not valid for this web service."),
            request_id,
        ),
    }
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, String> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")
        })
}

/// The lifecycle action a request names: group, hook, and the token or the instance id.
type ActionName<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn action_of(params: &Params) -> Result<ActionName<'_>, String> {
    let asg = required(params, "AutoScalingGroupName")?;
    let hook = required(params, "LifecycleHookName")?;
    let token = params.get("LifecycleActionToken").map(String::as_str);
    let instance = params.get("InstanceId").map(String::as_str);
    if token.is_none() && instance.is_none() {
        return Err("Either LifecycleActionToken or InstanceId must be specified".into());
    }
    Ok((asg, hook, token, instance))
}

fn complete(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let (asg, hook, token, instance) = match action_of(params) {
        Ok(x) => x,
        Err(m) => return autoscaling_error("ValidationError", &m, request_id),
    };
    let Some(result) = params
        .get("LifecycleActionResult")
        .and_then(|r| HookResult::parse(r))
    else {
        return autoscaling_error(
            "ValidationError",
            "LifecycleActionResult must be CONTINUE or ABANDON",
            request_id,
        );
    };
    let outcome = sim
        .cloud()
        .complete_lifecycle_action(asg, hook, token, instance, result);
    match outcome {
        Ok(()) => autoscaling_ok("CompleteLifecycleAction", request_id),
        Err(e) => autoscaling_api_error(&e, request_id),
    }
}

fn heartbeat(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let (asg, hook, token, instance) = match action_of(params) {
        Ok(x) => x,
        Err(m) => return autoscaling_error("ValidationError", &m, request_id),
    };
    match sim.cloud().record_heartbeat(asg, hook, token, instance) {
        Ok(()) => autoscaling_ok("RecordLifecycleActionHeartbeat", request_id),
        Err(e) => autoscaling_api_error(&e, request_id),
    }
}

/// DescribeLifecycleHooks: the group's hooks (all, or those named in
/// `LifecycleHookNames.member.N`), with the global timeout AWS derives [aws-behaviour §2 GlobalTimeout].
fn describe_hooks(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let asg = match required(params, "AutoScalingGroupName") {
        Ok(a) => a,
        Err(m) => return autoscaling_error("ValidationError", &m, request_id),
    };
    let names: Vec<String> = indexed(params, "LifecycleHookNames.member.", "")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut cloud = sim.cloud();
    *cloud.calls.entry("DescribeLifecycleHooks").or_default() += 1;
    let Some(group) = cloud.asgs.get(asg) else {
        return autoscaling_error(
            "ValidationError",
            &format!("Group {asg} not found"),
            request_id,
        );
    };
    let mut members = String::new();
    for h in group
        .hooks
        .iter()
        .filter(|h| names.is_empty() || names.contains(&h.name))
    {
        let transition = h.transition.as_api();
        let result = h.default_result.as_api();
        let metadata = h
            .metadata
            .as_deref()
            .map(|m| {
                format!(
                    "<NotificationMetadata>{}</NotificationMetadata>",
                    xml_escape(m)
                )
            })
            .unwrap_or_default();
        members.push_str(&format!(
            "<member><LifecycleHookName>{}</LifecycleHookName><AutoScalingGroupName>{}</AutoScalingGroupName><LifecycleTransition>{transition}</LifecycleTransition>{metadata}<HeartbeatTimeout>{}</HeartbeatTimeout><GlobalTimeout>{}</GlobalTimeout><DefaultResult>{result}</DefaultResult></member>",
            xml_escape(&h.name),
            xml_escape(asg),
            h.heartbeat_secs,
            h.global_ms() / 1000,
        ));
    }
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml",
        body: format!(
            r#"<DescribeLifecycleHooksResponse xmlns="{AUTOSCALING_NS}"><DescribeLifecycleHooksResult><LifecycleHooks>{members}</LifecycleHooks></DescribeLifecycleHooksResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></DescribeLifecycleHooksResponse>"#
        ),
    }
}

/// Group names per page unless `MaxRecords` says otherwise; also the most names a call may
/// give without raising `MaxRecords` (at most 100) [aws-behaviour §2 DescribeAutoScalingGroups].
const DEFAULT_MAX_RECORDS: usize = 50;
const MAX_MAX_RECORDS: usize = 100;

/// `MaxRecords` of a describe call (1 to 100; the default without it), or the error AWS
/// answers.
fn max_records(params: &Params, request_id: &str) -> Result<usize, Reply> {
    match params.get("MaxRecords").map(|v| v.parse::<usize>()) {
        None => Ok(DEFAULT_MAX_RECORDS),
        Some(Ok(n)) if (1..=MAX_MAX_RECORDS).contains(&n) => Ok(n),
        Some(_) => Err(autoscaling_error(
            "ValidationError",
            "MaxRecords must be between 1 and 100",
            request_id,
        )),
    }
}

/// DescribeAutoScalingGroups for the groups named in `AutoScalingGroupNames.member.N` (all
/// groups without names), `MaxRecords` groups per page with a `NextToken`, each with its
/// instances and their `LifecycleState` [aws-behaviour §2 DescribeAutoScalingGroups], and its
/// tags with `PropagateAtLaunch` [aws-behaviour §2 Auto Scaling group tags].
fn describe_groups(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let mut names: Vec<String> = indexed(params, "AutoScalingGroupNames.member.", "")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let max_records = match max_records(params, request_id) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    if names.len() > max_records.max(DEFAULT_MAX_RECORDS) {
        return autoscaling_error(
            "ValidationError",
            &format!(
                "The number of group names ({}) exceeds MaxRecords ({max_records})",
                names.len()
            ),
            request_id,
        );
    }
    let mut cloud = sim.cloud();
    if names.is_empty() {
        names = cloud.asgs.keys().cloned().collect();
    }
    let groups = cloud.describe_groups(&names);
    let tags = cloud.asg_tags.clone();
    let pooled: Vec<String> = cloud.warm_pools.keys().cloned().collect();
    drop(cloud);
    let start: usize = params
        .get("NextToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (start + max_records).min(groups.len());
    let mut members = String::new();
    for (asg, instances) in groups.get(start..end).unwrap_or_default() {
        let mut list = String::new();
        for (id, state) in instances {
            list.push_str(&format!(
                "<member><InstanceId>{}</InstanceId><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{}</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
                xml_escape(id),
                state.as_api()
            ));
        }
        let mut tag_list = String::new();
        for t in tags.get(asg).into_iter().flatten() {
            tag_list.push_str(&format!(
                "<member><ResourceId>{}</ResourceId><ResourceType>auto-scaling-group</ResourceType><Key>{}</Key><Value>{}</Value><PropagateAtLaunch>{}</PropagateAtLaunch></member>",
                xml_escape(asg),
                xml_escape(&t.key),
                xml_escape(&t.value),
                t.propagate_at_launch
            ));
        }
        let n = instances.len();
        // A group with a warm pool says so; its pool's instances are DescribeWarmPool's.
        let warm_pool = if pooled.contains(asg) {
            WARM_POOL_CONFIGURATION
        } else {
            ""
        };
        members.push_str(&format!(
            "<member><AutoScalingGroupName>{name}</AutoScalingGroupName><AutoScalingGroupARN>arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{name}</AutoScalingGroupARN><MinSize>0</MinSize><MaxSize>{n}</MaxSize><DesiredCapacity>{n}</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>us-east-1a</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><CreatedTime>2026-01-01T00:00:00Z</CreatedTime><Instances>{list}</Instances><Tags>{tag_list}</Tags>{warm_pool}</member>",
            name = xml_escape(asg),
        ));
    }
    let next = if end < groups.len() {
        format!("<NextToken>{end}</NextToken>")
    } else {
        String::new()
    };
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml",
        body: format!(
            r#"<DescribeAutoScalingGroupsResponse xmlns="{AUTOSCALING_NS}"><DescribeAutoScalingGroupsResult><AutoScalingGroups>{members}</AutoScalingGroups>{next}</DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>"#
        ),
    }
}

/// The `WarmPoolConfiguration` of a group with a warm pool (stopped instances, no minimum).
const WARM_POOL_CONFIGURATION: &str = "<WarmPoolConfiguration><MinSize>0</MinSize><PoolState>Stopped</PoolState></WarmPoolConfiguration>";

/// DescribeWarmPool for `AutoScalingGroupName`: the pool's configuration and its instances
/// with their `Warmed:*` lifecycle states, `MaxRecords` per page with a `NextToken`
/// [aws-behaviour §2 DescribeAutoScalingGroups and DescribeWarmPool; §2 Warm pools]. A group
/// without a pool has no configuration and no instances; an unknown group is a
/// `ValidationError`.
fn describe_warm_pool(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let asg = match required(params, "AutoScalingGroupName") {
        Ok(a) => a.to_owned(),
        Err(m) => return autoscaling_error("ValidationError", &m, request_id),
    };
    let max_records = match max_records(params, request_id) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let mut cloud = sim.cloud();
    let has_pool = cloud.warm_pools.contains_key(&asg);
    let Some(instances) = cloud.describe_warm_pool(&asg) else {
        return autoscaling_error(
            "ValidationError",
            &format!("Group {asg} not found"),
            request_id,
        );
    };
    drop(cloud);
    let start: usize = params
        .get("NextToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (start + max_records).min(instances.len());
    let mut list = String::new();
    for (id, state) in instances.get(start..end).unwrap_or_default() {
        list.push_str(&format!(
            "<member><InstanceId>{}</InstanceId><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{}</LifecycleState><HealthStatus>Healthy</HealthStatus></member>",
            xml_escape(id),
            state.as_api()
        ));
    }
    let next = if end < instances.len() {
        format!("<NextToken>{end}</NextToken>")
    } else {
        String::new()
    };
    let config = if has_pool {
        WARM_POOL_CONFIGURATION
    } else {
        ""
    };
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml",
        body: format!(
            r#"<DescribeWarmPoolResponse xmlns="{AUTOSCALING_NS}"><DescribeWarmPoolResult>{config}<Instances>{list}</Instances>{next}</DescribeWarmPoolResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></DescribeWarmPoolResponse>"#
        ),
    }
}

/// `ResourceId.N` and `Tag.N.Key` / `Tag.N.Value`, in N order.
fn indexed(params: &Params, prefix: &str, suffix: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, val)| {
            let n = k.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((n.parse().ok()?, val.clone()))
        })
        .collect();
    v.sort();
    v
}

/// CreateTags / DeleteTags. The call is all-or-nothing: if any resource id is unknown, nothing
/// is tagged and `InvalidInstanceID.NotFound` names the unknown ids.
fn tags(sim: &Simulator, params: &Params, request_id: &str, create: bool) -> Reply {
    let op = if create { "CreateTags" } else { "DeleteTags" };
    let ids: Vec<String> = indexed(params, "ResourceId.", "")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let keys = indexed(params, "Tag.", ".Key");
    let values: BTreeMap<u32, String> = indexed(params, "Tag.", ".Value").into_iter().collect();
    if ids.is_empty() || (create && keys.is_empty()) {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            &format!(
                "The request must contain the parameter {}",
                if ids.is_empty() {
                    "resourceIdSet"
                } else {
                    "tagSet"
                }
            ),
            request_id,
        );
    }
    tracing::debug!(op, ?ids, ?keys, "tags");
    let mut cloud = sim.cloud();
    let unknown: Vec<&String> = ids
        .iter()
        .filter(|i| !cloud.instances.contains_key(*i))
        .collect();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|i| format!("'{i}'")).collect();
        let message = if list.len() == 1 {
            format!("The instance ID {} does not exist", list.join(", "))
        } else {
            format!("The instance IDs {} do not exist", list.join(", "))
        };
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidInstanceID.NotFound",
            &message,
            request_id,
        );
    }
    if create {
        let tags: Vec<(&str, &str)> = keys
            .iter()
            .map(|(n, key)| (key.as_str(), values.get(n).map_or("", String::as_str)))
            .collect();
        cloud.create_tags(&ids, &tags);
    } else {
        let keys: Vec<&str> = keys.iter().map(|(_, key)| key.as_str()).collect();
        cloud.delete_tags(&ids, &keys);
    }
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml;charset=UTF-8",
        body: format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<{op}Response xmlns="{EC2_NS}"><requestId>{request_id}</requestId><return>true</return></{op}Response>"#
        ),
    }
}

/// The filter names DescribeTags accepts that the simulator models [aws-behaviour §5.6].
const TAG_FILTERS: &[&str] = &["resource-id", "resource-type", "key", "value"];

/// DescribeTags over instance tags [aws-behaviour §5.6 DescribeTags]: `Filter.N.Name` with
/// `Filter.N.Value.M` (values of one filter ORed, filters ANDed, exact matches), `MaxResults`
/// (5 to 1000) with a `NextToken`; without `MaxResults` every match in one answer.
fn describe_tags(sim: &Simulator, params: &Params, request_id: &str) -> Reply {
    let mut filters: BTreeMap<u32, (String, Vec<String>)> = BTreeMap::new();
    for (n, name) in indexed(params, "Filter.", ".Name") {
        let values = indexed(params, &format!("Filter.{n}.Value."), "")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        filters.insert(n, (name, values));
    }
    if let Some((name, _)) = filters
        .values()
        .find(|(n, _)| !TAG_FILTERS.contains(&n.as_str()))
    {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            &format!("The filter '{name}' is invalid"),
            request_id,
        );
    }
    let max = match params.get("MaxResults").map(|v| v.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if (5..=1000).contains(&n) => Some(n),
        Some(_) => {
            return ec2_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "Value for parameter MaxResults is invalid. Expecting a value between 5 and 1000.",
                request_id,
            );
        }
    };
    let of = |name: &str| -> Vec<Vec<String>> {
        filters
            .values()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (ids, keys, values, types) = (
        of("resource-id"),
        of("key"),
        of("value"),
        of("resource-type"),
    );
    let all = sim.cloud().describe_instance_tags();
    let matches = |wanted: &Vec<Vec<String>>, have: &str| {
        wanted.iter().all(|any| any.iter().any(|w| w == have))
    };
    let found: Vec<&(String, String, String)> = all
        .iter()
        .filter(|(id, k, v)| {
            matches(&ids, id)
                && matches(&keys, k)
                && matches(&values, v)
                && matches(&types, "instance")
        })
        .collect();
    let start: usize = params
        .get("NextToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = max.map_or(found.len(), |m| (start + m).min(found.len()));
    let mut items = String::new();
    for (id, k, v) in found.get(start..end).unwrap_or_default() {
        items.push_str(&format!(
            "<item><resourceId>{}</resourceId><resourceType>instance</resourceType><key>{}</key><value>{}</value></item>",
            xml_escape(id),
            xml_escape(k),
            xml_escape(v)
        ));
    }
    let next = if end < found.len() {
        format!("<nextToken>{end}</nextToken>")
    } else {
        String::new()
    };
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml;charset=UTF-8",
        body: format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeTagsResponse xmlns="{EC2_NS}"><requestId>{request_id}</requestId><tagSet>{items}</tagSet>{next}</DescribeTagsResponse>"#
        ),
    }
}

fn autoscaling_ok(op: &str, request_id: &str) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type: "text/xml",
        body: format!(
            r#"<{op}Response xmlns="{AUTOSCALING_NS}"><{op}Result/><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"#
        ),
    }
}

fn autoscaling_api_error(e: &ApiError, request_id: &str) -> Reply {
    match e {
        ApiError::NoActiveAction(m) => autoscaling_error("ValidationError", m, request_id),
        other => autoscaling_error("ValidationError", &format!("{other:?}"), request_id),
    }
}

/// Auto Scaling's error document: HTTP 400, `ErrorResponse/Error/{Type,Code,Message}`.
pub fn autoscaling_error(code: &str, message: &str, request_id: &str) -> Reply {
    Reply {
        status: StatusCode::BAD_REQUEST,
        content_type: "text/xml",
        body: format!(
            r#"<ErrorResponse xmlns="{AUTOSCALING_NS}"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"#,
            xml_escape(code),
            xml_escape(message)
        ),
    }
}

/// EC2's error document: `Response/Errors/Error/{Code,Message}` and `RequestID`.
pub fn ec2_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Reply {
    Reply {
        status,
        content_type: "text/xml;charset=UTF-8",
        body: format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"#,
            xml_escape(code),
            xml_escape(message)
        ),
    }
}
