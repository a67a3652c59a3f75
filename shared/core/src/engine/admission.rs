//! Admission: an instance joins the waiting list of its current step's group, and a free
//! group admits the waiting batch into one deployment once its batch window closed.

use super::*;

impl Cx<'_> {
    /// Starts an attempt of `step`: joins the group's waiting list.
    pub(super) fn start_attempt(&mut self, id: &InstanceId, step: usize, admit: Admit) {
        let now = self.now;
        let Some(inst) = self.inst(id) else {
            return;
        };
        if inst.plan.steps.get(step).is_none() {
            return;
        }
        let remaining = inst.remaining_secs(step);
        let left = inst.global_deadline.since(now) / 1000;
        if now.plus_secs(remaining) > inst.global_deadline {
            self.fail_instance(
                id,
                Some(step),
                format!(
                    "the remaining plan needs up to {remaining} s but only {left} s are left before the lifecycle hook's global timeout"
                ),
                Some(AlertKind::PlanCannotFit),
            );
            return;
        }
        let max_batch = inst.plan.max_batch;
        let wait = match admit {
            Admit::Now => 0,
            Admit::Window => inst.plan.batch_window_secs,
            Admit::Follow => inst.plan.batch_follow_secs,
        };
        if let Some(inst) = self.inst_mut(id)
            && let Some(r) = inst.steps.get_mut(step)
        {
            r.attempts += 1;
            r.started_at.get_or_insert(now);
        }
        self.join(id, step, now, wait, max_batch);
    }

    /// Puts the instance on the waiting list of its step's group, in its place since `since`,
    /// or, if the group's record lists as many instances as it may, in its own record
    /// ([`StepWait::Overflow`]) to try again later.
    pub(super) fn join(
        &mut self,
        id: &InstanceId,
        step: usize,
        since: Millis,
        wait_secs: u64,
        max_batch: u32,
    ) {
        let now = self.now;
        let Some(s) = self.inst(id).and_then(|i| i.plan.steps.get(step)).cloned() else {
            return;
        };
        let capacity = self.cfg.group_capacity;
        let full = self
            .group(&s.group)
            .is_some_and(|g| !g.waiting.contains_key(id) && g.listed() >= capacity);
        let wait = if full {
            StepWait::Overflow {
                since,
                tried_at: now,
            }
        } else {
            StepWait::Queued { since: now }
        };
        if let Some(inst) = self.inst_mut(id) {
            inst.phase = Phase::Running { step, wait };
        }
        if full {
            if let Some(g) = self.group_mut(&s.group)
                && !g.overflowed
            {
                g.overflowed = true;
            }
            return;
        }
        let group = self
            .w
            .groups
            .entry(s.group.clone())
            .or_insert(None)
            .get_or_insert_with(|| Group::new(s.group.clone(), s.gate.clone()));
        group.gate = s.gate.clone();
        group.config = s.deployment_config.clone();
        group.max_batch = max_batch;
        group.waiting.insert(id.clone(), since);
        let at = now.plus_secs(wait_secs);
        group.admit_at = Some(group.admit_at.map_or(at, |a| a.min(at)));
        self.touched.insert(Key::Group(s.group.clone()));
        self.try_admit(&s.group);
    }

    /// Like `start_attempt` but without counting a new attempt.
    pub(super) fn start_attempt_again(&mut self, id: &InstanceId, step: usize) {
        if let Some(r) = self.inst_mut(id).and_then(|i| i.steps.get_mut(step)) {
            r.attempts = r.attempts.saturating_sub(1);
        }
        self.start_attempt(id, step, Admit::Now);
    }

    /// Admits the waiting batch into one deployment if the group is free and the window closed.
    pub(super) fn try_admit(&mut self, key: &GroupKey) {
        let now = self.now;
        let Some(g) = self.group_mut(key) else {
            return;
        };
        if g.paused.is_some()
            || g.active.is_some()
            || g.waiting.is_empty()
            || g.admit_at.is_none_or(|a| a > now)
        {
            return;
        }
        let mut queue: Vec<(Millis, InstanceId)> =
            g.waiting.iter().map(|(i, t)| (*t, i.clone())).collect();
        queue.sort();
        let batch: Vec<InstanceId> = queue
            .into_iter()
            .take(g.max_batch.max(1) as usize)
            .map(|(_, i)| i)
            .collect();
        let mut members = BTreeMap::new();
        for i in &batch {
            g.waiting.remove(i);
            members.insert(
                i.clone(),
                Member {
                    admitted_at: now,
                    status: MemberStatus::Pending,
                },
            );
        }
        let intent = IntentId(format!("{}-{}", now.0, g.seq));
        g.seq += 1;
        g.active = Some(Active::Creating {
            intent: intent.clone(),
            members,
            since: now,
        });
        g.admit_at = if g.waiting.is_empty() {
            None
        } else {
            Some(now)
        };
        let (gate, config) = (g.gate.clone(), g.config.clone());
        self.out.push(Command::OpenGate {
            gates: vec![gate],
            instances: batch.clone(),
        });
        self.out.push(Command::CreateDeployment {
            group: key.clone(),
            intent,
            instances: batch,
            config,
        });
    }

    /// After a decision: a group with room in its list while instances wait in their own
    /// records wakes as many of them as there is room for, when the decision freed places or
    /// a wake is under way, and at most once per [`Config::overflow_wake_ms`] (the group's
    /// timer sends the next). Not on every freed place: the instances woken by the last wake
    /// have not joined yet, and the longest-waiting ones were woken again and again as a
    /// batch of 1,000 left one by one (1 + 2 + … + 1,000 wakes).
    pub(super) fn wake_overflowed(&mut self, before: &World) {
        let (capacity, now, every) = (self.cfg.group_capacity, self.now, self.cfg.overflow_wake_ms);
        let mut wakes = Vec::new();
        for (key, g) in &mut self.w.groups {
            let Some(g) = g.as_mut().filter(|g| g.overflowed) else {
                continue;
            };
            let was = before.group(key).map_or(usize::MAX, |b| {
                if b.overflowed { b.listed() } else { usize::MAX }
            });
            let listed = g.listed();
            let due = g.overflow_woken_at.is_none_or(|t| now.since(t) >= every);
            if listed < capacity && due && (listed < was || g.overflow_woken_at.is_some()) {
                g.overflow_woken_at = Some(now);
                wakes.push(Command::WakeOverflowed {
                    group: key.clone(),
                    room: capacity - listed,
                });
            }
        }
        for w in &wakes {
            if let Command::WakeOverflowed { group, .. } = w {
                self.touched.insert(Key::Group(group.clone()));
            }
        }
        self.out.extend(wakes);
    }

    /// The wake found fewer instances than it had room for: none is left outside the list.
    pub(super) fn on_overflow_woken(&mut self, key: &GroupKey, woken: usize, room: usize) {
        if woken < room
            && let Some(g) = self.group_mut(key)
        {
            g.overflowed = false;
            g.overflow_woken_at = None;
        }
    }

    /// The last pending member of a batch failed: batch-mates that already moved on to the
    /// next group need not wait out the follow window for it.
    pub(super) fn nudge_next(&mut self, id: &InstanceId, step: usize) {
        let now = self.now;
        let Some(next) = self
            .inst(id)
            .and_then(|i| i.plan.steps.get(step + 1))
            .map(|s| s.group.clone())
        else {
            return;
        };
        if let Some(g) = self.group_mut(&next)
            && !g.waiting.is_empty()
            && g.admit_at.is_some_and(|a| a > now)
        {
            g.admit_at = Some(now);
        }
        self.try_admit(&next);
    }
}
