// The plan document and its validation: the same rules and the same messages as
// shared/core/src/plan.rs (`Plan::parse`), checked against the shared vectors in
// tests/fixtures/plan-vectors.json by both this package's tests and
// shared/core/tests/plan_vectors.rs. Change a rule or a message here only together with the
// Rust validator and the vectors.

/** Longest `NotificationMetadata` Auto Scaling accepts. */
export const MAX_METADATA_LEN = 4000;
/** CodeDeploy's limit on instances in one deployment. */
export const CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT = 1000;
/** CodeDeploy's in-place deployment maximum (12 h). */
export const MAX_STEP_TIMEOUT_SECS = 12 * 3600;
const MAX_STEPS = 20;
const MAX_RETRIES = 10;

/** The built-in defaults (shared/core/src/plan.rs `defaults`). */
export const PLAN_DEFAULTS = {
  retries: 2,
  retryBackoffSecs: 30,
  timeoutSecs: 1800,
  deploymentConfig: 'CodeDeployDefault.AllAtOnce',
  gateValue: 'open',
  batchWindowSecs: 2,
  batchFollowSecs: 300,
  maxBatch: CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT,
  breakerThreshold: 3,
  breakerWindowSecs: 3600,
  readinessValue: 'true',
  readinessTimeoutSecs: 900,
  readinessOnTimeout: 'abandon',
} as const;

/** Bounds of `readiness.timeoutSecs` (shared/core `READINESS_TIMEOUT_RANGE_SECS`). */
export const READINESS_TIMEOUT_RANGE_SECS = { min: 60, max: 172_800 } as const;

/** The per-step options, as the plan document spells them. */
export interface PlanStepOptions {
  readonly retries?: number;
  readonly retryBackoffSecs?: number;
  readonly timeoutSecs?: number;
  readonly deploymentConfig?: string;
  readonly onFailure?: 'abandon' | 'hold';
}

export interface PlanStep extends PlanStepOptions {
  readonly application: string;
  readonly deploymentGroup: string;
  readonly gateTag: string;
  readonly gateValue?: string;
}

/** The readiness signal (shared/core `ReadinessDoc`): a tag the instance sets on itself once bootstrapped. */
export interface PlanReadiness {
  readonly tag: string;
  readonly value?: string;
  readonly timeoutSecs?: number;
  readonly onTimeout?: 'abandon' | 'hold' | 'start';
}

/** The plan document (README "Configuring a plan"), as it goes into the hook's metadata. */
export interface PlanDocument {
  readonly version: number;
  readonly steps: PlanStep[];
  readonly defaults?: PlanStepOptions;
  readonly warmPool?: 'deployOnExit' | 'deployOnEntry' | 'deployOnBoth';
  readonly batchWindowSecs?: number;
  readonly batchFollowSecs?: number;
  readonly maxBatch?: number;
  readonly breaker?: { readonly threshold?: number; readonly windowSecs?: number };
  readonly readiness?: PlanReadiness;
}

/** One problem found in a plan: the JSON path of the field and the reason. */
export interface PlanIssue {
  readonly field: string;
  readonly reason: string;
}

/** `field: reason`, as the Rust `PlanIssue` displays. */
export function formatIssue(i: PlanIssue): string {
  return `${i.field}: ${i.reason}`;
}

/** Characters as Rust's `str::chars().count()` counts them (Unicode scalar values). */
function chars(s: string): number {
  return [...s].length;
}

/** Rust's `str::len()`: UTF-8 bytes. */
function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * Validates the plan's text as `Plan::parse` does, for a document of the right shape (the
 * construct builds it from typed props; shape errors such as an unknown field or a string
 * where a number belongs are serde's in Rust, worded by serde, and are not mirrored here).
 * Returns every issue, in the Rust validator's order; empty when the plan is valid.
 */
export function validatePlanText(text: string): PlanIssue[] {
  const len = bytes(text);
  if (len > MAX_METADATA_LEN) {
    return [
      {
        field: '$',
        reason: `plan is ${len} characters; lifecycle hook metadata holds at most ${MAX_METADATA_LEN}`,
      },
    ];
  }
  return validatePlanDocument(JSON.parse(text) as PlanDocument);
}

/** The semantic checks of `PlanDoc::resolve`, in its order. */
export function validatePlanDocument(doc: PlanDocument): PlanIssue[] {
  const issues: PlanIssue[] = [];
  const push = (field: string, reason: string) => issues.push({ field, reason });

  if (doc.version !== 1) {
    push('version', `unsupported version ${doc.version}; this release reads version 1`);
  }
  if (doc.steps.length === 0) {
    push('steps', 'a plan needs at least one step');
  }
  if (doc.steps.length > MAX_STEPS) {
    push('steps', `${doc.steps.length} steps; at most ${MAX_STEPS} are supported`);
  }
  checkOptions('defaults', doc.defaults ?? {}, push);

  const groups = new Set<string>();
  const gates = new Set<string>();
  doc.steps.forEach((s, i) => {
    const at = (f: string) => `steps[${i}].${f}`;
    checkName(at('application'), s.application, push);
    checkName(at('deploymentGroup'), s.deploymentGroup, push);
    checkTagKey(at('gateTag'), s.gateTag, push);
    const gateValue = s.gateValue ?? PLAN_DEFAULTS.gateValue;
    if (chars(gateValue) > 256) {
      push(at('gateValue'), 'EC2 tag values are at most 256 characters');
    }
    checkOptions(`steps[${i}]`, s, push);
    const group = `${s.application}/${s.deploymentGroup}`;
    if (groups.has(group)) {
      push(at('deploymentGroup'), `${group} appears twice; each deployment group runs once per instance`);
    }
    groups.add(group);
    if (gates.has(s.gateTag)) {
      push(at('gateTag'), `gate tag \`${s.gateTag}\` is used by an earlier step; each step needs its own gate`);
    }
    gates.add(s.gateTag);
  });
  if (doc.readiness) checkReadiness(doc.readiness, doc.steps, push);

  const maxBatch = doc.maxBatch ?? PLAN_DEFAULTS.maxBatch;
  if (maxBatch === 0 || maxBatch > CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT) {
    push(
      'maxBatch',
      `must be 1..=${CODEDEPLOY_MAX_INSTANCES_PER_DEPLOYMENT} (CodeDeploy's instances per deployment)`,
    );
  }
  if ((doc.batchWindowSecs ?? PLAN_DEFAULTS.batchWindowSecs) > 300) {
    push('batchWindowSecs', 'must be at most 300');
  }
  if ((doc.batchFollowSecs ?? PLAN_DEFAULTS.batchFollowSecs) > 3600) {
    push('batchFollowSecs', 'must be at most 3600');
  }
  if ((doc.breaker?.threshold ?? PLAN_DEFAULTS.breakerThreshold) === 0) {
    push('breaker.threshold', 'must be at least 1');
  }
  if ((doc.breaker?.windowSecs ?? PLAN_DEFAULTS.breakerWindowSecs) === 0) {
    push('breaker.windowSecs', 'must be at least 1');
  }
  return issues;
}

/** shared/core `resolve_readiness`: a tag key only the instance sets, its value and timeout. */
function checkReadiness(r: PlanReadiness, steps: PlanStep[], push: (f: string, r: string) => void) {
  checkTagKey('readiness.tag', r.tag, push);
  const i = steps.findIndex((s) => s.gateTag === r.tag);
  if (i >= 0) {
    push('readiness.tag', `\`${r.tag}\` is steps[${i}]'s gate tag; the readiness tag must be one only the instance sets`);
  }
  if (chars(r.value ?? PLAN_DEFAULTS.readinessValue) > 256) {
    push('readiness.value', 'EC2 tag values are at most 256 characters');
  }
  const t = r.timeoutSecs ?? PLAN_DEFAULTS.readinessTimeoutSecs;
  const { min, max } = READINESS_TIMEOUT_RANGE_SECS;
  if (!(t >= min && t <= max)) {
    push('readiness.timeoutSecs', `must be ${min}..=${max} (at least one timer sweep, at most the hook's 48 h)`);
  }
}

function checkOptions(prefix: string, o: PlanStepOptions, push: (f: string, r: string) => void) {
  if (o.retries !== undefined && o.retries > MAX_RETRIES) {
    push(`${prefix}.retries`, `must be at most ${MAX_RETRIES}`);
  }
  if (o.timeoutSecs !== undefined && !(o.timeoutSecs >= 60 && o.timeoutSecs <= MAX_STEP_TIMEOUT_SECS)) {
    push(
      `${prefix}.timeoutSecs`,
      `must be 60..=${MAX_STEP_TIMEOUT_SECS} (CodeDeploy's in-place maximum is 12 h)`,
    );
  }
  if (o.retryBackoffSecs !== undefined && o.retryBackoffSecs > 3600) {
    push(`${prefix}.retryBackoffSecs`, 'must be at most 3600');
  }
  if (o.deploymentConfig !== undefined && (o.deploymentConfig.length === 0 || bytes(o.deploymentConfig) > 100)) {
    push(
      `${prefix}.deploymentConfig`,
      'must be 1..=100 characters (a deployment configuration name, or `inherit`)',
    );
  }
}

function checkName(field: string, value: string, push: (f: string, r: string) => void) {
  if (value.length === 0 || chars(value) > 100) {
    push(field, 'must be 1..=100 characters');
  }
}

function checkTagKey(field: string, key: string, push: (f: string, r: string) => void) {
  if (key.length === 0 || chars(key) > 128) {
    push(field, 'EC2 tag keys are 1..=128 characters');
  } else if (/^aws:/i.test(key)) {
    // Rust: `key.to_ascii_lowercase().starts_with("aws:")`; /i without the u flag folds ASCII
    // letters only, as to_ascii_lowercase does.
    push(field, 'tag keys starting with `aws:` are reserved by AWS');
  }
}

/** The step timeouts with every default applied, in plan order. */
export function resolvedStepTimeouts(doc: PlanDocument): number[] {
  return doc.steps.map((s) => s.timeoutSecs ?? doc.defaults?.timeoutSecs ?? PLAN_DEFAULTS.timeoutSecs);
}

/** min(100 × heartbeat timeout, 48 h), as shared/core `HookTimeouts::from_heartbeat`. */
export function globalTimeoutSecs(heartbeatSecs: number): number {
  return Math.min(heartbeatSecs * 100, 172_800);
}

/** `Plan::budget_secs`: the longest the plan can take, its readiness wait then every step's timeout. */
export function planBudgetSecs(doc: PlanDocument): number {
  const steps = resolvedStepTimeouts(doc).reduce((a, b) => a + b, 0);
  return steps + (doc.readiness ? doc.readiness.timeoutSecs ?? PLAN_DEFAULTS.readinessTimeoutSecs : 0);
}

/**
 * The check the queue function makes on every launch from EC2 before it starts a plan
 * (shared/core/src/engine/lifecycle.rs `plan_cannot_fit`): the readiness wait and the step
 * timeouts must fit the hook's global timeout, or the instance is held with a `PlanCannotFit`
 * alert. Same wording; `undefined` when it fits.
 */
export function planCannotFit(doc: PlanDocument, heartbeatSecs: number, hook: string): string | undefined {
  const need = planBudgetSecs(doc);
  const global = globalTimeoutSecs(heartbeatSecs);
  if (need > global) {
    return `the plan's timeouts (readiness wait and steps) add up to ${need} s but hook ${hook}'s global timeout is ${global} s (100 × heartbeat timeout, at most 48 h)`;
  }
  return undefined;
}
