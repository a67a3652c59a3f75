//! EC2 tags on instances (what CodeDeploy's tag sets select on), and the tags of Auto Scaling
//! groups, which may be propagated to the instances they launch.

use crate::Cloud;

/// One tag of an Auto Scaling group [aws-behaviour §2 Auto Scaling group tags].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgTag {
    pub key: String,
    pub value: String,
    /// Auto Scaling adds the tag to every instance it launches into the group from then on.
    pub propagate_at_launch: bool,
}

impl Cloud {
    /// CreateOrUpdateTags for one group: sets (or replaces) the tag with this key.
    pub fn tag_asg(&mut self, asg: &str, key: &str, value: &str, propagate_at_launch: bool) {
        let tags = self.asg_tags.entry(asg.to_owned()).or_default();
        tags.retain(|t| t.key != key);
        tags.push(AsgTag {
            key: key.to_owned(),
            value: value.to_owned(),
            propagate_at_launch,
        });
        tags.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// The tags a new instance of `asg` gets at launch: those with `PropagateAtLaunch`.
    pub(crate) fn propagated_tags(&self, asg: &str) -> Vec<(String, String)> {
        self.asg_tags
            .get(asg)
            .into_iter()
            .flatten()
            .filter(|t| t.propagate_at_launch)
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect()
    }

    /// DescribeTags over instances: `(instance, key, value)` for every tag of every instance,
    /// in (instance, key) order; the caller filters [aws-behaviour §5.6 DescribeTags].
    pub fn describe_instance_tags(&mut self) -> Vec<(String, String, String)> {
        self.count("DescribeTags");
        self.instances
            .values()
            .flat_map(|i| {
                i.tags
                    .iter()
                    .map(|(k, v)| (i.id.clone(), k.clone(), v.clone()))
            })
            .collect()
    }

    /// CreateTags: every tag (key, value) on every instance, in one call. Each instance whose
    /// tags changed publishes a `Tag Change on Resource` event [aws-behaviour §5.7 Tag change events].
    pub fn create_tags(&mut self, instances: &[String], tags: &[(&str, &str)]) {
        self.count("CreateTags");
        for id in instances {
            let mut changed: Vec<String> = Vec::new();
            if let Some(i) = self.instances.get_mut(id) {
                for (key, value) in tags {
                    let old = i.tags.insert((*key).to_owned(), (*value).to_owned());
                    if old.as_deref() != Some(*value) && !changed.iter().any(|k| k == key) {
                        changed.push((*key).to_owned());
                    }
                }
            }
            if !changed.is_empty() {
                self.publish_tag_change(id, &changed);
            }
        }
    }

    /// DeleteTags: every key from every instance, in one call. Each instance that lost a tag
    /// publishes a `Tag Change on Resource` event [aws-behaviour §5.7 Tag change events].
    pub fn delete_tags(&mut self, instances: &[String], keys: &[&str]) {
        self.count("DeleteTags");
        for id in instances {
            let mut changed: Vec<String> = Vec::new();
            if let Some(i) = self.instances.get_mut(id) {
                for key in keys {
                    if i.tags.remove(*key).is_some() && !changed.iter().any(|k| k == key) {
                        changed.push((*key).to_owned());
                    }
                }
            }
            if !changed.is_empty() {
                self.publish_tag_change(id, &changed);
            }
        }
    }
}
