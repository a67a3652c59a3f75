//! Which lifecycle hooks are turnstile's. An Auto Scaling group may carry other tools' hooks
//! on the same transition (each with its own token and event, docs/aws-behaviour.md §2
//! "Multiple hooks on one transition"); turnstile acts only on the ones named here.

use std::fmt;

/// The launch hook the stack creates (`LaunchHookName`'s default in `infra/template.yaml`).
pub const DEFAULT_LAUNCH_HOOK: &str = "turnstile-launch";
/// The terminate hook the stack creates: `${LaunchHookName}-terminate`.
pub const DEFAULT_TERMINATE_HOOK: &str = "turnstile-launch-terminate";

/// A set of hook names: exact names and name prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookNames {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl HookNames {
    /// Exactly one hook name.
    pub fn exact(name: impl Into<String>) -> Self {
        Self {
            names: vec![name.into()],
            prefixes: Vec::new(),
        }
    }

    /// Every hook whose name starts with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            names: Vec::new(),
            prefixes: vec![prefix.into()],
        }
    }

    /// Parses a comma-separated list (the functions' environment): each entry is a hook name,
    /// or a prefix when it ends with `*` (`turnstile-*`). Names follow Auto Scaling's rule for
    /// `LifecycleHookName`: 1 to 255 of `A-Z a-z 0-9 - _ /`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self {
            names: Vec::new(),
            prefixes: Vec::new(),
        };
        for entry in list.split(',').map(str::trim) {
            let (name, is_prefix) = match entry.strip_suffix('*') {
                Some(p) => (p, true),
                None => (entry, false),
            };
            if entry.is_empty() {
                return Err(format!(
                    "`{list}` has an empty entry: expected hook names or prefixes ending in *"
                ));
            }
            let valid = name.len() <= 255
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
            if !valid || (!is_prefix && name.is_empty()) {
                return Err(format!(
                    "`{entry}` is not a lifecycle hook name (1-255 of A-Z a-z 0-9 - _ /) or a prefix ending in *"
                ));
            }
            if is_prefix {
                out.prefixes.push(name.to_owned());
            } else {
                out.names.push(name.to_owned());
            }
        }
        Ok(out)
    }

    pub fn matches(&self, hook: &str) -> bool {
        self.names.iter().any(|n| n == hook) || self.prefixes.iter().any(|p| hook.starts_with(p))
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
}

/// The list form `parse` reads.
impl fmt::Display for HookNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .names
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|p| format!("{p}*")))
            .collect();
        f.write_str(&entries.join(","))
    }
}

/// The hooks turnstile owns: it completes and heartbeats only their actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHooks {
    pub launch: HookNames,
    pub terminate: HookNames,
}

impl Default for OwnedHooks {
    /// The hooks the stack creates with its default parameters.
    fn default() -> Self {
        Self {
            launch: HookNames::exact(DEFAULT_LAUNCH_HOOK),
            terminate: HookNames::exact(DEFAULT_TERMINATE_HOOK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_holds_names_and_prefixes() {
        let h = HookNames::parse("turnstile-launch, bootstrap-*").unwrap();
        assert!(h.matches("turnstile-launch"));
        assert!(h.matches("bootstrap-web"));
        assert!(!h.matches("turnstile-launch-2"));
        assert!(!h.matches("other"));
        assert_eq!(h.to_string(), "turnstile-launch,bootstrap-*");
    }

    #[test]
    fn a_lone_star_owns_every_hook() {
        assert_eq!(HookNames::parse("*"), Ok(HookNames::prefix("")));
        assert!(HookNames::prefix("").matches("anything"));
    }

    #[test]
    fn bad_entries_are_rejected_with_the_entry() {
        for bad in ["", "a,,b", "has space", "a*b", "x".repeat(256).as_str()] {
            assert!(HookNames::parse(bad).is_err(), "{bad:?}");
        }
        let err = HookNames::parse("ok,no good").unwrap_err();
        assert!(err.contains("`no good`"), "{err}");
    }
}
