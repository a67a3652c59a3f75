// The shared plan vectors (tests/fixtures/plan-vectors.json), which
// shared/core/tests/plan_vectors.rs runs through the Rust validator and the engine's fit check:
// the construct's validator must give every vector the same verdict and the same issues, its
// fit check the same budget and message, and the construct must report them at synth time.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { Duration } from 'aws-cdk-lib';
import { OnFailure, OnNotReady, PlanDocument, PlanIssue, WarmPoolPolicy, formatIssue, planBudgetSecs, planCannotFit, validatePlanText } from '../src';
import { ROOT, fixture } from './helpers';

interface Vector {
  name: string;
  plan: PlanDocument;
  ok: boolean;
  issues?: PlanIssue[];
  fit?: { hook: string; heartbeatSecs: number; budgetSecs: number; cannotFit: string | null };
}
const vectors: Vector[] = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fixtures', 'plan-vectors.json'), 'utf8'));

describe('shared plan vectors', () => {
  it('are all there', () => {
    assert.ok(vectors.length >= 40, `${vectors.length} vectors`);
    assert.ok(vectors.filter((v) => v.plan.readiness).length >= 10, 'readiness vectors');
    assert.ok(vectors.filter((v) => v.fit).length >= 5, 'fit vectors');
  });
  for (const v of vectors) {
    it(v.name, () => {
      const issues = validatePlanText(JSON.stringify(v.plan));
      assert.deepEqual(issues, v.ok ? [] : v.issues);
      if (v.fit) {
        assert.ok(v.ok, 'a fit needs a valid plan');
        assert.equal(planBudgetSecs(v.plan), v.fit.budgetSecs);
        assert.equal(planCannotFit(v.plan, v.fit.heartbeatSecs, v.fit.hook) ?? null, v.fit.cannotFit);
      }
    });
  }
});

describe('the construct reports plan issues at synth time', () => {
  it('as one error per issue, worded as the Rust validator words them', () => {
    const f = fixture({
      defaults: { retries: 11 },
      maxBatch: 0,
      breaker: { threshold: 0 },
      batchWindow: Duration.seconds(301),
    });
    const errors = Annotations.fromStack(f.stack).findError('*', Match.anyValue()).map((e) => e.entry.data);
    assert.deepEqual(errors, [
      'defaults.retries: must be at most 10',
      "maxBatch: must be 1..=1000 (CodeDeploy's instances per deployment)",
      'batchWindowSecs: must be at most 300',
      'breaker.threshold: must be at least 1',
    ]);
  });

  it('renders every option into the plan it validates, with the document field names', () => {
    const f = fixture({
      defaults: { retries: 4, onFailure: OnFailure.HOLD, deploymentConfig: 'inherit' },
      warmPool: WarmPoolPolicy.DEPLOY_ON_BOTH,
      batchWindow: Duration.seconds(5),
      batchFollow: Duration.minutes(2),
      maxBatch: 50,
      breaker: { threshold: 5, window: Duration.hours(2) },
      readiness: { tag: 'acme:ready', value: 'done', timeout: Duration.minutes(30), onTimeout: OnNotReady.HOLD },
      readinessTagKey: 'acme:ready',
    }, {
      stages: () => [
        { applicationName: 'web', deploymentGroupName: 'web-fleet', gateTag: 'turnstile:gate:web', gateValue: 'yes', retries: 0, retryBackoff: Duration.seconds(10), timeout: Duration.minutes(15), deploymentConfig: 'CodeDeployDefault.OneAtATime', onFailure: OnFailure.ABANDON },
      ],
    });
    assert.deepEqual(JSON.parse(f.turnstile.planJson), {
      version: 1,
      steps: [{ application: 'web', deploymentGroup: 'web-fleet', gateTag: 'turnstile:gate:web', gateValue: 'yes', retries: 0, retryBackoffSecs: 10, timeoutSecs: 900, deploymentConfig: 'CodeDeployDefault.OneAtATime', onFailure: 'abandon' }],
      defaults: { retries: 4, deploymentConfig: 'inherit', onFailure: 'hold' },
      warmPool: 'deployOnBoth',
      batchWindowSecs: 5,
      batchFollowSecs: 120,
      maxBatch: 50,
      breaker: { threshold: 5, windowSecs: 7200 },
      readiness: { tag: 'acme:ready', value: 'done', timeoutSecs: 1800, onTimeout: 'hold' },
    });
    assert.deepEqual(validatePlanText(f.turnstile.planJson), []);
    assert.deepEqual(Annotations.fromStack(f.stack).findError('*', Match.anyValue()), []);
  });

  it('reports readiness issues with the Rust messages, and renders only the fields given', () => {
    const f = fixture({ readiness: { tag: 'turnstile:gate:api', value: 'v'.repeat(257), timeout: Duration.seconds(30) } });
    assert.deepEqual(JSON.parse(f.turnstile.planJson).readiness, { tag: 'turnstile:gate:api', value: 'v'.repeat(257), timeoutSecs: 30 });
    const errors = Annotations.fromStack(f.stack).findError('*', Match.anyValue()).map((e) => e.entry.data);
    assert.deepEqual(errors, [
      "readiness.tag: `turnstile:gate:api` is steps[1]'s gate tag; the readiness tag must be one only the instance sets",
      'readiness.value: EC2 tag values are at most 256 characters',
      "readiness.timeoutSecs: must be 60..=172800 (at least one timer sweep, at most the hook's 48 h)",
    ]);
    assert.deepEqual(JSON.parse(fixture({ readiness: { tag: 'turnstile:ready' } }).turnstile.planJson).readiness, { tag: 'turnstile:ready' });
  });

  it('reports a plan over 4,000 characters', () => {
    const f = fixture({}, {
      stages: () => Array.from({ length: 20 }, (_, i) => ({
        applicationName: `application-with-a-long-name-${i}`.padEnd(100, 'x'),
        deploymentGroupName: `group-${i}`.padEnd(100, 'y'),
        gateTag: `turnstile:gate:${i}`,
      })),
    });
    const len = Buffer.byteLength(f.turnstile.planJson);
    assert.ok(len > 4000);
    const errors = Annotations.fromStack(f.stack).findError('*', Match.anyValue()).map((e) => e.entry.data);
    assert.deepEqual(errors, [formatIssue({ field: '$', reason: `plan is ${len} characters; lifecycle hook metadata holds at most 4000` })]);
  });
});
