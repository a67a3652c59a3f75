// cdk-nag's AwsSolutions rules over the construct (defaults and every option) and the example
// app: synthesis must pass with no unacknowledged finding, and every acknowledgement carries a
// written reason. The synthesized templates stay in dist/synth/ for cfn-lint (make cdk-test).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { App, CfnResource, Duration, Stack, Validations, aws_autoscaling as autoscaling, aws_sns as sns } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Turnstile } from '../src';
import { exampleApp } from '../example/app';
import { STAND_IN, importedStages, standInCode } from './helpers';

const SYNTH = path.resolve(__dirname, '..', 'synth');

function synthWithNag(name: string, build: (app: App) => void) {
  const outdir = path.join(SYNTH, name);
  fs.rmSync(outdir, { recursive: true, force: true });
  const app = new App({ outdir });
  build(app);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  app.synth(); // throws ValidationFailed, listing every finding, if one is not acknowledged
  return app;
}

/** Every acknowledgement on the constructs of an app, with its reason. */
function acknowledgements(app: App): { path: string; id: string; reason: string }[] {
  const out: { path: string; id: string; reason: string }[] = [];
  for (const c of app.node.findAll()) {
    for (const m of c.node.metadata) {
      if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(m.data as Record<string, string>)) out.push({ path: c.node.path, id, reason });
    }
  }
  return out;
}

describe('cdk-nag AwsSolutions', () => {
  it('passes on the construct with its defaults', () => {
    const app = synthWithNag('defaults', (a) => {
      const stack = new Stack(a, 'Defaults');
      const asg = autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, 'Fleet', 'shared-fleet');
      new Turnstile(stack, 'Turnstile', { autoScalingGroups: [asg], stages: importedStages(stack), code: standInCode() });
    });
    const acks = acknowledgements(app);
    assert.ok(acks.length >= 10, `${acks.length} acknowledgements`);
    for (const a of acks) assert.ok(a.reason.length > 30, `${a.path} ${a.id}: reason too short: ${a.reason}`);
    // Only the wildcard resources the SAM stack has too, and its queues' missing TLS deny.
    assert.deepEqual([...new Set(acks.map((a) => a.id.replace(/\[.*$/, '').replace(/^\w+::/, '')))].sort(), ['AwsSolutions-IAM5', 'AwsSolutions-SQS4']);
  });

  it('passes on the construct with every option', () => {
    synthWithNag('every-option', (a) => {
      const stack = new Stack(a, 'EveryOption');
      const asgs = ['blue', 'green'].map((n) => autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, n, `${n}-fleet`));
      new Turnstile(stack, 'Turnstile', {
        autoScalingGroups: asgs,
        stages: importedStages(stack),
        code: standInCode(),
        createTerminateHooks: true,
        ownedHookPrefix: 'team/',
        heartbeatTimeout: Duration.minutes(15),
        alarmTopic: new sns.Topic(stack, 'Alarms', { enforceSSL: true, masterKey: undefined }),
      });
      for (const c of stack.node.findAll()) {
        if (c instanceof CfnResource && c.cfnResourceType === 'AWS::SNS::Topic') {
          Validations.of(c).acknowledge({ id: 'AwsSolutions-SNS2', reason: "test topic: the alarms' topic is the user's, encrypted as they choose" });
        }
      }
    });
  });

  it('passes on the example app', () => {
    process.env.TURNSTILE_EXAMPLE_CODE = STAND_IN;
    try {
      synthWithNag('example', (a) => exampleApp(a));
    } finally {
      delete process.env.TURNSTILE_EXAMPLE_CODE;
    }
    const template = JSON.parse(fs.readFileSync(path.join(SYNTH, 'example', 'SharedFleet.template.json'), 'utf8'));
    const hooks = Object.values(template.Resources as Record<string, { Type: string; Properties: { NotificationMetadata?: string } }>).filter(
      (r) => r.Type === 'AWS::AutoScaling::LifecycleHook',
    );
    assert.equal(hooks.length, 1);
    assert.deepEqual(JSON.parse(hooks[0].Properties.NotificationMetadata as string).steps.map((s: { application: string }) => s.application), ['web', 'api', 'worker']);
  });
});
