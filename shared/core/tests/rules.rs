//! One table test per orchestration rule (docs/design.md "Rules"); each test is named `rule_<name>`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use turnstile_core::*;

const HB: u64 = 600; // heartbeat timeout, seconds

fn plan_json(steps: usize, extra: &str) -> String {
    let steps: Vec<String> = (0..steps)
        .map(|i| {
            format!(r#"{{"application":"app{i}","deploymentGroup":"dg{i}","gateTag":"gate-{i}"}}"#)
        })
        .collect();
    format!(r#"{{"version":1,"steps":[{}]{extra}}}"#, steps.join(","))
}

fn group(i: usize) -> GroupKey {
    GroupKey::new(format!("app{i}"), format!("dg{i}"))
}

struct H {
    engine: Engine,
    world: World,
    now: Millis,
    /// Answer every `CheckLeave` with "nothing else holds the instance".
    auto_clear: bool,
}

impl H {
    fn new() -> Self {
        Self {
            engine: Engine::default(),
            world: World::default(),
            now: Millis::from_secs(1_000_000),
            auto_clear: true,
        }
    }

    /// The answer to the final check: each group's current revision and active deployment,
    /// for the check the instance sent last (any time, if it is not verifying).
    fn revisions(&mut self, instance: &str, current: Vec<GroupRevision>) -> Decision {
        let asked_at = match self.phase(instance) {
            Phase::Verifying { since, .. } => since,
            _ => Millis(0),
        };
        self.feed(Input::RevisionsChecked {
            instance: instance.into(),
            current,
            asked_at,
        })
    }

    /// Decides (and, with `auto_clear`, answers leave checks), returning every command.
    fn feed(&mut self, input: Input) -> Decision {
        let mut d = self.feed_one(input);
        if self.auto_clear {
            let checks: Vec<Input> = d
                .commands
                .iter()
                .filter_map(|c| match c {
                    Command::CheckLeave {
                        instance, group, ..
                    } => Some(Input::LeaveChecked {
                        instance: instance.clone(),
                        group: group.clone(),
                        found: LeaveFound::Clear,
                    }),
                    _ => None,
                })
                .collect();
            for check in checks {
                let more = self.feed(check);
                d.commands.extend(more.commands);
            }
        }
        d
    }

    /// Decides, loading any record the store does not have as absent.
    fn feed_one(&mut self, input: Input) -> Decision {
        loop {
            match self.engine.decide(&mut self.world, &input, self.now) {
                Ok(d) => return d,
                Err(Missing(keys)) => self.world.insert_absent(keys),
            }
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus_secs(secs);
    }

    fn launch_with(
        &mut self,
        id: &str,
        token: &str,
        plan: &str,
        dest: Option<Place>,
        origin: Option<Place>,
    ) -> Decision {
        let event = LifecycleEvent {
            event_id: Some(EventId(format!("ev-{token}"))),
            action: ActionRef {
                asg: "asg".into(),
                hook: DEFAULT_LAUNCH_HOOK.into(),
                token: Some(token.into()),
                instance: id.into(),
            },
            origin,
            destination: dest,
            time: self.now,
        };
        self.feed(Input::Launch {
            event,
            plan: Plan::parse(plan),
            timeouts: HookTimeouts::from_heartbeat(HB),
        })
    }

    fn launch(&mut self, id: &str, steps: usize) -> Decision {
        self.launch_with(id, &format!("tok-{id}"), &plan_json(steps, ""), None, None)
    }

    fn tick_group(&mut self, g: usize) -> Decision {
        self.feed(Input::Tick(Key::Group(group(g))))
    }

    fn tick(&mut self, id: &str) -> Decision {
        self.feed(Input::Tick(Key::Instance(id.into())))
    }

    /// Answers the pending creation of group `g` with `outcome`.
    fn create_outcome(&mut self, g: usize, outcome: CreateOutcome) -> Decision {
        let intent = self.intent(g);
        self.feed(Input::CreateAttempted {
            group: group(g),
            intent,
            outcome,
        })
    }

    fn created(&mut self, g: usize, d: &str) -> Decision {
        self.create_outcome(
            g,
            CreateOutcome::Created {
                deployment: d.into(),
                revision: Some(Revision(format!("rev-{g}"))),
            },
        )
    }

    fn intent(&self, g: usize) -> IntentId {
        match &self.world.group(&group(g)).unwrap().active {
            Some(Active::Creating { intent, .. }) => intent.clone(),
            other => panic!("group {g} is not creating: {other:?}"),
        }
    }

    fn target(&mut self, g: usize, d: &str, id: &str, state: TargetState) -> Decision {
        self.feed(Input::TargetEvent {
            event_id: None,
            group: group(g),
            deployment: d.into(),
            instance: id.into(),
            state,
        })
    }

    /// Answers a poll of deployment `d` in group `g`.
    fn polled(
        &mut self,
        g: usize,
        d: &str,
        state: DeploymentState,
        targets: &[(&str, TargetState)],
    ) -> Decision {
        self.feed(Input::DeploymentPolled {
            group: group(g),
            deployment: d.into(),
            state,
            targets: targets.iter().map(|(i, t)| ((*i).into(), *t)).collect(),
        })
    }

    fn deployment(&mut self, g: usize, d: &str, state: DeploymentState) -> Decision {
        self.feed(Input::DeploymentEvent {
            event_id: None,
            group: group(g),
            deployment: d.into(),
            state,
        })
    }

    fn inst(&self, id: &str) -> &Instance {
        self.world.instance(&id.into()).unwrap()
    }

    fn phase(&self, id: &str) -> Phase {
        self.inst(id).phase.clone()
    }

    /// Launches `id` and runs its first deployment up to "created as `d`".
    fn launch_and_create(&mut self, id: &str, steps: usize, d: &str) {
        self.launch_batch_and_create(&[id], steps, d);
    }

    /// Launches `ids` together and creates group 0's deployment `d` for all of them; returns
    /// the decision on the creation.
    fn launch_batch_and_create(&mut self, ids: &[&str], steps: usize, d: &str) -> Decision {
        for id in ids {
            self.launch(id, steps);
        }
        self.advance(2);
        let dec = self.tick_group(0);
        assert!(has_create(&dec, 0), "{dec:?}");
        self.created(0, d)
    }
}

fn rev(g: usize, r: &str) -> GroupRevision {
    GroupRevision {
        group: group(g),
        revision: Some(r.into()),
        active: None,
        touched: None,
    }
}

fn has_create(d: &Decision, g: usize) -> bool {
    d.commands
        .iter()
        .any(|c| matches!(c, Command::CreateDeployment { group: k, .. } if *k == group(g)))
}

fn creates(d: &Decision) -> Vec<(GroupKey, Vec<InstanceId>)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::CreateDeployment {
                group, instances, ..
            } => Some((group.clone(), instances.clone())),
            _ => None,
        })
        .collect()
}

fn completes(d: &Decision) -> Vec<LifecycleResult> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::CompleteAction { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

fn alerts(d: &Decision) -> Vec<AlertKind> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Alert(a) => Some(a.kind),
            _ => None,
        })
        .collect()
}

fn stops(d: &Decision) -> Vec<DeploymentId> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::StopDeployment { deployment, .. } => Some(deployment.clone()),
            _ => None,
        })
        .collect()
}

fn keys(gates: &[Gate]) -> Vec<&str> {
    gates.iter().map(|g| g.key.as_str()).collect()
}

fn position(d: &Decision, f: impl Fn(&Command) -> bool) -> usize {
    d.commands
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("command missing in {:?}", d.commands))
}

#[test]
fn rule_gate_admission_opens_the_gate_before_creating_the_deployment() {
    let mut h = H::new();
    let d = h.launch("i-1", 2);
    assert!(creates(&d).is_empty(), "the batch window is still open");
    h.advance(2);
    let d = h.tick_group(0);
    let open = position(
        &d,
        |c| matches!(c, Command::OpenGate { gates, instances } if keys(gates) == ["gate-0"] && instances == &vec![InstanceId::from("i-1")]),
    );
    let create = position(&d, |c| matches!(c, Command::CreateDeployment { .. }));
    assert!(
        open < create,
        "gate must be open before CreateDeployment reads the tag set"
    );
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::OpenGate { gates, .. } if keys(gates) == ["gate-1"])),
        "only the current step's gate is opened"
    );
    match &d.commands[create] {
        Command::CreateDeployment { config, .. } => {
            assert_eq!(config.as_deref(), Some("CodeDeployDefault.AllAtOnce"))
        }
        _ => unreachable!(),
    }
}

#[test]
fn rule_batching_admits_every_waiting_instance_into_one_deployment() {
    let mut h = H::new();
    for i in 0..5 {
        h.launch(&format!("i-{i}"), 1);
    }
    h.advance(2);
    let d = h.tick_group(0);
    let c = creates(&d);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].1.len(), 5, "one deployment serves the whole batch");
}

#[test]
fn rule_batching_respects_max_batch() {
    let mut h = H::new();
    let plan = plan_json(1, r#","maxBatch":2"#);
    for i in 0..5 {
        h.launch_with(&format!("i-{i}"), &format!("t{i}"), &plan, None, None);
    }
    h.advance(2);
    let d = h.tick_group(0);
    assert_eq!(creates(&d)[0].1.len(), 2);
    assert_eq!(h.world.group(&group(0)).unwrap().waiting.len(), 3);
}

#[test]
fn rule_one_active_deployment_per_group_later_instances_wait() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.launch("i-2", 1);
    h.advance(5);
    let d = h.tick_group(0);
    assert!(creates(&d).is_empty(), "group busy with d-1: i-2 waits");
    h.target(0, "d-1", "i-1", TargetState::Succeeded);
    let d = h.deployment(0, "d-1", DeploymentState::Succeeded);
    let c = creates(&d);
    assert_eq!(
        c.len(),
        1,
        "freed group admits the waiting instance at once"
    );
    assert_eq!(c[0].1, vec![InstanceId::from("i-2")]);
}

#[test]
fn rule_per_instance_advance_when_own_target_finished() {
    let mut h = H::new();
    h.launch_batch_and_create(&["a", "b"], 2, "d-1");
    let d = h.target(0, "d-1", "a", TargetState::Succeeded);
    assert!(d.commands.iter().any(|c| matches!(c, Command::CheckLeave { gate, instance, .. } if gate.key == "gate-0" && instance.as_str() == "a")), "a's gate closes as it leaves");
    assert_eq!(
        h.phase("a").step(),
        Some(1),
        "a moved on while b's target is still running"
    );
    assert_eq!(h.phase("b").step(), Some(0));
    assert!(
        creates(&d).is_empty(),
        "a waits (up to the batch-follow window) for its batch-mate before group 1 is admitted"
    );
    assert_eq!(
        h.world.group(&group(1)).unwrap().admit_at,
        Some(h.now.plus_secs(300)),
        "bounded by batchFollowSecs"
    );
    let d = h.target(0, "d-1", "b", TargetState::Succeeded);
    let c = creates(&d);
    assert_eq!(
        c.len(),
        1,
        "last batch-mate done: group 1 admitted without waiting"
    );
    assert_eq!(c[0].1.len(), 2);
}

#[test]
fn rule_batch_mates_whose_results_came_together_move_on_together() {
    // One poll reports both targets done; each instance then picks up its result on its own
    // record. The first must not start group 1 alone: its sealed batch-mate is on its way.
    let mut h = H::new();
    h.launch_batch_and_create(&["a", "b"], 2, "d-1");
    h.sealed(0, "d-1", DeploymentState::InProgress);
    h.polled(
        0,
        "d-1",
        DeploymentState::Succeeded,
        &[("a", TargetState::Succeeded), ("b", TargetState::Succeeded)],
    );
    let d = h.tick("a");
    assert_eq!(h.phase("a").step(), Some(1));
    assert!(creates(&d).is_empty(), "b is coming: {d:?}");
    let d = h.tick("b");
    let c = creates(&d);
    assert_eq!(c.len(), 1, "b was the last: group 1 admitted at once");
    assert_eq!(c[0].1.len(), 2, "one deployment for both: {c:?}");
}

fn woken(d: &Decision) -> Vec<&str> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Wakeup {
                key: Key::Instance(i),
                ..
            } => Some(i.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_poll_wakes_only_members_with_a_result_to_read() {
    // Waking every member on every poll of a running deployment cost one decision per member
    // per poll (each reading the group record): at 1,000 members, 1,000 a minute for nothing.
    let mut h = H::new();
    h.launch_batch_and_create(&["a", "b", "c"], 1, "d-1");
    h.sealed(0, "d-1", DeploymentState::InProgress);
    let running = [
        ("a", TargetState::InProgress),
        ("b", TargetState::Succeeded),
        ("c", TargetState::Pending),
    ];
    let d = h.polled(0, "d-1", DeploymentState::InProgress, &running);
    assert_eq!(woken(&d), vec!["b"], "only b has a result: {d:?}");
    // b's wake was lost: the next answer wakes it again, still not the pending ones.
    h.advance(60);
    let d = h.polled(
        0,
        "d-1",
        DeploymentState::InProgress,
        &[
            ("a", TargetState::InProgress),
            ("c", TargetState::InProgress),
        ],
    );
    assert_eq!(woken(&d), vec!["b"], "{d:?}");
    // The deployment ends: everyone with a result is woken.
    let d = h.polled(
        0,
        "d-1",
        DeploymentState::Succeeded,
        &[("a", TargetState::Succeeded), ("c", TargetState::Succeeded)],
    );
    assert_eq!(woken(&d), vec!["a", "b", "c"], "{d:?}");
}

#[test]
fn rule_a_failed_batch_mate_is_not_waited_for() {
    let mut h = H::new();
    h.launch_batch_and_create(&["a", "b"], 2, "d-1");
    h.sealed(0, "d-1", DeploymentState::InProgress);
    h.polled(
        0,
        "d-1",
        DeploymentState::Failed,
        &[("a", TargetState::Succeeded), ("b", TargetState::Failed)],
    );
    let d = h.tick("a");
    assert_eq!(h.phase("a").step(), Some(1));
    let c = creates(&d);
    assert_eq!(c.len(), 1, "b retries step 0, so a goes on alone: {d:?}");
    assert_eq!(c[0].1, vec![InstanceId::from("a")]);
}

#[test]
fn rule_plan_order_steps_run_in_sequence() {
    let mut h = H::new();
    h.launch_and_create("i-1", 3, "d-0");
    assert!(
        h.world.group(&group(1)).is_none(),
        "nothing waits on step 2 before step 1 is done"
    );
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    assert_eq!(creates(&d)[0].0, group(1));
    h.created(1, "d-1");
    let d = h.target(1, "d-1", "i-1", TargetState::Succeeded);
    assert_eq!(creates(&d)[0].0, group(2));
}

#[test]
fn rule_foreign_deployment_is_waited_on_not_fought() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.advance(2);
    h.tick_group(0);
    let d = h.create_outcome(
        0,
        CreateOutcome::Busy {
            deployment: "d-user".into(),
        },
    );
    assert!(d.commands.iter().any(|c| matches!(c, Command::CloseGate { instances, .. } if instances == &vec![InstanceId::from("i-1")])), "gate closed while someone else deploys");
    let g = h.world.group(&group(0)).unwrap();
    assert!(matches!(g.active, Some(Active::Foreign { .. })));
    assert!(g.waiting.contains_key(&"i-1".into()));
    h.advance(10);
    let d = h.tick_group(0);
    assert!(
        creates(&d).is_empty(),
        "never a second create while the group is busy"
    );
    let d = h.deployment(0, "d-user", DeploymentState::Succeeded);
    assert_eq!(
        creates(&d).len(),
        1,
        "admitted as soon as the foreign deployment ends"
    );
}

#[test]
fn rule_foreign_deployment_seen_by_event_blocks_admission() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.deployment(0, "d-user", DeploymentState::Started);
    h.advance(5);
    let d = h.tick_group(0);
    assert!(creates(&d).is_empty());
    // the end event is lost: the poll finds the group free
    h.advance(60);
    let d = h.tick_group(0);
    assert!(d.commands.iter().any(|c| matches!(c, Command::PollDeployment { deployment, .. } if deployment.as_str() == "d-user")));
    let d = h.polled(0, "d-user", DeploymentState::Succeeded, &[]);
    assert_eq!(creates(&d).len(), 1);
}

#[test]
fn rule_heartbeat_below_half_the_heartbeat_timeout() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    let wake = h.inst("i-1").wake_at.unwrap();
    assert!(
        wake.since(h.inst("i-1").started_at) < HB * 1000 / 2,
        "timer set before half the timeout"
    );
    h.now = h.inst("i-1").started_at.plus_secs(HB * 2 / 5);
    let d = h.tick("i-1");
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. }))
    );
    let d = h.tick("i-1");
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "no heartbeat storm"
    );
}

#[test]
fn rule_heartbeat_never_past_the_global_timeout() {
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"timeoutSecs":60}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    let start = h.inst("i-1").started_at;
    let global = h.inst("i-1").global_deadline;
    assert_eq!(global, start.plus_secs(HB * 100));
    h.now = global.plus_secs(0).plus_ms(0);
    h.now = Millis(global.0 - HB * 1000 + 1);
    h.world
        .instances
        .get_mut(&"i-1".into())
        .unwrap()
        .as_mut()
        .unwrap()
        .last_heartbeat = Millis(global.0 - HB * 1000 + 1);
    h.advance(HB);
    let d = h.tick("i-1");
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "a heartbeat cannot extend past the global timeout"
    );
}

#[test]
fn rule_fail_early_when_the_plan_cannot_fit_the_global_timeout() {
    let mut h = H::new();
    // 3 steps × 12 h > 100 × 600 s
    let plan = plan_json(3, r#","defaults":{"timeoutSecs":43200}"#);
    let d = h.launch_with("i-1", "t", &plan, None, None);
    assert_eq!(
        alerts(&d),
        vec![AlertKind::PlanCannotFit, AlertKind::InstanceHeld]
    );
    assert!(
        completes(&d).is_empty(),
        "held, not abandoned: every replacement would fail the same way"
    );
    assert!(matches!(h.phase("i-1"), Phase::Held { .. }));
    assert!(creates(&d).is_empty());
}

#[test]
fn rule_fail_early_while_waiting_when_the_rest_cannot_fit() {
    let mut h = H::new();
    let plan = plan_json(
        2,
        r#","defaults":{"timeoutSecs":3600,"onFailure":"abandon"}"#,
    );
    h.launch_with("i-1", "t", &plan, None, None);
    h.deployment(0, "d-user", DeploymentState::Started); // blocks step 1 for a long time
    let global = h.inst("i-1").global_deadline;
    h.now = Millis(global.0 - 7200 * 1000 + 1);
    let d = h.tick("i-1");
    assert_eq!(completes(&d), vec![LifecycleResult::Abandon]);
    assert!(alerts(&d).contains(&AlertKind::PlanCannotFit));
    assert!(
        !h.world
            .group(&group(0))
            .map(|g| g.waiting.contains_key(&"i-1".into()))
            .unwrap_or(false)
    );
}

#[test]
fn rule_retries_with_exponential_backoff_then_abandon() {
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"retries":2,"retryBackoffSecs":10}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    let mut backoffs = vec![];
    for attempt in 1..=3 {
        h.advance(2);
        let d = h.tick_group(0);
        assert_eq!(creates(&d).len(), 1, "attempt {attempt}");
        let dep = format!("d-{attempt}");
        h.created(0, &dep);
        let d = h.target(0, &dep, "i-1", TargetState::Failed);
        h.deployment(0, &dep, DeploymentState::Failed);
        if attempt < 3 {
            let Phase::Running {
                wait: StepWait::Backoff { until },
                ..
            } = h.phase("i-1")
            else {
                panic!("expected back-off, got {:?}", h.phase("i-1"));
            };
            backoffs.push(until.since(h.now) / 1000);
            assert!(completes(&d).is_empty());
            h.now = until;
            h.tick("i-1");
        } else {
            assert_eq!(completes(&d), vec![LifecycleResult::Abandon]);
        }
    }
    assert_eq!(backoffs, vec![10, 20], "exponential back-off");
}

/// Launches `id` with a plan of `steps` that holds on failure, and fails its first step's
/// only attempt in deployment `d`.
fn held_after_its_first_step_failed(h: &mut H, id: &str, steps: usize, d: &str) {
    let plan = plan_json(steps, r#","defaults":{"retries":0,"onFailure":"hold"}"#);
    h.launch_with(id, &format!("t-{id}"), &plan, None, None);
    h.advance(2);
    h.tick_group(0);
    h.created(0, d);
    h.target(0, d, id, TargetState::Failed);
    h.deployment(0, d, DeploymentState::Failed);
}

#[test]
fn rule_history_keeps_each_attempt_with_its_deployment_result_and_the_alerts() {
    // `turnstile show` reads what happened from the record alone: no log search.
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"retries":1,"retryBackoffSecs":10}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    for (attempt, end) in [(1, TargetState::Failed), (2, TargetState::Succeeded)] {
        h.advance(2);
        h.tick_group(0);
        let dep = format!("d-{attempt}");
        h.created(0, &dep);
        h.target(0, &dep, "i-1", end);
        if attempt == 1 {
            h.deployment(0, &dep, DeploymentState::Failed);
            let Phase::Running {
                wait: StepWait::Backoff { until },
                ..
            } = h.phase("i-1")
            else {
                panic!("expected back-off, got {:?}", h.phase("i-1"));
            };
            h.now = until;
            h.tick("i-1");
        }
    }
    let log: Vec<(Option<String>, bool)> = h.inst("i-1").steps[0]
        .log
        .iter()
        .map(|a| {
            (
                a.deployment.as_ref().map(ToString::to_string),
                a.result == AttemptResult::Succeeded,
            )
        })
        .collect();
    assert_eq!(
        log,
        vec![(Some("d-1".into()), false), (Some("d-2".into()), true)],
        "{:?}",
        h.inst("i-1").steps[0].log
    );
    assert!(
        h.inst("i-1").steps[0]
            .log
            .iter()
            .all(|a| a.queued_at.is_some())
    );

    // Heartbeats confirmed are counted; alerts about the instance are kept, the last few.
    let mut h = H::new();
    h.launch("i-2", 1);
    let at = h.now.plus_secs(1);
    h.feed(Input::HeartbeatRecorded {
        instance: "i-2".into(),
        token: Some("tok-i-2".into()),
        at,
    });
    assert_eq!(h.inst("i-2").heartbeats, 1);
    // A held instance's alert is in its record.
    let mut h = H::new();
    held_after_its_first_step_failed(&mut h, "i-3", 1, "d-3");
    assert!(
        matches!(h.phase("i-3"), Phase::Held { .. }),
        "{:?}",
        h.phase("i-3")
    );
    let kinds: Vec<AlertKind> = h.inst("i-3").alerts.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AlertKind::InstanceHeld), "{kinds:?}");
    let mut inst = h.inst("i-3").clone();
    for n in 0..20 {
        inst.note_alert(AlertNote {
            at: Millis(n),
            kind: AlertKind::InstanceHeld,
            message: format!("alert {n}"),
        });
    }
    assert_eq!(inst.alerts.len(), ALERT_NOTES, "bounded");
    assert_eq!(
        inst.alerts.last().unwrap().message,
        "alert 19",
        "the latest kept"
    );
}

#[test]
fn rule_continue_only_when_all_steps_succeeded_after_revision_check() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-0");
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    assert!(completes(&d).is_empty());
    h.created(1, "d-1");
    let d = h.target(1, "d-1", "i-1", TargetState::Succeeded);
    assert!(
        completes(&d).is_empty(),
        "no CONTINUE before the revision check"
    );
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::CheckRevisions { groups, .. } if groups.len() == 2))
    );
    let d = h.revisions("i-1", vec![rev(0, "rev-0"), rev(1, "rev-1")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
    let last_gate = d
        .commands
        .iter()
        .rposition(|c| matches!(c, Command::OpenGate { .. }))
        .unwrap();
    let complete = position(&d, |c| matches!(c, Command::CompleteAction { .. }));
    assert!(
        last_gate < complete,
        "every gate opens before the action completes"
    );
    let opened: Vec<_> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::OpenGate { gates, .. } => Some(keys(gates)),
            _ => None,
        })
        .collect();
    assert_eq!(
        opened,
        vec![vec!["gate-0", "gate-1"]],
        "every gate in one call"
    );
    h.feed(Input::ActionCompleted {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
    });
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::InService,
            ..
        }
    ));
}

#[test]
fn rule_final_revision_check_reruns_a_step_whose_group_moved_on() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.created(1, "d-1");
    h.target(1, "d-1", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    let d = h.revisions("i-1", vec![rev(0, "rev-0-NEW"), rev(1, "rev-1")]);
    assert!(completes(&d).is_empty());
    assert_eq!(h.phase("i-1").step(), Some(0), "stale step 1 runs again");
    assert!(
        creates(&d).iter().any(|(g, _)| *g == group(0)),
        "stale step re-admitted at once when the group is free"
    );
}

/// Drives `i-1` through a one-step plan to its final check, unanswered.
fn verifying(h: &mut H) -> Millis {
    h.launch_and_create("i-1", 1, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    match h.phase("i-1") {
        Phase::Verifying { since, .. } => since,
        other => panic!("not verifying: {other:?}"),
    }
}

fn checks(d: &Decision) -> usize {
    d.commands
        .iter()
        .filter(|c| matches!(c, Command::CheckRevisions { .. }))
        .count()
}

#[test]
fn rule_final_check_unanswered_is_sent_again_soon_and_waiting_less_often() {
    // Stress mode, seed 18076: after a probed CONTINUE every gate was still open, and the
    // check that closes them first failed again and again, 30 s apart, past the 150 s gate
    // hygiene allows. Unanswered, it is sent again after 10 s (an answer to the earlier one
    // is then ignored); waiting on someone else's deployment, it looks every 30 s.
    let mut h = H::new();
    verifying(&mut h);
    h.advance(10);
    let d = h.tick("i-1");
    assert_eq!(checks(&d), 1, "{d:?}");
    position(&d, |c| matches!(c, Command::CloseGate { .. }));
    h.revisions(
        "i-1",
        vec![GroupRevision {
            active: Some("d-user".into()),
            ..rev(0, "rev-0")
        }],
    );
    h.advance(10);
    assert_eq!(checks(&h.tick("i-1")), 0, "waiting on d-user");
    h.advance(20);
    assert_eq!(checks(&h.tick("i-1")), 1, "30 s later: looks again");
}

#[test]
fn rule_final_check_an_answer_to_an_earlier_check_is_ignored() {
    // A slow invocation's answer must not open the gates and complete the instance while the
    // check sent again since, and its close of every gate, is still on its way.
    let mut h = H::new();
    let first = verifying(&mut h);
    h.advance(10);
    h.tick("i-1");
    let d = h.feed(Input::RevisionsChecked {
        instance: "i-1".into(),
        current: vec![rev(0, "rev-0")],
        asked_at: first,
    });
    assert!(completes(&d).is_empty(), "{d:?}");
    assert!(d.ignored.is_some());
    let d = h.revisions("i-1", vec![rev(0, "rev-0")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
}

/// Drives `i-1` through a one-step plan to a CONTINUE that no answer confirms, then to the
/// moment it is due again. Returns that decision.
fn unconfirmed_continue(h: &mut H) -> Decision {
    h.launch_and_create("i-1", 1, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    let d = h.revisions("i-1", vec![rev(0, "rev-0")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
    h.advance(31);
    h.tick("i-1")
}

fn heartbeat_ok(h: &mut H) -> Decision {
    let at = h.now;
    h.feed(Input::HeartbeatRecorded {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
        at,
    })
}

#[test]
fn rule_an_unconfirmed_continue_is_probed_not_resent_blindly() {
    let mut h = H::new();
    let d = unconfirmed_continue(&mut h);
    assert!(
        completes(&d).is_empty(),
        "no CONTINUE before knowing whether the first one landed: {:?}",
        d.commands
    );
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "a heartbeat probes whether the action is still pending"
    );
    // It is: the first CONTINUE never landed. Meanwhile a user deployed a new revision.
    let d = heartbeat_ok(&mut h);
    assert!(
        position(&d, |c| matches!(c, Command::CloseGate { .. }))
            < position(&d, |c| matches!(c, Command::CheckRevisions { .. })),
        "the gates opened for the CONTINUE close before the final check runs again"
    );
    let d = h.revisions("i-1", vec![rev(0, "rev-0-NEW")]);
    assert!(completes(&d).is_empty(), "the stale step runs again first");
    assert_eq!(h.phase("i-1").step(), Some(0));
}

#[test]
fn rule_an_unanswered_probe_is_sent_again_as_soon_as_a_heartbeat() {
    // While a CONTINUE that never landed is probed, every gate is open on an instance still
    // in Pending:Wait, and any deployment created meanwhile reaches it (stress mode, seeds
    // 2472, 6245 and 8136: two users' deployments landed on one instance while a probe that
    // died with its invocation waited 30 s to be sent again).
    let mut h = H::new();
    unconfirmed_continue(&mut h);
    let probes = |d: &Decision| {
        d.commands
            .iter()
            .filter(|c| matches!(c, Command::RecordHeartbeat { .. }))
            .count()
    };
    h.advance(5);
    assert_eq!(
        probes(&h.tick("i-1")),
        0,
        "the probe may still be in flight"
    );
    h.advance(5);
    assert_eq!(
        probes(&h.tick("i-1")),
        1,
        "unanswered after 10 s: probed again"
    );
    assert!(
        matches!(h.phase("i-1"), Phase::Completing { probing: true, .. }),
        "{:?}",
        h.phase("i-1")
    );
}

fn check_since(d: &Decision) -> Vec<Option<Millis>> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::CheckRevisions { since, .. } => Some(*since),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_final_check_after_a_probed_continue_looks_back_and_runs_a_touched_step_again() {
    // Stress mode, seeds 20577 and 28568: while the gates were open for a CONTINUE that never
    // landed, a user's deployment of another revision reached the instance, succeeded there,
    // failed elsewhere and ended before the final check ran again. The group's target revision
    // was still ours and nothing was active on the group, so the check found the step done and
    // the instance went in service with the user's revision (invariant 6).
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
    let opened = h.now;
    let d = h.revisions("i-1", vec![rev(0, "rev-0")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
    h.advance(31);
    h.tick("i-1");
    let d = heartbeat_ok(&mut h);
    assert_eq!(
        check_since(&d),
        vec![Some(opened)],
        "the check looks back to when the gates opened"
    );
    let d = h.revisions(
        "i-1",
        vec![GroupRevision {
            touched: Some("d-user".into()),
            ..rev(0, "rev-0")
        }],
    );
    assert!(completes(&d).is_empty(), "{d:?}");
    assert_eq!(
        h.phase("i-1").step(),
        Some(0),
        "the touched step runs again"
    );
    assert_eq!(creates(&d)[0].0, group(0));
}

#[test]
fn rule_final_check_looks_back_only_after_a_probed_continue() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    h.advance(10);
    assert_eq!(check_since(&h.tick("i-1")), vec![None]);
}

#[test]
fn rule_a_probed_continue_that_had_landed_finishes_in_service() {
    let mut h = H::new();
    unconfirmed_continue(&mut h);
    let d = h.feed(Input::ActionGone {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
    });
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::CloseGate { .. })),
        "an instance in service keeps its gates"
    );
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::InService,
            ..
        }
    ));
}

#[test]
fn rule_a_deployment_waited_on_in_the_final_check_runs_the_step_again() {
    let mut h = H::new();
    unconfirmed_continue(&mut h);
    heartbeat_ok(&mut h);
    let busy = GroupRevision {
        active: Some("d-user".into()),
        ..rev(0, "rev-0")
    };
    let d = h.revisions("i-1", vec![busy]);
    assert!(completes(&d).is_empty(), "waits for the user's deployment");
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
    // The gates were open for the CONTINUE, so the user's deployment may have reached the
    // instance with anything (a rollback, say): the step runs again at the current revision.
    h.advance(31);
    h.tick("i-1");
    let d = h.revisions("i-1", vec![rev(0, "rev-0")]);
    assert!(completes(&d).is_empty());
    assert_eq!(h.phase("i-1").step(), Some(0));
    assert!(creates(&d).iter().any(|(g, _)| *g == group(0)));
}

#[test]
fn rule_gates_withheld_for_finished_steps() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-0");
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    let close = position(
        &d,
        |c| matches!(c, Command::CheckLeave { gate, .. } if gate.key == "gate-0"),
    );
    let open = position(
        &d,
        |c| matches!(c, Command::OpenGate { gates, .. } if keys(gates) == ["gate-1"]),
    );
    assert!(
        close < open,
        "the finished step's gate closes before the next one opens"
    );
}

#[test]
fn rule_skipped_target_counts_only_if_the_deployment_succeeded() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.target(0, "d-1", "i-1", TargetState::Skipped);
    assert_eq!(
        h.phase("i-1").step(),
        Some(0),
        "skipped: undecided while the deployment runs"
    );
    let d = h.deployment(0, "d-1", DeploymentState::Succeeded);
    assert!(d.commands.iter().any(
        |c| matches!(c, Command::Wakeup { key: Key::Instance(i), .. } if i.as_str() == "i-1")
    ));
    h.tick("i-1");
    assert!(
        matches!(h.phase("i-1"), Phase::Verifying { .. }),
        "up to date = success"
    );

    let mut h = H::new();
    h.launch_and_create("i-2", 1, "d-2");
    h.target(0, "d-2", "i-2", TargetState::Skipped);
    h.deployment(0, "d-2", DeploymentState::Failed);
    h.tick("i-2");
    assert!(
        matches!(
            h.phase("i-2"),
            Phase::Running {
                wait: StepWait::Backoff { .. },
                ..
            }
        ),
        "not deployed = failed attempt"
    );
}

#[test]
fn rule_termination_stops_a_deployment_serving_only_that_instance() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    h.launch("i-2", 2); // waits behind d-1
    let ev = LifecycleEvent {
        event_id: Some("term-1".into()),
        action: ActionRef {
            asg: "asg".into(),
            hook: DEFAULT_TERMINATE_HOOK.into(),
            token: Some("tt".into()),
            instance: "i-1".into(),
        },
        origin: None,
        destination: None,
        time: h.now,
    };
    let d = h.feed(Input::Terminate { event: ev });
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert!(d.commands.iter().any(|c| matches!(c, Command::CompleteAction { action, result: LifecycleResult::Continue } if action.hook == DEFAULT_TERMINATE_HOOK)));
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::Terminated,
            ..
        }
    ));
    // the stopped deployment frees the group for i-2
    let d = h.deployment(0, "d-1", DeploymentState::Stopped);
    assert_eq!(creates(&d)[0].1, vec![InstanceId::from("i-2")]);
}

#[test]
fn rule_termination_keeps_a_deployment_serving_others() {
    let mut h = H::new();
    h.launch_batch_and_create(&["a", "b"], 1, "d-1");
    let ev = LifecycleEvent {
        event_id: None,
        action: ActionRef {
            asg: "asg".into(),
            hook: DEFAULT_TERMINATE_HOOK.into(),
            token: Some("tt".into()),
            instance: "a".into(),
        },
        origin: None,
        destination: None,
        time: h.now,
    };
    let d = h.feed(Input::Terminate { event: ev });
    assert!(stops(&d).is_empty(), "b still needs d-1");
    let g = h.world.group(&group(0)).unwrap();
    assert!(
        !g.instances().contains(&InstanceId::from("a")),
        "a released from the group"
    );
}

fn lifecycle_event(h: &H, id: &str, hook: &str, token: &str) -> LifecycleEvent {
    LifecycleEvent {
        event_id: Some(EventId(format!("ev-{token}"))),
        action: ActionRef {
            asg: "asg".into(),
            hook: hook.into(),
            token: Some(token.into()),
            instance: id.into(),
        },
        origin: None,
        destination: None,
        time: h.now,
    }
}

/// Another tool's launch hook on the same group: its own token and event, and metadata that is
/// no plan of turnstile's.
fn foreign_launch(h: &mut H, id: &str, token: &str) -> Decision {
    let event = lifecycle_event(h, id, "bootstrap-agent", token);
    h.feed(Input::Launch {
        event,
        plan: Plan::parse("{\"role\":\"web\"}"),
        timeouts: HookTimeouts::from_heartbeat(HB),
    })
}

#[test]
fn rule_foreign_hook_launch_is_acknowledged_and_never_touched() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    let before = h.world.clone();
    let d = foreign_launch(&mut h, "i-1", "tok-other");
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert!(
        d.changed.is_empty() && before == h.world,
        "nothing read or changed"
    );
    let why = d.ignored.unwrap();
    assert!(
        why.contains("bootstrap-agent") && why.contains("left to its owner"),
        "{why}"
    );
    // turnstile's own pipeline is neither ended nor replaced: same token, still deploying.
    assert_eq!(
        h.inst("i-1").action.token.as_ref().map(|t| t.as_str()),
        Some("tok-i-1")
    );
    assert_eq!(h.inst("i-1").action.hook, DEFAULT_LAUNCH_HOOK);
    assert!(!h.phase("i-1").is_finished());
    // and its heartbeats go to turnstile's action only.
    h.now = h.inst("i-1").started_at.plus_secs(HB * 2 / 5);
    let d = h.tick("i-1");
    let beats: Vec<&ActionRef> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::RecordHeartbeat { action } => Some(action),
            _ => None,
        })
        .collect();
    assert!(!beats.is_empty(), "{:?}", d.commands);
    assert!(beats.iter().all(|a| a.hook == DEFAULT_LAUNCH_HOOK
        && a.token.as_ref().map(|t| t.as_str()) == Some("tok-i-1")));
}

#[test]
fn rule_foreign_hook_launch_alone_starts_no_pipeline_and_raises_no_alert() {
    let mut h = H::new();
    let d = foreign_launch(&mut h, "i-9", "tok-other");
    assert!(
        d.commands.is_empty(),
        "no alert for a plan that is not ours: {:?}",
        d.commands
    );
    assert!(h.world.instance(&"i-9".into()).is_none());
    assert!(d.ignored.unwrap().contains("bootstrap-agent"));
}

#[test]
fn rule_foreign_hook_terminate_ends_the_pipeline_but_is_never_completed() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    let event = lifecycle_event(&h, "i-1", "drain-logs", "tok-drain");
    let d = h.feed(Input::Terminate { event });
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::CompleteAction { .. })),
        "another tool's terminate action is its owner's to complete: {:?}",
        d.commands
    );
    assert!(d.ignored.as_ref().unwrap().contains("drain-logs"));
    // The instance is going away: the pipeline ends and its lone deployment is stopped.
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::Terminated,
            ..
        }
    ));
}

#[test]
fn rule_foreign_hook_prefix_owns_every_matching_hook_and_no_other() {
    let mut h = H::new();
    h.engine.config.owned_hooks = OwnedHooks {
        launch: HookNames::prefix("turnstile-"),
        terminate: HookNames::prefix("turnstile-"),
    };
    let event = lifecycle_event(&h, "i-1", "turnstile-web-fleet", "tok-1");
    let d = h.feed(Input::Launch {
        event,
        plan: Plan::parse(&plan_json(1, "")),
        timeouts: HookTimeouts::from_heartbeat(HB),
    });
    assert!(d.ignored.is_none(), "{d:?}");
    assert!(!h.phase("i-1").is_finished());
    let d = foreign_launch(&mut h, "i-2", "tok-2");
    assert!(d.ignored.unwrap().contains("bootstrap-agent"));
    let event = lifecycle_event(&h, "i-1", "turnstile-web-fleet-terminate", "tok-t");
    let d = h.feed(Input::Terminate { event });
    assert!(d.commands.iter().any(|c| matches!(c, Command::CompleteAction { action, result: LifecycleResult::Continue } if action.hook == "turnstile-web-fleet-terminate")));
}

#[test]
fn rule_action_gone_ends_the_pipeline_without_retrying() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    let d = h.feed(Input::ActionGone {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
    });
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert!(completes(&d).is_empty(), "a gone action is never completed");
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::Gone,
            ..
        }
    ));
    let d = h.tick("i-1");
    assert!(
        d.commands.is_empty(),
        "nothing more is done for a gone instance: {:?}",
        d.commands
    );
}

#[test]
fn rule_action_gone_while_completing_means_done_not_retry() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.target(0, "d-1", "i-1", TargetState::Succeeded);
    h.revisions("i-1", vec![rev(0, "rev-0")]);
    assert!(matches!(h.phase("i-1"), Phase::Completing { .. }));
    h.feed(Input::ActionGone {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
    });
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::InService,
            ..
        }
    ));
}

#[test]
fn rule_completion_is_recorded_before_it_is_sent_and_resent_with_the_same_result() {
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"retries":0}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    h.advance(2);
    h.tick_group(0);
    h.created(0, "d-1");
    let d = h.target(0, "d-1", "i-1", TargetState::Failed);
    assert_eq!(completes(&d), vec![LifecycleResult::Abandon]);
    assert!(
        matches!(
            h.phase("i-1"),
            Phase::Completing {
                result: LifecycleResult::Abandon,
                ..
            }
        ),
        "the decision is in the record the runner persists before executing"
    );
    h.advance(31);
    let d = h.tick("i-1");
    assert_eq!(
        completes(&d),
        vec![LifecycleResult::Abandon],
        "a retry repeats the same result"
    );
    h.feed(Input::ActionCompleted {
        instance: "i-1".into(),
        token: Some("t".into()),
    });
    assert!(matches!(
        h.phase("i-1"),
        Phase::Finished {
            outcome: Outcome::Abandoned,
            ..
        }
    ));
    h.advance(60);
    assert!(
        completes(&h.tick("i-1")).is_empty(),
        "never completed twice"
    );
}

#[test]
fn rule_breaker_holds_instead_of_an_endless_abandon_loop() {
    let mut h = H::new();
    let plan = plan_json(
        1,
        r#","defaults":{"retries":0},"breaker":{"threshold":2,"windowSecs":3600}"#,
    );
    let mut results = vec![];
    for n in 0..4 {
        let id = format!("i-{n}");
        h.launch_with(&id, &format!("t{n}"), &plan, None, None);
        h.advance(2);
        h.tick_group(0);
        let dep = format!("d-{n}");
        h.created(0, &dep);
        let d = h.target(0, &dep, &id, TargetState::Failed);
        h.deployment(0, &dep, DeploymentState::Failed);
        results.push((completes(&d), alerts(&d)));
    }
    assert_eq!(results[0].0, vec![LifecycleResult::Abandon]);
    assert_eq!(results[1].0, vec![LifecycleResult::Abandon]);
    assert!(
        results[2].0.is_empty(),
        "third failure within the window holds"
    );
    assert!(results[2].1.contains(&AlertKind::BreakerTripped));
    assert!(results[3].0.is_empty());
    assert!(
        !results[3].1.contains(&AlertKind::BreakerTripped),
        "the trip is announced once"
    );
    assert!(matches!(h.phase("i-3"), Phase::Held { .. }));
    // held instances keep their action alive
    h.advance(HB / 2);
    assert!(
        h.tick("i-3")
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. }))
    );
    // an operator resets the breaker and retries the held instance
    h.feed(Input::ResetBreaker {
        group: group(0),
        request: request("op-1"),
    });
    let notes = &h.world.group(&group(0)).unwrap().operator;
    assert_eq!(
        notes
            .iter()
            .map(|n| (n.request.as_str(), n.action.as_str(), &n.outcome))
            .collect::<Vec<_>>(),
        vec![("op-1", "reset-breaker", &NoteOutcome::Applied)]
    );
    assert_eq!(
        h.world.group(&group(0)).unwrap().breaker,
        Default::default()
    );
    let d = h.feed(Input::Operator {
        instance: "i-3".into(),
        action: OperatorAction::Retry,
        request: request("op-2"),
    });
    assert_eq!(h.phase("i-3").step(), Some(0));
    assert_eq!(creates(&d).len(), 1);
    let note = h
        .world
        .instance(&"i-3".into())
        .unwrap()
        .operator
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (
            note.request.as_str(),
            note.actor.as_str(),
            note.reason.as_str(),
            note.outcome
        ),
        (
            "op-2",
            "AIDA:alice",
            "the dependency is back",
            NoteOutcome::Applied
        ),
        "who, why and what came of it, in the record"
    );
}

fn request(id: &str) -> Request {
    Request {
        id: id.into(),
        actor: "AIDA:alice".into(),
        reason: "the dependency is back".into(),
    }
}

#[test]
fn rule_operator_retry_of_an_instance_not_held_is_refused_and_noted() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    let before = h.phase("i-1");
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::Retry,
        request: request("op-9"),
    });
    assert!(creates(&d).is_empty() && stops(&d).is_empty(), "{d:?}");
    assert_eq!(h.phase("i-1"), before, "the pipeline goes on untouched");
    let note = h
        .world
        .instance(&"i-1".into())
        .unwrap()
        .operator
        .last()
        .cloned()
        .unwrap();
    assert_eq!(note.request, "op-9");
    assert_eq!(note.outcome, NoteOutcome::Refused("i-1 is not held".into()));
}

#[test]
fn rule_operator_actions_on_a_finishing_pipeline_are_refused() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::Abandon,
        request: request("op-1"),
    });
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::Abandon,
        request: request("op-2"),
    });
    assert!(completes(&d).is_empty(), "completed once: {d:?}");
    let notes = &h.world.instance(&"i-1".into()).unwrap().operator;
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].outcome, NoteOutcome::Applied);
    assert_eq!(
        notes[1].outcome,
        NoteOutcome::Refused("i-1 is already finishing".into())
    );
}

#[test]
fn rule_dedupe_on_lifecycle_token() {
    let mut h = H::new();
    h.launch("i-1", 1);
    let before = h.world.clone();
    let d = h.launch("i-1", 1);
    assert!(d.commands.is_empty() && d.changed.is_empty(), "{d:?}");
    assert_eq!(before, h.world);
    assert!(d.ignored.unwrap().contains("duplicate lifecycle token"));
}

#[test]
fn rule_dedupe_on_event_id() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    let ev = Input::TargetEvent {
        event_id: Some("e-1".into()),
        group: group(0),
        deployment: "d-1".into(),
        instance: "i-1".into(),
        state: TargetState::Succeeded,
    };
    let first = h.feed(ev.clone());
    assert!(!first.commands.is_empty());
    let again = h.feed(ev);
    assert!(again.commands.is_empty());
    assert!(again.ignored.unwrap().contains("duplicate event"));
}

#[test]
fn rule_new_token_for_a_running_instance_supersedes_the_old_action() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    let d = h.launch_with("i-1", "tok-2", &plan_json(1, ""), None, None);
    assert_eq!(
        stops(&d),
        vec![DeploymentId::from("d-1")],
        "old pipeline released"
    );
    assert_eq!(
        h.inst("i-1").action.token.as_ref().map(|t| t.as_str()),
        Some("tok-2")
    );
}

#[test]
fn rule_crash_recovery_finds_and_adopts_the_intended_deployment() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.advance(2);
    h.tick_group(0); // intent recorded; the runner "crashes" before the answer is recorded
    let intent = h.intent(0);
    h.advance(91);
    let d = h.tick_group(0);
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::FindDeployment { intent: i, .. } if *i == intent))
    );
    assert!(
        creates(&d).is_empty(),
        "never a blind second CreateDeployment"
    );
    h.feed(Input::CreateAttempted {
        group: group(0),
        intent,
        outcome: CreateOutcome::Created {
            deployment: "d-1".into(),
            revision: Some("rev-0".into()),
        },
    });
    assert!(matches!(
        h.world.group(&group(0)).unwrap().active,
        Some(Active::Ours { .. })
    ));
}

#[test]
fn rule_crash_recovery_recreates_when_nothing_was_created() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.advance(2);
    h.tick_group(0);
    let intent = h.intent(0);
    h.advance(91);
    h.tick_group(0);
    let d = h.feed(Input::CreateAttempted {
        group: group(0),
        intent: intent.clone(),
        outcome: CreateOutcome::NotFound,
    });
    let c: Vec<_> = d
        .commands
        .iter()
        .filter(|c| matches!(c, Command::CreateDeployment { intent: i, .. } if *i == intent))
        .collect();
    assert_eq!(c.len(), 1, "created with the same intent");
}

#[test]
fn rule_step_timeout_stops_a_sole_deployment_and_drains_before_retrying() {
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"timeoutSecs":600,"retries":1}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    h.advance(2);
    h.tick_group(0);
    h.created(0, "d-1");
    h.advance(600);
    let d = h.tick("i-1");
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert!(matches!(
        h.phase("i-1"),
        Phase::Running {
            wait: StepWait::Draining { .. },
            ..
        }
    ));
    h.advance(60);
    assert!(
        creates(&h.tick_group(0)).is_empty(),
        "no new attempt while d-1 may still run on it"
    );
    // the deployment reports it stopped; the timed-out attempt counts as failed
    let d = h.polled(
        0,
        "d-1",
        DeploymentState::Stopped,
        &[("i-1", TargetState::Succeeded)],
    );
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::Wakeup { .. }))
    );
    h.tick("i-1");
    assert!(matches!(
        h.phase("i-1"),
        Phase::Running {
            wait: StepWait::Backoff { .. },
            ..
        }
    ));
}

#[test]
fn rule_lost_codedeploy_events_are_reconciled_by_polling() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.advance(59);
    assert!(
        !h.tick_group(0)
            .commands
            .iter()
            .any(|c| matches!(c, Command::PollDeployment { .. }))
    );
    h.advance(1);
    let d = h.tick_group(0);
    assert!(d.commands.iter().any(|c| matches!(c, Command::PollDeployment { deployment, instances, .. } if deployment.as_str() == "d-1" && instances == &vec![InstanceId::from("i-1")])));
    let d = h.polled(
        0,
        "d-1",
        DeploymentState::Succeeded,
        &[("i-1", TargetState::Succeeded)],
    );
    assert!(d.commands.iter().any(|c| matches!(
        c,
        Command::Wakeup {
            key: Key::Instance(_),
            ..
        }
    )));
    h.tick("i-1");
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
}

#[test]
fn rule_warm_pool_policy_decides_which_transitions_deploy() {
    let mut h = H::new();
    let d = h.launch_with(
        "i-1",
        "t1",
        &plan_json(1, ""),
        Some(Place::WarmPool),
        Some(Place::Ec2),
    );
    assert_eq!(
        completes(&d),
        vec![LifecycleResult::Continue],
        "default: entering the pool passes through"
    );
    let d = h.launch_with(
        "i-1",
        "t2",
        &plan_json(1, ""),
        Some(Place::AutoScalingGroup),
        Some(Place::WarmPool),
    );
    assert!(completes(&d).is_empty(), "leaving the pool deploys");

    let mut h = H::new();
    let plan = plan_json(1, r#","warmPool":"deployOnEntry""#);
    let d = h.launch_with("i-1", "t1", &plan, Some(Place::WarmPool), Some(Place::Ec2));
    assert!(completes(&d).is_empty());
    let d = h.launch_with(
        "i-2",
        "t2",
        &plan,
        Some(Place::AutoScalingGroup),
        Some(Place::WarmPool),
    );
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
}

#[test]
fn rule_invalid_plan_alerts_and_never_skips_a_deployment() {
    let mut h = H::new();
    let d = h.launch_with(
        "i-1",
        "t",
        r#"{"version":1,"steps":[{"application":"a"}]}"#,
        None,
        None,
    );
    assert_eq!(alerts(&d), vec![AlertKind::PlanInvalid]);
    assert!(
        completes(&d).is_empty(),
        "no CONTINUE without deployments, no ABANDON loop"
    );
    let Command::Alert(a) = &d.commands[0] else {
        panic!()
    };
    assert!(
        a.message.contains("steps[0]") && a.message.contains("deploymentGroup"),
        "{}",
        a.message
    );
}

#[test]
fn rule_create_failure_retryable_requeues_permanent_fails_the_attempt() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.advance(2);
    h.tick_group(0);
    h.create_outcome(
        0,
        CreateOutcome::Failed {
            reason: "Throttling".into(),
            retryable: true,
        },
    );
    assert!(
        h.world
            .group(&group(0))
            .unwrap()
            .waiting
            .contains_key(&"i-1".into())
    );
    h.advance(15);
    assert_eq!(creates(&h.tick_group(0)).len(), 1);
    let d = h.create_outcome(
        0,
        CreateOutcome::Failed {
            reason: "DeploymentGroupDoesNotExistException".into(),
            retryable: false,
        },
    );
    assert!(alerts(&d).contains(&AlertKind::CreateFailed));
    h.tick("i-1");
    assert!(matches!(
        h.phase("i-1"),
        Phase::Running {
            wait: StepWait::Backoff { .. },
            ..
        }
    ));
}

#[test]
fn rule_group_without_revision_has_nothing_to_deploy() {
    let mut h = H::new();
    h.launch("i-1", 1);
    h.advance(2);
    h.tick_group(0);
    h.create_outcome(0, CreateOutcome::NoRevision);
    h.tick("i-1");
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
}

#[test]
fn rule_missing_records_are_requested_not_guessed() {
    let engine = Engine::default();
    let mut world = World::default();
    let input = Input::Tick(Key::Instance("i-9".into()));
    let err = engine.decide(&mut world, &input, Millis(0)).unwrap_err();
    assert_eq!(err, Missing(vec![Key::Instance("i-9".into())]));
}

#[test]
fn rule_operator_abandon_releases_and_completes() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::Abandon,
        request: request("op-1"),
    });
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Abandon]);
}

#[test]
fn rule_final_revision_check_waits_for_a_foreign_deployment_in_flight() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    let busy = GroupRevision {
        active: Some("d-user".into()),
        ..rev(0, "rev-0")
    };
    let d = h.revisions("i-1", vec![busy]);
    assert!(
        completes(&d).is_empty(),
        "a user deployment that excludes the instance may still change the revision"
    );
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
    h.advance(30);
    let d = h.tick("i-1");
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::CheckRevisions { .. })),
        "checked again later"
    );
    let d = h.revisions("i-1", vec![rev(0, "rev-user")]);
    assert!(completes(&d).is_empty());
    assert_eq!(
        h.phase("i-1").step(),
        Some(0),
        "the user's new revision is deployed before CONTINUE"
    );
}

#[test]
fn rule_deadline_guard_fails_a_pipeline_before_the_global_timeout() {
    let mut h = H::new();
    let plan = plan_json(1, r#","defaults":{"timeoutSecs":3600}"#);
    h.launch_with("i-1", "t", &plan, None, None);
    h.advance(2);
    h.tick_group(0);
    h.created(0, "d-1");
    let global = h.inst("i-1").global_deadline;
    h.now = Millis(global.0 - 30_000);
    let d = h.tick("i-1");
    assert_eq!(completes(&d), vec![LifecycleResult::Abandon]);
    assert_eq!(stops(&d), vec![DeploymentId::from("d-1")]);
    assert!(alerts(&d).contains(&AlertKind::PlanCannotFit));
}

fn leave_checks(d: &Decision) -> Vec<(Option<DeploymentId>, Option<Millis>)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::CheckLeave { done_in, since, .. } => Some((done_in.clone(), *since)),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_leave_check_a_deployment_done_with_the_instance_runs_the_step_again() {
    // Stress mode, seeds 2837 and 6630: our deployment's answer came late, so its seal did
    // not hold and the gate stayed open; a user's deployment of another revision reached the
    // instance through it and finished there (succeeded on it, failed overall, so the group's
    // target revision stayed ours). The leave check asked only whether the group's active
    // deployment still held the instance, heard "no", and the step counted as done with our
    // revision: the instance went in service with the user's (invariant 6).
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    let queued = h.inst("i-1").steps[0].started_at.unwrap();
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    assert_eq!(
        leave_checks(&d),
        vec![(Some("d-0".into()), Some(queued))],
        "the check looks at every deployment since the attempt started, but the instance's own"
    );
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    // The answer is lost: the check is sent again with the same question.
    h.advance(30);
    let d = h.tick("i-1");
    assert_eq!(leave_checks(&d), vec![(Some("d-0".into()), Some(queued))]);
    let d = h.feed(Input::LeaveChecked {
        instance: "i-1".into(),
        group: group(0),
        found: LeaveFound::Touched("d-user".into()),
    });
    assert_eq!(h.phase("i-1").step(), Some(0), "step 1 again");
    assert_eq!(h.inst("i-1").steps[0].installed, None, "not done");
    assert_eq!(
        creates(&d)[0].0,
        group(0),
        "at once: d-user is done with it"
    );
    assert_eq!(
        h.inst("i-1").steps[0].attempts,
        1,
        "a re-run is not a retry"
    );
}

#[test]
fn rule_leave_check_again_after_a_hold_asks_only_whether_it_still_holds() {
    // Once a deployment was found holding the instance its gate is closed (the check closes
    // first), so nothing newer can reach it; looking back again would find the holder itself,
    // done with the instance, for ever.
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.feed(Input::LeaveChecked {
        instance: "i-1".into(),
        group: group(0),
        found: LeaveFound::Held("d-user".into()),
    });
    h.advance(60);
    let d = h.tick("i-1");
    assert_eq!(leave_checks(&d), vec![(Some("d-0".into()), None)]);
}

#[test]
fn rule_leave_check_holds_an_instance_a_foreign_deployment_caught_while_its_gate_was_open() {
    // The race the property test found: our deployment ended, a user deployment started on the
    // same group before the orchestrator heard, and captured the instance through its open gate.
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    // One command: the runner closes the gate, then checks (the check only means something
    // after the close).
    position(
        &d,
        |c| matches!(c, Command::CheckLeave { gate, done_in: Some(dep), .. } if gate.key == "gate-0" && dep.as_str() == "d-0"),
    );
    assert!(creates(&d).is_empty(), "no next step before the check");
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    let d = h.feed(Input::LeaveChecked {
        instance: "i-1".into(),
        group: group(0),
        found: LeaveFound::Held("d-user".into()),
    });
    assert!(
        creates(&d).is_empty(),
        "still held by d-user: never two deployments in flight"
    );
    assert!(matches!(
        h.phase("i-1"),
        Phase::Running {
            step: 0,
            wait: StepWait::Leaving {
                blocked_by: Some(_),
                ..
            }
        }
    ));
    h.advance(60);
    let d = h.tick("i-1");
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::CheckLeave { .. })),
        "checked again"
    );
    // d-user may have installed something else (or failed half-way): the step runs again.
    h.deployment(0, "d-user", DeploymentState::Failed);
    let d = h.feed(Input::LeaveChecked {
        instance: "i-1".into(),
        group: group(0),
        found: LeaveFound::Clear,
    });
    assert_eq!(h.phase("i-1").step(), Some(0));
    assert_eq!(creates(&d)[0].0, group(0), "step 1 again, in plan order");
    assert_eq!(
        h.inst("i-1").steps[0].attempts,
        1,
        "a re-run is not a retry"
    );
}

#[test]
fn rule_heartbeat_a_failing_heartbeat_is_tried_many_times_before_the_timeout() {
    // Stress mode (5 % of invocations dying before a command, 10 % of calls throttled after
    // the SDK's retries) missed heartbeats of 300 s hooks in 12 of 10,000 seeds (411 among
    // them): a run of failed attempts outlasted the 180 s left after the heartbeat fell due,
    // because an unconfirmed heartbeat was tried again only every 30 s. Following the record's
    // own timer with no heartbeat ever confirmed, a 300 s hook now gets at least 15 attempts.
    let mut h = H::new();
    let hb_secs = 300;
    let event = LifecycleEvent {
        event_id: Some(EventId("ev-1".into())),
        action: ActionRef {
            asg: "asg".into(),
            hook: DEFAULT_LAUNCH_HOOK.into(),
            token: Some("tok-i-1".into()),
            instance: "i-1".into(),
        },
        origin: None,
        destination: None,
        time: h.now,
    };
    h.feed(Input::Launch {
        event,
        plan: Plan::parse(&plan_json(1, "")),
        timeouts: HookTimeouts::from_heartbeat(hb_secs),
    });
    h.advance(2);
    h.tick_group(0);
    h.created(0, "d-1");
    let timeout = h.inst("i-1").last_heartbeat.plus_secs(hb_secs);
    let mut attempts = 0;
    for _ in 0..1_000 {
        let Some(at) = h.inst("i-1").wake_at.filter(|at| *at < timeout) else {
            break;
        };
        h.now = at.max(h.now.plus_ms(1));
        let d = h.tick("i-1");
        attempts += d
            .commands
            .iter()
            .filter(|c| matches!(c, Command::RecordHeartbeat { .. }))
            .count();
    }
    assert!(
        attempts >= 15,
        "{attempts} heartbeat attempts between 40 % of the timeout and the timeout"
    );
}

#[test]
fn rule_heartbeat_only_a_confirmed_heartbeat_counts() {
    let mut h = H::new();
    h.launch_and_create("i-1", 1, "d-1");
    h.now = h.inst("i-1").started_at.plus_secs(HB * 2 / 5);
    assert!(
        h.tick("i-1")
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. }))
    );
    h.advance(5);
    assert!(
        !h.tick("i-1")
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "in flight: not re-sent yet"
    );
    h.advance(5);
    let d = h.tick("i-1");
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "unconfirmed after 10 s: sent again (the first may have died with its invocation)"
    );
    let at = h.now;
    h.feed(Input::HeartbeatRecorded {
        instance: "i-1".into(),
        token: Some("tok-i-1".into()),
        at,
    });
    assert_eq!(h.inst("i-1").last_heartbeat, at);
    h.advance(60);
    assert!(
        !h.tick("i-1")
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "confirmed: next one at 40 % of the timeout"
    );
}

fn seals(d: &Decision) -> Vec<(DeploymentId, String, Vec<InstanceId>)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::SealGate {
                deployment,
                gate,
                instances,
                ..
            } => Some((deployment.clone(), gate.key.clone(), instances.clone())),
            _ => None,
        })
        .collect()
}

fn seal_of(h: &H, g: usize) -> Seal {
    match &h.world.group(&group(g)).unwrap().active {
        Some(Active::Ours { seal, .. }) => *seal,
        other => panic!("group {g} has no deployment of ours: {other:?}"),
    }
}

impl H {
    /// Answers the seal of `d` in group `g` with the deployment's status after the close.
    fn sealed(&mut self, g: usize, d: &str, state: DeploymentState) -> Decision {
        self.feed(Input::GateSealed {
            group: group(g),
            deployment: d.into(),
            state,
        })
    }
}

#[test]
fn rule_seal_closes_the_gate_behind_a_created_deployment() {
    let mut h = H::new();
    let d = h.launch_batch_and_create(&["i-1", "i-2"], 2, "d-0");
    assert_eq!(
        seals(&d),
        vec![(
            DeploymentId::from("d-0"),
            "gate-0".to_owned(),
            vec![InstanceId::from("i-1"), InstanceId::from("i-2")]
        )],
        "the targets are fixed once the deployment exists: the gate closes behind them"
    );
    assert!(matches!(seal_of(&h, 0), Seal::Pending { .. }));
    h.sealed(0, "d-0", DeploymentState::InProgress);
    assert_eq!(seal_of(&h, 0), Seal::Sealed);
}

#[test]
fn rule_seal_a_sealed_member_moves_on_without_a_leave_check() {
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.sealed(0, "d-0", DeploymentState::InProgress);
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    assert!(
        !d.commands
            .iter()
            .any(|c| matches!(c, Command::CheckLeave { .. } | Command::CloseGate { .. })),
        "no close and no check: the seal did both while d-0 ran: {d:?}"
    );
    let open = position(
        &d,
        |c| matches!(c, Command::OpenGate { gates, instances } if keys(gates) == ["gate-1"] && instances == &[InstanceId::from("i-1")]),
    );
    let create = position(
        &d,
        |c| matches!(c, Command::CreateDeployment { group: g, .. } if *g == group(1)),
    );
    assert!(open < create, "{d:?}");
    assert_eq!(h.phase("i-1").step(), Some(1));
    assert_eq!(h.inst("i-1").steps[0].installed, Some(Some("rev-0".into())));
}

#[test]
fn rule_seal_answered_after_the_deployment_ended_falls_back_to_the_leave_check() {
    // The close was confirmed only after d-0 was over: a user deployment may have taken the
    // instance through its gate in between, so the instance leaves through the check.
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    // The target result came before the seal's answer: unsealed, so the check runs.
    assert!(matches!(
        h.phase("i-1"),
        Phase::Running {
            step: 0,
            wait: StepWait::Leaving { .. }
        }
    ));
    let d = h.sealed(0, "d-0", DeploymentState::Succeeded);
    assert!(creates(&d).is_empty(), "{d:?}");
    assert!(
        h.world.group(&group(0)).is_none_or(|g| g.active.is_none()),
        "settled"
    );
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.sealed(0, "d-0", DeploymentState::Succeeded);
    let d = h.target(0, "d-0", "i-1", TargetState::Succeeded);
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::CheckLeave { gate, .. } if gate.key == "gate-0")),
        "{d:?}"
    );
    assert!(creates(&d).is_empty(), "no next step before the check");
}

#[test]
fn rule_seal_a_lost_seal_is_sent_again_for_the_members_still_pending() {
    let mut h = H::new();
    h.launch_batch_and_create(&["i-1", "i-2"], 2, "d-0");
    // i-1 finished and moved on (it may need gate 0 again later); i-2 still deploys.
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.advance(5);
    assert!(
        seals(&h.tick_group(0)).is_empty(),
        "not yet: it may still answer"
    );
    h.advance(30);
    let d = h.tick_group(0);
    assert_eq!(
        seals(&d),
        vec![(
            DeploymentId::from("d-0"),
            "gate-0".to_owned(),
            vec![InstanceId::from("i-2")]
        )]
    );
    let wake = h.world.group(&group(0)).unwrap().wake_at.unwrap();
    assert!(
        wake <= h.now.plus_secs(30),
        "the group's timer covers the re-send: {wake:?}"
    );
}

/// d-0 ended before i-1's result was read: a poll brings it, and the sealed member moves on
/// to step 1 with no leave check.
fn polled_success_moves_on_without_a_check(h: &mut H) {
    let d = h.polled(
        0,
        "d-0",
        DeploymentState::Succeeded,
        &[("i-1", TargetState::Succeeded)],
    );
    let d2 = h.tick("i-1");
    let all: Vec<&Command> = d.commands.iter().chain(&d2.commands).collect();
    assert!(
        !all.iter().any(|c| matches!(c, Command::CheckLeave { .. })),
        "no leave check for a sealed member: {all:?}"
    );
    assert_eq!(h.phase("i-1").step(), Some(1));
}

#[test]
fn rule_seal_a_settled_sealed_deployment_still_spares_the_check() {
    // d-0 ends before a member's result is read: the result comes from a poll, and the
    // member still needs no leave check.
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.sealed(0, "d-0", DeploymentState::InProgress);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    polled_success_moves_on_without_a_check(&mut h);
}

#[test]
fn rule_seal_a_late_second_answer_does_not_unseal() {
    // Two invocations sealed d-0 (a re-send raced the first); the second read the status
    // after d-0 ended. The first answer already proved the seal: it stays.
    let mut h = H::new();
    h.auto_clear = false;
    h.launch_and_create("i-1", 2, "d-0");
    h.sealed(0, "d-0", DeploymentState::InProgress);
    h.target(0, "d-0", "i-1", TargetState::Pending);
    let settled = h.sealed(0, "d-0", DeploymentState::Succeeded);
    assert!(
        h.world
            .group(&group(0))
            .is_some_and(|g| g.active.is_none() && g.settling.iter().all(|s| s.sealed)),
        "{settled:?}"
    );
    polled_success_moves_on_without_a_check(&mut h);
}

// ---- adoption: a launch whose event never came ------------------------------------------

impl H {
    /// The sweep's adoption of `id`, confirmed by a heartbeat now.
    fn adopt(&mut self, id: &str, hook: &str, place: Place, plan: &str) -> Decision {
        self.feed(Input::Adopt {
            action: ActionRef {
                asg: "asg".into(),
                hook: hook.into(),
                token: None,
                instance: id.into(),
            },
            place,
            plan: Plan::parse(plan),
            timeouts: HookTimeouts::from_heartbeat(HB),
            at: self.now,
        })
    }
}

fn heartbeat_actions(d: &Decision) -> Vec<&ActionRef> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::RecordHeartbeat { action } => Some(action),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_adopt_starts_the_pipeline_addressed_by_instance_id() {
    let mut h = H::new();
    let at = h.now;
    let d = h.adopt(
        "i-1",
        DEFAULT_LAUNCH_HOOK,
        Place::AutoScalingGroup,
        &plan_json(2, ""),
    );
    assert!(d.ignored.is_none(), "{d:?}");
    let inst = h.inst("i-1").clone();
    assert_eq!(inst.action.token, None, "no token: calls name the instance");
    assert_eq!(inst.adopted_at, Some(at));
    assert_eq!(inst.last_heartbeat, at, "the confirming heartbeat counts");
    // When the action began is unknown: the global deadline assumes the earliest it can have.
    assert_eq!(inst.started_at, Millis(at.0 - HB * 1000));
    assert_eq!(inst.global_deadline, inst.started_at.plus_secs(HB * 100));
    assert!(
        matches!(inst.phase, Phase::Running { step: 0, .. }),
        "{:?}",
        inst.phase
    );
    // It is queued on its first group like any launch, and heartbeats go by instance id.
    h.advance(60);
    h.tick_group(0);
    h.now = at.plus_secs(HB / 2);
    let d = h.tick("i-1");
    let beats = heartbeat_actions(&d);
    assert!(!beats.is_empty(), "{:?}", d.commands);
    assert!(
        beats
            .iter()
            .all(|a| a.token.is_none() && a.instance.as_str() == "i-1")
    );
    // Its answer (no token) is matched to the adopted action.
    let now = h.now;
    h.feed(Input::HeartbeatRecorded {
        instance: "i-1".into(),
        token: None,
        at: now,
    });
    assert_eq!(h.inst("i-1").last_heartbeat, now);
}

#[test]
fn rule_adopt_a_later_launch_event_for_the_adopted_action_is_a_duplicate() {
    let mut h = H::new();
    let event_time = h.now;
    h.advance(90); // the sweep adopts after the event was emitted (and lost, or late)
    h.adopt(
        "i-1",
        DEFAULT_LAUNCH_HOOK,
        Place::AutoScalingGroup,
        &plan_json(1, ""),
    );
    let before = h.world.clone();
    let event = LifecycleEvent {
        event_id: Some("ev-late".into()),
        action: ActionRef {
            asg: "asg".into(),
            hook: DEFAULT_LAUNCH_HOOK.into(),
            token: Some("tok-late".into()),
            instance: "i-1".into(),
        },
        origin: Some(Place::Ec2),
        destination: Some(Place::AutoScalingGroup),
        time: event_time,
    };
    let d = h.feed(Input::Launch {
        event,
        plan: Plan::parse(&plan_json(1, "")),
        timeouts: HookTimeouts::from_heartbeat(HB),
    });
    assert!(
        d.commands.is_empty(),
        "no second pipeline: {:?}",
        d.commands
    );
    assert!(d.ignored.unwrap().contains("adopted"));
    assert_eq!(before, h.world, "nothing changed");
}

#[test]
fn rule_adopt_is_ignored_when_the_launch_event_came_first() {
    let mut h = H::new();
    h.launch("i-1", 1);
    let before = h.world.clone();
    let d = h.adopt(
        "i-1",
        DEFAULT_LAUNCH_HOOK,
        Place::AutoScalingGroup,
        &plan_json(1, ""),
    );
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert!(d.ignored.unwrap().contains("already accounts"));
    assert_eq!(before, h.world);
}

#[test]
fn rule_adopt_of_another_tools_hook_is_left_alone() {
    let mut h = H::new();
    let d = h.adopt(
        "i-1",
        "bootstrap-agent",
        Place::AutoScalingGroup,
        &plan_json(1, ""),
    );
    assert!(d.commands.is_empty() && d.changed.is_empty(), "{d:?}");
    assert!(
        d.ignored
            .unwrap()
            .contains("not one of turnstile's launch hooks")
    );
    assert!(h.world.instance(&"i-1".into()).is_none());
}

#[test]
fn rule_adopt_with_an_invalid_plan_alerts_and_leaves_the_default_result() {
    let mut h = H::new();
    let d = h.adopt(
        "i-1",
        DEFAULT_LAUNCH_HOOK,
        Place::AutoScalingGroup,
        "{not json",
    );
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::Alert(a) if a.kind == AlertKind::PlanInvalid))
    );
    assert!(matches!(
        h.inst("i-1").phase,
        Phase::Finished {
            outcome: Outcome::Rejected,
            ..
        }
    ));
    // A later sweep finds the record and does not adopt (or alert) again.
    let d = h.adopt(
        "i-1",
        DEFAULT_LAUNCH_HOOK,
        Place::AutoScalingGroup,
        "{not json",
    );
    assert!(d.commands.is_empty(), "{:?}", d.commands);
}

#[test]
fn rule_adopt_the_exit_from_the_warm_pool_after_the_entry_finished() {
    let mut h = H::new();
    let plan = plan_json(1, r#","warmPool":"deployOnExit""#);
    // The entry: the plan does not deploy on it, so it completes with CONTINUE at once.
    h.launch_with(
        "i-1",
        "tok-entry",
        &plan,
        Some(Place::WarmPool),
        Some(Place::Ec2),
    );
    let now = h.now;
    h.feed(Input::ActionCompleted {
        instance: "i-1".into(),
        token: Some("tok-entry".into()),
    });
    assert!(h.inst("i-1").phase.is_finished());
    assert_eq!(h.inst("i-1").destination, Some(Place::WarmPool));
    // Its exit event is lost; the sweep finds it waiting to enter the group.
    h.advance(3600);
    let d = h.adopt("i-1", DEFAULT_LAUNCH_HOOK, Place::AutoScalingGroup, &plan);
    assert!(d.ignored.is_none(), "{d:?}");
    assert!(h.inst("i-1").adopted_at > Some(now));
    assert!(matches!(h.inst("i-1").phase, Phase::Running { .. }));
}

// ---- bounded group records -------------------------------------------------------------

fn h_with_capacity(capacity: usize) -> H {
    let mut h = H::new();
    h.engine = Engine::new(Config {
        group_capacity: capacity,
        ..Config::default()
    });
    h
}

#[test]
fn rule_oversized_group_lists_overflow_into_the_instances_own_records() {
    let mut h = h_with_capacity(3);
    for i in 1..=5 {
        h.launch(&format!("i-{i}"), 1);
        h.advance(1);
    }
    let g = h.world.group(&group(0)).unwrap().clone();
    assert_eq!(g.listed(), 3, "the group lists no more than its capacity");
    for i in 4..=5 {
        let inst = h.inst(&format!("i-{i}"));
        assert!(
            matches!(
                inst.phase,
                Phase::Running {
                    step: 0,
                    wait: StepWait::Overflow { .. }
                }
            ),
            "{:?}",
            inst.phase
        );
        assert!(
            inst.wake_at.is_some_and(|w| w <= h.now.plus_secs(300)),
            "it tries again by itself, should no wake reach it"
        );
    }
    assert!(
        g.overflowed,
        "the group knows someone waits outside its list"
    );
}

#[test]
fn rule_oversized_group_wakes_the_overflowed_when_room_frees_and_forgets_when_none_is_left() {
    let mut h = h_with_capacity(2);
    h.launch("i-1", 1);
    h.launch("i-2", 1);
    h.launch("i-3", 1); // overflows
    let d = h.feed(Input::Terminate {
        event: lifecycle_event(&h, "i-1", DEFAULT_TERMINATE_HOOK, "tt-1"),
    });
    let wakes: Vec<_> = d
        .commands
        .iter()
        .filter(|c| matches!(c, Command::WakeOverflowed { room: 1, .. }))
        .collect();
    assert_eq!(wakes.len(), 1, "{:?}", d.commands);
    // The woken instance joins; the wake found fewer than it had room for, so the hint goes.
    h.tick("i-3");
    h.feed(Input::OverflowWoken {
        group: group(0),
        woken: 1,
        room: 1,
    });
    assert!(
        h.world.group(&group(0)).unwrap().overflowed,
        "as many as room: maybe more wait"
    );
    h.feed(Input::OverflowWoken {
        group: group(0),
        woken: 0,
        room: 1,
    });
    assert!(!h.world.group(&group(0)).unwrap().overflowed);
}

#[test]
fn rule_oversized_group_wakes_its_overflow_at_most_once_per_interval_with_the_whole_room() {
    let mut h = h_with_capacity(3);
    for i in 1..=6 {
        h.launch(&format!("i-{i}"), 1);
    }
    let rooms = |d: &Decision| -> Vec<usize> {
        d.commands
            .iter()
            .filter_map(|c| match c {
                Command::WakeOverflowed { room, .. } => Some(*room),
                _ => None,
            })
            .collect()
    };
    let mut seen = Vec::new();
    for (i, token) in [(1, "tt-1"), (2, "tt-2")] {
        let d = h.feed(Input::Terminate {
            event: lifecycle_event(&h, &format!("i-{i}"), DEFAULT_TERMINATE_HOOK, token),
        });
        seen.push(rooms(&d));
    }
    // The first wake's instance has not joined when the second place frees: waking the whole
    // room again would wake it again. The second place waits for the group's timer.
    assert_eq!(seen, vec![vec![1], vec![]]);
    let g = h.world.group(&group(0)).unwrap();
    let next = h.now.plus_ms(h.engine.config.overflow_wake_ms);
    assert!(g.wake_at.is_some_and(|w| w <= next), "{:?}", g.wake_at);
    h.advance(10);
    let d = h.tick_group(0);
    assert_eq!(rooms(&d), vec![2], "then every free place at once: {d:?}");
}

#[test]
fn rule_oversized_overflowed_instance_joins_in_its_place_once_there_is_room() {
    let mut h = h_with_capacity(2);
    h.launch("i-1", 1);
    h.advance(1);
    h.launch("i-2", 1);
    h.advance(1);
    h.launch("i-3", 1); // overflows
    let queued_at = match h.inst("i-3").phase {
        Phase::Running {
            wait: StepWait::Overflow { since, .. },
            ..
        } => since,
        ref p => panic!("{p:?}"),
    };
    // Still full: a retry leaves it where it is, without counting a new attempt.
    h.advance(300);
    h.tick("i-3");
    assert!(matches!(
        h.inst("i-3").phase,
        Phase::Running {
            wait: StepWait::Overflow { .. },
            ..
        }
    ));
    assert_eq!(h.inst("i-3").steps[0].attempts, 1);
    // i-1 goes away: there is room, and i-3 joins keeping its place in the queue.
    h.feed(Input::Terminate {
        event: lifecycle_event(&h, "i-1", DEFAULT_TERMINATE_HOOK, "tt-1"),
    });
    h.advance(300);
    h.tick("i-3");
    assert!(
        matches!(
            h.inst("i-3").phase,
            Phase::Running {
                wait: StepWait::Queued { .. },
                ..
            }
        ),
        "{:?}",
        h.inst("i-3").phase
    );
    let g = h.world.group(&group(0)).unwrap();
    let listed_since = g.waiting.get(&"i-3".into()).copied().or_else(|| {
        g.active
            .as_ref()
            .and_then(|a| a.members())
            .and_then(|m| m.get(&"i-3".into()))
            .map(|_| queued_at)
    });
    assert_eq!(
        listed_since,
        Some(queued_at),
        "its place is when it first asked"
    );
    assert_eq!(
        h.inst("i-3").steps[0].attempts,
        1,
        "a retry to join is not an attempt"
    );
}

fn pause(h: &mut H, g: usize, paused: bool, id: &str) -> Decision {
    h.feed(Input::Pause {
        group: group(g),
        paused,
        request: request(id),
    })
}

#[test]
fn rule_pause_creates_no_deployment_until_resumed_and_keeps_heartbeats() {
    let mut h = H::new();
    pause(&mut h, 0, true, "op-p");
    let g = h.world.group(&group(0)).unwrap();
    assert!(
        g.paused.is_some(),
        "a pause of a group with no record makes one"
    );
    h.launch("i-1", 1);
    h.launch("i-2", 1);
    h.advance(5);
    let d = h.tick_group(0);
    assert!(creates(&d).is_empty(), "paused: nothing is created: {d:?}");
    assert_eq!(h.world.group(&group(0)).unwrap().waiting.len(), 2);
    assert_eq!(
        h.world
            .group(&group(0))
            .unwrap()
            .wake_at(&Config::default()),
        None,
        "no timer spins on a paused group"
    );
    h.advance(HB / 2);
    assert!(
        h.tick("i-1")
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "waiting instances keep their actions alive"
    );
    let d = pause(&mut h, 0, false, "op-r");
    assert_eq!(creates(&d).len(), 1, "resume admits at once: {d:?}");
    assert_eq!(h.world.group(&group(0)).unwrap().paused, None);
    let notes: Vec<(String, NoteOutcome)> = h
        .world
        .group(&group(0))
        .unwrap()
        .operator
        .iter()
        .map(|n| (n.action.clone(), n.outcome.clone()))
        .collect();
    assert_eq!(
        notes,
        [
            ("pause".to_owned(), NoteOutcome::Applied),
            ("resume".to_owned(), NoteOutcome::Applied)
        ]
    );
}

#[test]
fn rule_pause_lets_a_created_deployment_finish_and_the_next_step_waits() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-0");
    pause(&mut h, 1, true, "op-p");
    h.target(0, "d-0", "i-1", TargetState::Succeeded);
    h.deployment(0, "d-0", DeploymentState::Succeeded);
    h.advance(5);
    let d = h.tick_group(1);
    assert!(creates(&d).is_empty(), "{d:?}");
    assert_eq!(
        h.phase("i-1").step(),
        Some(1),
        "step 1 finished, step 2 waits"
    );
    let d = pause(&mut h, 1, false, "op-r");
    assert_eq!(creates(&d).len(), 1, "{d:?}");
}

#[test]
fn rule_pause_twice_or_resume_unpaused_is_refused() {
    let mut h = H::new();
    pause(&mut h, 0, true, "op-1");
    let d = pause(&mut h, 0, true, "op-2");
    assert!(d.ignored.unwrap().contains("already paused"));
    pause(&mut h, 0, false, "op-3");
    let d = pause(&mut h, 0, false, "op-4");
    assert!(d.ignored.unwrap().contains("not paused"));
    let outcomes: Vec<NoteOutcome> = h
        .world
        .group(&group(0))
        .unwrap()
        .operator
        .iter()
        .map(|n| n.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            NoteOutcome::Applied,
            NoteOutcome::Refused("app0/dg0 is already paused".into()),
            NoteOutcome::Applied,
            NoteOutcome::Refused("app0/dg0 is not paused".into()),
        ]
    );
}

#[test]
fn rule_operator_skip_failed_step_goes_on_without_it_and_continues_saying_so() {
    let mut h = H::new();
    held_after_its_first_step_failed(&mut h, "i-1", 2, "d-0");
    assert!(
        matches!(h.phase("i-1"), Phase::Held { step: Some(0), .. }),
        "{:?}",
        h.phase("i-1")
    );
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::SkipFailedStep,
        request: request("op-s"),
    });
    assert_eq!(h.phase("i-1").step(), Some(1), "on to step 2: {d:?}");
    let skipped = h.inst("i-1").steps[0].overridden.clone().unwrap();
    assert_eq!(
        (skipped.actor.as_str(), skipped.request.as_str()),
        ("AIDA:alice", "op-s")
    );
    h.advance(2);
    h.tick_group(1);
    h.created(1, "d-1");
    h.target(1, "d-1", "i-1", TargetState::Succeeded);
    h.deployment(1, "d-1", DeploymentState::Succeeded);
    assert!(matches!(h.phase("i-1"), Phase::Verifying { .. }));
    // The final check does not look for the skipped step's revision.
    let d = h.revisions("i-1", vec![rev(0, "rev-0"), rev(1, "rev-1")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue], "{d:?}");
    let Phase::Completing { reason, .. } = h.phase("i-1") else {
        panic!()
    };
    assert!(
        reason.contains("app0/dg0 (by AIDA:alice), skipped by an operator"),
        "{reason}"
    );
}

#[test]
fn rule_operator_skip_of_a_step_not_held_is_refused() {
    let mut h = H::new();
    h.launch_and_create("i-1", 2, "d-1");
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::SkipFailedStep,
        request: request("op-s"),
    });
    assert!(d.ignored.unwrap().contains("not held at a failed step"));
    assert!(h.inst("i-1").steps.iter().all(|s| s.overridden.is_none()));
}

// ---- readiness ----------------------------------------------------------------------------

const READY: &str = r#","readiness":{"tag":"turnstile:ready","value":"true","timeoutSecs":900}"#;

fn ready_plan(steps: usize, extra: &str) -> String {
    plan_json(steps, &format!("{READY}{extra}"))
}

fn tagged(h: &mut H, id: &str, tags: &[(&str, &str)]) -> Decision {
    let at = h.now;
    h.feed(Input::InstanceTagged {
        instance: id.into(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        at,
    })
}

fn opens(d: &Decision) -> usize {
    d.commands
        .iter()
        .filter(|c| matches!(c, Command::OpenGate { .. }))
        .count()
}

#[test]
fn rule_readiness_holds_the_first_step_until_the_tag_arrives() {
    let mut h = H::new();
    let d = h.launch_with("i-1", "t1", &ready_plan(2, ""), None, None);
    assert!(matches!(
        h.phase("i-1"),
        Phase::Readying { deploy: true, .. }
    ));
    assert!(creates(&d).is_empty() && opens(&d) == 0, "{d:?}");
    // Nothing reaches the instance while it boots, however long the group waits; the
    // heartbeat keeps the action alive meanwhile.
    h.advance(300);
    let d = h.tick_group(0);
    assert!(creates(&d).is_empty(), "{d:?}");
    let d = h.tick("i-1");
    assert!(
        d.commands
            .iter()
            .any(|c| matches!(c, Command::RecordHeartbeat { .. })),
        "{d:?}"
    );
    assert!(matches!(h.phase("i-1"), Phase::Readying { .. }));
    // Another tag, or the readiness tag with another value, is not the signal.
    let d = tagged(
        &mut h,
        "i-1",
        &[("turnstile:ready", "false"), ("Name", "web")],
    );
    assert!(d.ignored.is_some() && d.commands.is_empty(), "{d:?}");
    assert!(matches!(h.phase("i-1"), Phase::Readying { .. }));
    // The tag: the first step starts (after the batch window, as at launch).
    let d = tagged(
        &mut h,
        "i-1",
        &[("Name", "web"), ("turnstile:ready", "true")],
    );
    assert!(d.ignored.is_none(), "{d:?}");
    assert_eq!(h.phase("i-1").step(), Some(0));
    assert_eq!(h.inst("i-1").ready_at, Some(h.now));
    h.advance(2);
    let d = h.tick_group(0);
    assert_eq!(creates(&d), vec![(group(0), vec!["i-1".into()])]);
    // A second signal (the sweep's read after the event) changes nothing.
    let d = tagged(&mut h, "i-1", &[("turnstile:ready", "true")]);
    assert!(d.ignored.is_some() && d.commands.is_empty(), "{d:?}");
}

#[test]
fn rule_readiness_instances_ready_together_share_a_deployment() {
    let mut h = H::new();
    for id in ["i-1", "i-2", "i-3"] {
        h.launch_with(id, &format!("t-{id}"), &ready_plan(1, ""), None, None);
    }
    h.advance(60);
    tagged(&mut h, "i-1", &[("turnstile:ready", "true")]);
    h.advance(1);
    tagged(&mut h, "i-2", &[("turnstile:ready", "true")]);
    h.advance(1);
    let d = h.tick_group(0);
    assert_eq!(
        creates(&d),
        vec![(group(0), vec!["i-1".into(), "i-2".into()])],
        "ready within one batch window: one deployment; i-3 still boots"
    );
    assert!(matches!(h.phase("i-3"), Phase::Readying { .. }));
}

#[test]
fn rule_readiness_tag_seen_only_by_the_sweep_starts_the_step() {
    // The tag-change event is best effort: when it is lost, the sweep's batched read reports
    // the one tag it asked for, and that is enough.
    let mut h = H::new();
    h.launch_with("i-1", "t1", &ready_plan(1, ""), None, None);
    h.advance(120);
    let d = h.tick("i-1");
    assert!(creates(&d).is_empty() && opens(&d) == 0);
    let d = tagged(&mut h, "i-1", &[("turnstile:ready", "true")]);
    assert!(d.ignored.is_none(), "{d:?}");
    h.advance(2);
    assert!(has_create(&h.tick_group(0), 0));
}

#[test]
fn rule_readiness_timeout_applies_the_plan_policy() {
    for (policy, expect_complete, expect_phase) in [
        ("abandon", vec![LifecycleResult::Abandon], "completing"),
        ("hold", vec![], "held"),
        ("start", vec![], "running"),
    ] {
        let mut h = H::new();
        let plan = plan_json(
            1,
            &format!(r#","readiness":{{"tag":"ready","timeoutSecs":600,"onTimeout":"{policy}"}}"#),
        );
        h.launch_with("i-1", "t1", &plan, None, None);
        h.advance(599);
        let d = h.tick("i-1");
        assert!(alerts(&d).is_empty(), "{policy}: not yet: {d:?}");
        assert!(matches!(h.phase("i-1"), Phase::Readying { .. }), "{policy}");
        h.advance(1);
        let d = h.tick("i-1");
        // A hold also raises the held alert every held instance raises.
        assert_eq!(alerts(&d)[0], AlertKind::NotReady, "{policy}: {d:?}");
        let Some(Command::Alert(a)) = d
            .commands
            .iter()
            .find(|c| matches!(c, Command::Alert(a) if a.kind == AlertKind::NotReady))
        else {
            panic!("{policy}: no alert")
        };
        assert!(
            a.message.contains("i-1")
                && a.message.contains("ready=true")
                && a.message.contains("600 s"),
            "{policy}: the alert says what happened: {}",
            a.message
        );
        assert_eq!(completes(&d), expect_complete, "{policy}");
        let phase = match h.phase("i-1") {
            Phase::Completing { .. } => "completing",
            Phase::Held { .. } => "held",
            Phase::Running { .. } => "running",
            other => panic!("{policy}: {other:?}"),
        };
        assert_eq!(phase, expect_phase, "{policy}");
        assert_eq!(
            h.inst("i-1").alerts[0].kind,
            AlertKind::NotReady,
            "{policy}: `show` lists it"
        );
    }
}

#[test]
fn rule_readiness_hold_retry_starts_the_first_step_and_skip_is_refused() {
    let mut h = H::new();
    let plan = plan_json(
        2,
        r#","readiness":{"tag":"ready","timeoutSecs":600,"onTimeout":"hold"}"#,
    );
    h.launch_with("i-1", "t1", &plan, None, None);
    h.advance(600);
    h.tick("i-1");
    assert!(matches!(h.phase("i-1"), Phase::Held { step: Some(0), .. }));
    let d = h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::SkipFailedStep,
        request: request("op-1"),
    });
    assert!(
        d.ignored
            .as_deref()
            .is_some_and(|w| w.contains("before step 0 ever ran")),
        "{d:?}"
    );
    assert!(matches!(h.phase("i-1"), Phase::Held { .. }));
    h.feed(Input::Operator {
        instance: "i-1".into(),
        action: OperatorAction::Retry,
        request: request("op-2"),
    });
    assert_eq!(h.phase("i-1").step(), Some(0));
}

#[test]
fn rule_readiness_timeout_counts_in_the_time_budget() {
    // 100 × 120 s = 12,000 s of global timeout; 2 × 1,800 s of steps fit, but not with a
    // 9,000 s readiness wait in front of them.
    let mut h = H::new();
    let plan = plan_json(2, r#","readiness":{"tag":"ready","timeoutSecs":9000}"#);
    let event = LifecycleEvent {
        event_id: None,
        action: ActionRef {
            asg: "asg".into(),
            hook: DEFAULT_LAUNCH_HOOK.into(),
            token: Some("t".into()),
            instance: "i-1".into(),
        },
        origin: None,
        destination: None,
        time: h.now,
    };
    let d = h.feed(Input::Launch {
        event,
        plan: Plan::parse(&plan),
        timeouts: HookTimeouts::from_heartbeat(120),
    });
    assert_eq!(
        alerts(&d),
        vec![AlertKind::PlanCannotFit, AlertKind::InstanceHeld]
    );
    let Command::Alert(a) = &d.commands[0] else {
        panic!()
    };
    assert!(
        a.message.contains("readiness") && a.message.contains("12600 s"),
        "{}",
        a.message
    );
}

#[test]
fn rule_readiness_holds_warm_pool_entry_until_ready_and_skips_the_exit() {
    // deployOnExit: the entry deploys nothing, but Auto Scaling stops the instance once its
    // hooks complete, so it is let go only once its bootstrap is done.
    let mut h = H::new();
    let plan = ready_plan(1, "");
    let d = h.launch_with("i-1", "t1", &plan, Some(Place::WarmPool), Some(Place::Ec2));
    assert!(completes(&d).is_empty(), "{d:?}");
    assert!(matches!(
        h.phase("i-1"),
        Phase::Readying { deploy: false, .. }
    ));
    let d = tagged(&mut h, "i-1", &[("turnstile:ready", "true")]);
    assert_eq!(completes(&d), vec![LifecycleResult::Continue]);
    h.feed(Input::ActionCompleted {
        instance: "i-1".into(),
        token: Some("t1".into()),
    });
    // Leaving the pool: it bootstrapped before it entered (its tag is still there, and no
    // change event would come), so the first step starts at once.
    let d = h.launch_with(
        "i-1",
        "t2",
        &plan,
        Some(Place::AutoScalingGroup),
        Some(Place::WarmPool),
    );
    assert!(completes(&d).is_empty());
    assert_eq!(
        h.phase("i-1").step(),
        Some(0),
        "no readiness wait on the exit"
    );
}

// ---- hostile plans ------------------------------------------------------------------------

/// A plan naming a gate outside the stack's prefix, or an application the stack does not
/// manage, is refused at launch like one that does not parse: an alert naming each field, and
/// not one command that IAM would refuse (no gate opened, no deployment created).
#[test]
fn rule_hostile_plan_outside_the_stacks_scope_reaches_no_aws_call() {
    let mut h = H::new();
    h.engine.config.plan_scope = PlanScope {
        gate_prefix: Some("turnstile:gate:".into()),
        applications: Some(["app0".to_owned()].into_iter().collect()),
    };
    let plan = r#"{"version":1,"steps":[
        {"application":"app0","deploymentGroup":"dg0","gateTag":"turnstile:gate:app0"},
        {"application":"payroll","deploymentGroup":"dg1","gateTag":"Name"}]}"#;
    let d = h.launch_with("i-1", "t1", plan, None, None);
    assert_eq!(alerts(&d), vec![AlertKind::PlanInvalid], "{d:?}");
    let Command::Alert(a) = &d.commands[0] else {
        panic!()
    };
    assert!(
        a.message.contains("steps[1].gateTag") && a.message.contains("steps[1].application"),
        "{}",
        a.message
    );
    assert!(
        !a.message.contains("steps[0]"),
        "step 0 is in scope: {}",
        a.message
    );
    h.advance(10);
    for d in [d, h.tick_group(0), h.tick("i-1")] {
        assert!(
            !d.commands.iter().any(|c| matches!(
                c,
                Command::OpenGate { .. }
                    | Command::CreateDeployment { .. }
                    | Command::CompleteAction { .. }
            )),
            "{d:?}"
        );
    }
    // The same plan inside the scope runs.
    let mut h = H::new();
    h.engine.config.plan_scope = PlanScope {
        gate_prefix: Some("gate-".into()),
        applications: Some(["app0".to_owned(), "app1".to_owned()].into_iter().collect()),
    };
    let d = h.launch_with("i-1", "t1", &plan_json(2, ""), None, None);
    assert!(alerts(&d).is_empty(), "{d:?}");
    h.advance(2);
    assert!(has_create(&h.tick_group(0), 0));
}
