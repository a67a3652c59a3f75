// Parity: the construct's synthesized stack against infra/template.yaml, read at test time, on
// what matters (see model.ts). A change of a permission, pattern or setting in only one of the
// two stacks fails here, naming the section; align the other side.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Duration, aws_sns as sns } from 'aws-cdk-lib';
import { LogLevel, OnNotReady } from '../src';
import { Json } from './cfn';
import { ROOT, fixture } from './helpers';
import { Model, cdkModel, samModel } from './model';

const SAM_TEMPLATE = process.env.TURNSTILE_SAM_TEMPLATE ?? path.join(ROOT, 'infra', 'template.yaml');
const TOPIC = 'arn:aws:sns:us-east-1:111122223333:turnstile-alarms';

interface Case {
  readonly name: string;
  readonly build: () => { cdk: Model; sam: Model };
}

const cases: Case[] = [
  {
    name: 'defaults (one group, three applications)',
    build: () => {
      const f = fixture();
      return {
        cdk: cdkModel(f.stack, f.turnstile),
        sam: samModel(SAM_TEMPLATE, {
          ManagedAutoScalingGroupNames: ['shared-fleet'],
          ManagedApplications: ['web', 'api', 'worker'],
          Plan: f.turnstile.planJson,
        }),
      };
    },
  },
  {
    name: 'every option (two groups, owned hook prefix, terminate hooks, alarm topic, readiness, queue concurrency)',
    build: () => {
      const f = fixture(
        (stack) => ({
          alarmTopic: sns.Topic.fromTopicArn(stack, 'Topic', TOPIC),
          launchHookName: 'fleet-launch',
          ownedHookPrefix: 'team/',
          createTerminateHooks: true,
          heartbeatTimeout: Duration.seconds(900),
          gateTagPrefix: 'acme:gate:',
          logLevel: LogLevel.DEBUG,
          readiness: { tag: 'acme:ready', value: 'yes', timeout: Duration.minutes(20), onTimeout: OnNotReady.START },
          queueConcurrency: 25,
        }),
        {
          groups: ['blue-fleet', 'green-fleet'],
          stages: () =>
            ['web', 'api'].map((a) => ({
              applicationName: a,
              deploymentGroupName: `${a}-fleet`,
              gateTag: `acme:gate:${a}`,
              timeout: Duration.minutes(20),
            })),
        },
      );
      return {
        cdk: cdkModel(f.stack, f.turnstile),
        sam: samModel(SAM_TEMPLATE, {
          ManagedAutoScalingGroupNames: ['blue-fleet', 'green-fleet'],
          ManagedApplications: ['web', 'api'],
          GateTagPrefix: 'acme:gate:',
          Plan: f.turnstile.planJson,
          LaunchHookName: 'fleet-launch',
          OwnedHookPrefix: 'team/',
          HeartbeatTimeout: 900,
          CreateTerminateHooks: 'true',
          LogLevel: 'debug',
          AlarmTopicArn: TOPIC,
          ReadinessTagKey: 'acme:ready',
          QueueConcurrency: 25,
        }),
      };
    },
  },
];

const SECTIONS: (keyof Model)[] = [
  'eventSources',
  'rules',
  'queues',
  'queuePolicies',
  'table',
  'logGroups',
  'alarms',
  'hooks',
  'dashboard',
  'operatorPolicies',
  'scannerSkips',
  'other',
];

for (const c of cases) {
  describe(`parity with infra/template.yaml: ${c.name}`, () => {
    const { cdk, sam } = c.build();
    it('has the same functions', () => assert.deepEqual(Object.keys(cdk.functions).sort(), Object.keys(sam.functions).sort()));
    for (const fn of Object.keys(sam.functions)) {
      it(`${fn}: same settings (runtime, architecture, memory, timeout, environment...)`, () =>
        assert.deepEqual(cdk.functions[fn]?.settings, sam.functions[fn].settings));
      it(`${fn}: same IAM actions on the same resources`, () =>
        assert.deepEqual(cdk.functions[fn]?.permissions, sam.functions[fn].permissions));
      it(`${fn}: writes logs to its own log group only (SAM: AWSLambdaBasicExecutionRole, on *)`, () =>
        assert.deepEqual(cdk.functions[fn]?.logs, {
          'logs:CreateLogStream': [`\${${fn}Logs.Arn}`],
          'logs:PutLogEvents': [`\${${fn}Logs.Arn}`],
        }));
    }
    for (const s of SECTIONS) {
      it(`same ${s}`, () => assert.deepEqual(cdk[s] as Json, sam[s] as Json));
    }
  });
}
