import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  App,
  Duration,
  Stack,
  aws_autoscaling as autoscaling,
  aws_codedeploy as codedeploy,
  aws_dynamodb as dynamodb,
  aws_ec2 as ec2,
  aws_iam as iam,
  aws_sns as sns,
} from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Turnstile } from '../src';
import { fixture, importedStages, standInCode } from './helpers';

const errors = (stack: Stack) => Annotations.fromStack(stack).findError('*', Match.anyValue()).map((e) => String(e.entry.data));
const warnings = (stack: Stack) => Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((e) => String(e.entry.data));
type Statement = { Action: string | string[]; Resource: unknown; Sid?: string };
const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/** Every statement of every policy in the template, with where it is. */
function statements(t: Template): { where: string; s: Statement }[] {
  const out: { where: string; s: Statement }[] = [];
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const [id, r] of Object.entries(t.findResources(type))) {
      for (const s of (r.Properties.PolicyDocument.Statement as Statement[])) out.push({ where: id, s });
    }
  }
  return out;
}

describe('Turnstile resources', () => {
  const f = fixture();
  const t = Template.fromStack(f.stack);

  it('synthesizes without errors or warnings', () => {
    assert.deepEqual(errors(f.stack), []);
    assert.deepEqual(warnings(f.stack), []);
  });

  it('creates the functions on provided.al2023, arm64, with the stand-in code', () => {
    t.resourceCountIs('AWS::Lambda::Function', 2);
    t.allResourcesProperties('AWS::Lambda::Function', {
      Runtime: 'provided.al2023',
      Architectures: ['arm64'],
      Handler: 'bootstrap',
      MemorySize: 256,
      Timeout: 60,
      Code: { S3Bucket: Match.anyValue(), S3Key: Match.stringLikeRegexp('\\.zip$') },
    });
  });

  it('feeds the queue function from the queue in batches of 10 with partial batch failures', () => {
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TurnstileQueue'), 'Arn'] },
    });
  });

  it('runs the timer every minute', () => {
    t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 minute)' });
  });

  it('keeps the table on deletion, with the keys, indexes and TTL the store uses', () => {
    t.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        GlobalSecondaryIndexes: Match.arrayWith([Match.objectLike({ IndexName: 'overflow' })]),
      }),
    });
  });

  it('filters launch actions on the managed groups and turnstile\'s own hook', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.autoscaling'],
        'detail-type': ['EC2 Instance-launch Lifecycle Action'],
        detail: { AutoScalingGroupName: ['shared-fleet'], LifecycleHookName: ['turnstile-launch'] },
      },
    });
  });

  it('filters CodeDeploy events on the managed applications, without START', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        source: ['aws.codedeploy'],
        detail: { application: ['web', 'api', 'worker'], state: [{ 'anything-but': ['START'] }] },
      }),
    });
  });

  it('puts the validated plan into the launch hook, with ABANDON as its default result', () => {
    const hooks = t.findResources('AWS::AutoScaling::LifecycleHook');
    assert.equal(Object.keys(hooks).length, 1);
    const p = Object.values(hooks)[0].Properties;
    assert.equal(p.NotificationMetadata, f.turnstile.planJson);
    assert.deepEqual(JSON.parse(p.NotificationMetadata), {
      version: 1,
      steps: ['web', 'api', 'worker'].map((a) => ({ application: a, deploymentGroup: `${a}-fleet`, gateTag: `turnstile:gate:${a}` })),
    });
    assert.equal(p.DefaultResult, 'ABANDON');
    assert.equal(p.HeartbeatTimeout, 600);
    assert.equal(p.AutoScalingGroupName, 'shared-fleet');
  });

  it('grants "*" only to the Describe actions that support no resource-level permissions', () => {
    const starred = statements(t)
      .filter(({ s }) => list(s.Resource).includes('*'))
      .flatMap(({ s }) => list(s.Action))
      .sort();
    assert.deepEqual([...new Set(starred)], [
      'autoscaling:DescribeAutoScalingGroups',
      'autoscaling:DescribeLifecycleHooks',
      'autoscaling:DescribeWarmPool',
      'ec2:DescribeTags',
    ]);
    for (const { s } of statements(t)) assert.ok(!list(s.Action).some((a) => a.endsWith('*')), `wildcard action in ${JSON.stringify(s)}`);
  });

  it('lets only the queue function change message visibility, on its own queue', () => {
    const grants = statements(t).filter(({ s }) => list(s.Action).includes('sqs:ChangeMessageVisibility'));
    // The queue function (fast redelivery) and the operators (turnstile dlq), nobody else.
    assert.deepEqual(
      grants.map((g) => g.where.replace(/[0-9A-F]{8}$/, '')).sort(),
      ['TurnstileOperatorPolicy', 'TurnstileQueueFunctionRoleDefaultPolicy'],
    );
    for (const g of grants) {
      const target = g.where.startsWith('TurnstileOperatorPolicy') ? 'TurnstileDeadLetterQueue' : 'TurnstileQueue';
      assert.match(JSON.stringify(g.s.Resource), new RegExp(`"${target}[0-9A-F]{8}","Arn"`));
    }
  });

  it('creates the seven alarms without actions when no topic is given, each with its alarm-action suppression', () => {
    t.resourceCountIs('AWS::CloudWatch::Alarm', 7);
    for (const a of Object.values(t.findResources('AWS::CloudWatch::Alarm'))) {
      assert.equal(a.Properties.AlarmActions, undefined);
      assert.deepEqual(a.Metadata.guard.SuppressedRules.map((r: { rule: string }) => r.rule), ['cloudwatch_alarm_action_check']);
    }
    const withTopic = Template.fromStack(fixture((stack) => ({ alarmTopic: sns.Topic.fromTopicArn(stack, 'T', 'arn:aws:sns:us-east-1:111122223333:t') })).stack);
    for (const a of Object.values(withTopic.findResources('AWS::CloudWatch::Alarm'))) assert.equal(a.Metadata?.guard, undefined);
  });

  it('reserves concurrency: the queue function and its event source at queueConcurrency, the timer at one', () => {
    const fns = Object.values(t.findResources('AWS::Lambda::Function')).map((r) => r.Properties.ReservedConcurrentExecutions).sort();
    assert.deepEqual(fns, [1, 10]);
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 10 } });
    const c = Template.fromStack(fixture({ queueConcurrency: 40 }).stack);
    c.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 40 } });
    c.hasResourceProperties('AWS::Lambda::Function', { ReservedConcurrentExecutions: 40 });
  });

  it('sends the timer\'s failed or late sweeps to its own dead-letter queue, without retries', () => {
    t.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { MaximumEventAgeInSeconds: 60, MaximumRetryAttempts: 0 });
    t.hasResourceProperties('AWS::Lambda::Function', {
      DeadLetterConfig: { TargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TurnstileTimerDeadLetterQueue'), 'Arn'] } },
    });
  });

  it('routes the readiness tag\'s changes on EC2 instances to the queue', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.tag'],
        'detail-type': ['Tag Change on Resource'],
        detail: { service: ['ec2'], 'resource-type': ['instance'], 'changed-tag-keys': ['turnstile:ready'] },
      },
    });
    const r = Template.fromStack(fixture({ readiness: { tag: 'acme:ready' } }).stack);
    r.hasResourceProperties('AWS::Events::Rule', { EventPattern: Match.objectLike({ detail: Match.objectLike({ 'changed-tag-keys': ['acme:ready'] }) }) });
  });
});

describe('Turnstile synth-time checks', () => {
  it('reports a deployment group that lists a managed Auto Scaling group', () => {
    const app = new App();
    const stack = new Stack(app, 'S');
    const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 0, maxAzs: 1 });
    const asg = new autoscaling.AutoScalingGroup(stack, 'Fleet', {
      vpc,
      instanceType: new ec2.InstanceType('t4g.small'),
      machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
    });
    const application = new codedeploy.ServerApplication(stack, 'Web', { applicationName: 'web' });
    const dg = new codedeploy.ServerDeploymentGroup(stack, 'WebGroup', {
      application,
      deploymentGroupName: 'web-fleet',
      autoScalingGroups: [asg],
      installAgent: false,
    });
    new Turnstile(stack, 'Turnstile', { autoScalingGroups: [asg], stages: [{ deploymentGroup: dg, gateTag: 'turnstile:gate:web' }], code: standInCode() });
    const e = errors(stack);
    assert.equal(e.length, 1, e.join('\n'));
    assert.match(e[0], /^steps\[0\]\.deploymentGroup: S\/WebGroup lists Auto Scaling group S\/Fleet, so CodeDeploy installs its own launch hook/);
    assert.ok(warnings(stack).some((w) => w.startsWith('steps[0].deploymentGroup: S/WebGroup has no tag group of its own for the gate turnstile:gate:web=open')));
  });

  it('accepts a deployment group that selects the gate as its own tag group', () => {
    const app = new App();
    const stack = new Stack(app, 'S');
    const asg = autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, 'Fleet', 'shared-fleet');
    const dg = new codedeploy.ServerDeploymentGroup(stack, 'WebGroup', {
      application: new codedeploy.ServerApplication(stack, 'Web', { applicationName: 'web' }),
      deploymentGroupName: 'web-fleet',
      ec2InstanceTags: new codedeploy.InstanceTagSet({ role: ['shared-fleet'] }, { 'turnstile:gate:web': ['open'] }),
    });
    const ts = new Turnstile(stack, 'Turnstile', { autoScalingGroups: [asg], stages: [{ deploymentGroup: dg, gateTag: 'turnstile:gate:web' }], code: standInCode() });
    assert.deepEqual(errors(stack), []);
    assert.deepEqual(warnings(stack), []);
    // The names the app gave are literal in the plan, so it was checked in full.
    assert.equal(ts.planJson, '{"version":1,"steps":[{"application":"web","deploymentGroup":"web-fleet","gateTag":"turnstile:gate:web"}]}');
  });

  it('reports duplicate gates with the Rust validator\'s message', () => {
    const f = fixture({}, {
      stages: () => [
        { applicationName: 'web', deploymentGroupName: 'a', gateTag: 'turnstile:gate:x' },
        { applicationName: 'api', deploymentGroupName: 'b', gateTag: 'turnstile:gate:x' },
      ],
    });
    assert.deepEqual(errors(f.stack), ['steps[1].gateTag: gate tag `turnstile:gate:x` is used by an earlier step; each step needs its own gate']);
  });

  it('reports step timeouts and a readiness wait that cannot fit the hook\'s global timeout, as the queue function words it', () => {
    const f = fixture({ heartbeatTimeout: Duration.seconds(60), defaults: { timeout: Duration.hours(1) } });
    assert.deepEqual(errors(f.stack), [
      "the plan's timeouts (readiness wait and steps) add up to 10800 s but hook turnstile-launch's global timeout is 6000 s (100 × heartbeat timeout, at most 48 h); the queue function would hold every new instance (PlanCannotFit)",
    ]);
    const r = fixture({ heartbeatTimeout: Duration.seconds(120), launchHookName: 'fleet-launch', readiness: { tag: 'turnstile:ready', timeout: Duration.hours(2) } });
    assert.deepEqual(errors(r.stack), [
      "the plan's timeouts (readiness wait and steps) add up to 12600 s but hook fleet-launch's global timeout is 12000 s (100 × heartbeat timeout, at most 48 h); the queue function would hold every new instance (PlanCannotFit)",
    ]);
    assert.deepEqual(warnings(f.stack), ['heartbeatTimeout: 60 s; below 120 s a single lost timer message can miss a heartbeat [ack: turnstile:heartbeat]']);
  });

  it('reports a gate tag outside the gate tag prefix (IAM would deny setting it)', () => {
    const f = fixture({}, { stages: () => [{ applicationName: 'web', deploymentGroupName: 'a', gateTag: 'gate:web' }] });
    assert.deepEqual(errors(f.stack), ['steps[0].gateTag: `gate:web` does not start with the gate tag prefix `turnstile:gate:`, so turnstile may not set it']);
  });

  it('checks readinessTagKey and queueConcurrency as the SAM parameters do, and warns when the readiness tag is another key', () => {
    const f = fixture({ readinessTagKey: 'aws:ready', queueConcurrency: 1 });
    assert.deepEqual(errors(f.stack), [
      'readinessTagKey `aws:ready`: must match ^(?!aws:)[^*]{1,128}$',
      'queueConcurrency: 1; must be a whole number from 2 to 1000',
    ]);
    const w = fixture({ readiness: { tag: 'acme:ready' }, readinessTagKey: 'turnstile:ready' });
    assert.deepEqual(errors(w.stack), []);
    assert.deepEqual(warnings(w.stack), [
      "readiness.tag `acme:ready` is not readinessTagKey `turnstile:ready`: its tag events do not reach the queue, so an instance is seen ready only by the timer's sweep, within a minute [ack: turnstile:readiness-tag-key]",
    ]);
  });

  it('reports a heartbeat timeout Auto Scaling does not take, and fractional or negative numbers', () => {
    const f = fixture({ heartbeatTimeout: Duration.hours(3), maxBatch: 2.5, defaults: { retries: -1 } });
    assert.deepEqual(errors(f.stack), [
      'heartbeatTimeout: 10800 s; lifecycle hooks take 30 to 7200 s',
      'defaults.retries: must be a whole number of at least 0, is -1',
      'maxBatch: must be a whole number of at least 0, is 2.5',
    ]);
  });

  it('renders names CloudFormation generates as references, and warns that their length is unchecked', () => {
    const app = new App();
    const stack = new Stack(app, 'S');
    const asg = autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, 'Fleet', 'shared-fleet');
    const stages = Array.from({ length: 20 }, (_, i) => ({
      deploymentGroup: new codedeploy.ServerDeploymentGroup(stack, `G${i}`, {
        application: new codedeploy.ServerApplication(stack, `A${i}`),
        ec2InstanceTags: new codedeploy.InstanceTagSet({ role: ['x'] }, { [`turnstile:gate:${i}`]: ['open'] }),
      }),
      gateTag: `turnstile:gate:${i}`,
    }));
    new Turnstile(stack, 'Turnstile', { autoScalingGroups: [asg], stages, code: standInCode() });
    assert.deepEqual(errors(stack), []);
    const w = warnings(stack);
    assert.equal(w.length, 1, w.join('\n'));
    assert.match(w[0], /^the plan may reach \d+ characters once CloudFormation resolves 40 application and deployment group names/);
    const hook = Object.values(Template.fromStack(stack).findResources('AWS::AutoScaling::LifecycleHook'))[0];
    assert.ok(JSON.stringify(hook.Properties.NotificationMetadata).includes('"Ref":"A0'), 'the plan refers to the application');
  });

  it('uses an existing table instead of creating one', () => {
    const f = fixture((stack) => ({ table: dynamodb.Table.fromTableName(stack, 'T', 'existing-table') }));
    const t = Template.fromStack(f.stack);
    t.resourceCountIs('AWS::DynamoDB::Table', 0);
    t.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ TURNSTILE_TABLE: 'existing-table' }) } });
  });

  it('says how to get the functions\' code when the packaged assets are missing', () => {
    const app = new App();
    const stack = new Stack(app, 'S');
    const asg = autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, 'Fleet', 'shared-fleet');
    assert.throws(
      () => new Turnstile(stack, 'Turnstile', { autoScalingGroups: [asg], stages: importedStages(stack) }),
      /assets\/turnstile-queue\/bootstrap\.zip is missing\. Build the functions \(make build\) .* or pass the code prop/,
    );
  });
});

describe('Turnstile members', () => {
  it('grantRead and grantOperate give the operator policies\' statements to a principal', () => {
    const f = fixture();
    const reader = new iam.Role(f.stack, 'Reader', { assumedBy: new iam.AccountRootPrincipal() });
    const operator = new iam.Role(f.stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
    f.turnstile.grantRead(reader);
    f.turnstile.grantOperate(operator);
    const t = Template.fromStack(f.stack);
    const actionsOf = (prefix: string) =>
      statements(t)
        .filter((x) => x.where.startsWith(prefix))
        .flatMap((x) => list(x.s.Action))
        .sort();
    const policyActions = (prefix: string) => actionsOf(prefix);
    assert.deepEqual(actionsOf('ReaderDefaultPolicy'), policyActions('TurnstileOperatorReadOnlyPolicy'));
    assert.deepEqual(actionsOf('OperatorDefaultPolicy'), policyActions('TurnstileOperatorPolicy'));
    assert.ok(!actionsOf('ReaderDefaultPolicy').includes('sqs:SendMessage'), 'reading sends nothing');
  });

  it('metric helpers name the functions\' EMF metrics', () => {
    const f = fixture();
    const [asg] = f.asgs;
    const m = f.turnstile.metricTimeToInService(asg);
    assert.equal(m.namespace, 'Turnstile');
    assert.equal(m.metricName, 'TimeToInService');
    assert.deepEqual(m.dimensions, { AutoScalingGroup: 'shared-fleet' });
    assert.deepEqual(f.turnstile.metricAlert('BreakerTripped').dimensions, { Kind: 'BreakerTripped' });
    assert.equal(f.turnstile.metricDeadlineLeft().statistic, 'Minimum');
    assert.equal(f.turnstile.metricHeldNow(asg).metricName, 'HeldNow');
    assert.deepEqual(f.turnstile.metricStepRetry(asg, 'web/web-fleet').dimensions, { AutoScalingGroup: 'shared-fleet', DeploymentGroup: 'web/web-fleet' });
  });

  it('exposes the created resources', () => {
    const f = fixture({ createTerminateHooks: true });
    assert.equal(f.turnstile.launchHooks.length, 1);
    assert.equal(f.turnstile.terminateHooks.length, 1);
    assert.deepEqual(f.turnstile.managedApplications, ['web', 'api', 'worker']);
    assert.ok(f.turnstile.queue.queueArn && f.turnstile.deadLetterQueue.queueArn && f.turnstile.table.tableName);
    assert.ok(f.turnstile.alarms.heldInstances.alarmArn);
  });
});
