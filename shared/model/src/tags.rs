//! EC2 tags on instances (what CodeDeploy's tag sets select on).

use crate::Cloud;

impl Cloud {
    /// CreateTags: every tag (key, value) on every instance, in one call.
    pub fn create_tags(&mut self, instances: &[String], tags: &[(&str, &str)]) {
        self.count("CreateTags");
        for id in instances {
            if let Some(i) = self.instances.get_mut(id) {
                for (key, value) in tags {
                    i.tags.insert((*key).to_owned(), (*value).to_owned());
                }
            }
        }
    }

    /// DeleteTags: every key from every instance, in one call.
    pub fn delete_tags(&mut self, instances: &[String], keys: &[&str]) {
        self.count("DeleteTags");
        for id in instances {
            if let Some(i) = self.instances.get_mut(id) {
                for key in keys {
                    i.tags.remove(*key);
                }
            }
        }
    }
}
