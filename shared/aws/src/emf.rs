//! CloudWatch embedded metric format: one JSON line per metric on stdout, which Lambda ships to
//! CloudWatch Logs and CloudWatch turns into metrics.

use serde_json::{Map, Value, json};
use turnstile_core::{Alert, Metric, MetricUnit, Millis};

pub const NAMESPACE: &str = "Turnstile";

/// The EMF line for a metric.
pub fn metric_line(m: &Metric, now: Millis) -> String {
    let name = format!("{:?}", m.name);
    let unit = match m.unit {
        MetricUnit::Milliseconds => "Milliseconds",
        MetricUnit::Count => "Count",
    };
    let mut dims = Vec::new();
    let mut doc = Map::new();
    if let Some(asg) = &m.asg {
        dims.push("AutoScalingGroup");
        doc.insert("AutoScalingGroup".into(), Value::from(asg.clone()));
    }
    if let Some(g) = &m.group {
        dims.push("DeploymentGroup");
        doc.insert("DeploymentGroup".into(), Value::from(g.to_string()));
    }
    line(doc, &name, unit, m.value, dims, now)
}

/// Alerts are counted too (`Alert` by `Kind`), so an alarm can watch held groups.
pub fn alert_line(a: &Alert, now: Millis) -> String {
    let mut doc = Map::new();
    doc.insert("Kind".into(), Value::from(format!("{:?}", a.kind)));
    line(doc, "Alert", "Count", 1.0, vec!["Kind"], now)
}

fn line(
    doc: Map<String, Value>,
    name: &str,
    unit: &str,
    value: f64,
    dims: Vec<&str>,
    now: Millis,
) -> String {
    lines_doc(doc, &[(name, unit, value)], &dims, now)
}

/// One EMF document with several metrics sharing `dims` (whose values `doc` carries).
pub(crate) fn lines_doc(
    mut doc: Map<String, Value>,
    metrics: &[(&str, &str, f64)],
    dims: &[&str],
    now: Millis,
) -> String {
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.0,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": metrics
                    .iter()
                    .map(|(n, u, _)| json!({"Name": n, "Unit": u}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, _, value) in metrics {
        doc.insert((*name).into(), Value::from(*value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnstile_core::{GroupKey, MetricName};

    #[test]
    fn metric_lines_follow_the_embedded_metric_format() {
        let m = Metric {
            name: MetricName::StepDuration,
            value: 1234.0,
            unit: MetricUnit::Milliseconds,
            asg: Some("fleet".into()),
            group: Some(GroupKey::new("web", "web-fleet")),
        };
        let v: Value = serde_json::from_str(&metric_line(&m, Millis(42))).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 42);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Turnstile");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(["AutoScalingGroup", "DeploymentGroup"])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "StepDuration", "Unit": "Milliseconds"})
        );
        assert_eq!(v["StepDuration"], 1234.0);
        assert_eq!(v["DeploymentGroup"], "web/web-fleet");
    }
}
