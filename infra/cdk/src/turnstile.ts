import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Annotations,
  Aws,
  CfnResource,
  Duration,
  RemovalPolicy,
  Stack,
  Token,
  Validations,
  aws_autoscaling as autoscaling,
  aws_cloudwatch as cloudwatch,
  aws_cloudwatch_actions as cw_actions,
  aws_codedeploy as codedeploy,
  aws_dynamodb as dynamodb,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_logs as logs,
  aws_sns as sns,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { Construct, IConstruct } from 'constructs';
import {
  MAX_METADATA_LEN,
  PlanDocument,
  PlanReadiness,
  PlanStep,
  PlanStepOptions,
  formatIssue,
  planCannotFit,
  validatePlanDocument,
} from './plan';
import { ALARM_SKIPS, SKIPS, addScannerSkips } from './skips';

/** What happens when a step has used up its retries. */
export enum OnFailure {
  /** Complete the lifecycle action with ABANDON (unless the repeated-failure breaker tripped). */
  ABANDON = 'abandon',
  /** Keep the instance in Pending:Wait, heartbeating, and alert an operator. */
  HOLD = 'hold',
}

/** What happens when the readiness tag has not come within its timeout. */
export enum OnNotReady {
  /** Complete the lifecycle action with ABANDON: the group replaces the instance. */
  ABANDON = 'abandon',
  /** Keep the instance waiting (heartbeats continue) and alert an operator. */
  HOLD = 'hold',
  /** Start the first step anyway (its retries cover an agent that comes up late). */
  START = 'start',
}

/**
 * The readiness signal (README "Configuring a plan"): the first step waits until the instance
 * tags itself `tag=value` at the end of its bootstrap.
 */
export interface ReadinessOptions {
  /** The tag key the instance sets on itself; not `aws:`-prefixed and not a gate tag. */
  readonly tag: string;
  /** @default 'true' */
  readonly value?: string;
  /** Longest the pipeline waits for it (60 s to 48 h), counted from the lifecycle action's start. @default 900 seconds */
  readonly timeout?: Duration;
  /** @default OnNotReady.ABANDON */
  readonly onTimeout?: OnNotReady;
}

/** Which launch transitions run the plan when the group has a warm pool. */
export enum WarmPoolPolicy {
  DEPLOY_ON_EXIT = 'deployOnExit',
  DEPLOY_ON_ENTRY = 'deployOnEntry',
  DEPLOY_ON_BOTH = 'deployOnBoth',
}

/** `RUST_LOG` of both functions. */
export enum LogLevel {
  ERROR = 'error',
  WARN = 'warn',
  INFO = 'info',
  DEBUG = 'debug',
  TRACE = 'trace',
}

/** Per-step options (README "Configuring a plan"); unset ones take the plan's defaults. */
export interface StepOptions {
  /** Attempts after the first. @default 2 */
  readonly retries?: number;
  /** Back-off before retry n is `retryBackoff × 2^(n-1)`. @default 30 seconds */
  readonly retryBackoff?: Duration;
  /** Longest one attempt may run (60 s to 12 h). @default 30 minutes */
  readonly timeout?: Duration;
  /**
   * Deployment configuration for launch deployments: a configuration, its name, or
   * `'inherit'` for the group's own. @default CodeDeployDefault.AllAtOnce
   */
  readonly deploymentConfig?: codedeploy.IServerDeploymentConfig | string;
  /** @default OnFailure.ABANDON */
  readonly onFailure?: OnFailure;
}

/** One deployment group every new instance receives, in the order of `stages`. */
export interface TurnstileStage extends StepOptions {
  /** The deployment group. Give either this, or `applicationName` and `deploymentGroupName`. */
  readonly deploymentGroup?: codedeploy.IServerDeploymentGroup;
  readonly applicationName?: string;
  readonly deploymentGroupName?: string;
  /**
   * The gate: the EC2 tag key the deployment group's tag set requires, as a tag group of its
   * own. Must start with `gateTagPrefix`.
   */
  readonly gateTag: string;
  /** @default 'open' */
  readonly gateValue?: string;
}

/** The repeated-failure breaker. */
export interface BreakerOptions {
  /** Abandons of one step within `window` after which failures hold. @default 3 */
  readonly threshold?: number;
  /** @default 1 hour */
  readonly window?: Duration;
}

/** The functions' code, for users who build their own. */
export interface TurnstileCode {
  readonly queue: lambda.Code;
  readonly timer: lambda.Code;
}

export interface TurnstileProps {
  /** The Auto Scaling groups whose new instances run the plan. */
  readonly autoScalingGroups: autoscaling.IAutoScalingGroup[];
  /** The deployment groups, in the order they run on each instance. */
  readonly stages: TurnstileStage[];
  /** Options applied to every stage that does not set its own. */
  readonly defaults?: StepOptions;
  /** @default WarmPoolPolicy.DEPLOY_ON_EXIT */
  readonly warmPool?: WarmPoolPolicy;
  /** How long a free group waits for more instances before admitting a batch. @default 2 seconds */
  readonly batchWindow?: Duration;
  /** How long a finished instance waits for its batch-mates. @default 300 seconds */
  readonly batchFollow?: Duration;
  /** Instances per deployment. @default 1000 */
  readonly maxBatch?: number;
  readonly breaker?: BreakerOptions;
  /** Hold the first step until the instance tags itself ready. @default - no readiness signal: start at once */
  readonly readiness?: ReadinessOptions;
  /**
   * The tag key whose changes on EC2 instances reach the queue at once (the readiness rule).
   * A plan whose readiness tag is another key is seen by the timer's sweep, within a minute.
   * @default - the readiness tag, or 'turnstile:ready' without one
   */
  readonly readinessTagKey?: string;
  /**
   * Reserved concurrency of the queue function, and the most concurrent invocations its SQS
   * event source starts (2 to 1000; docs/design.md "Reserved concurrency"). @default 10
   */
  readonly queueConcurrency?: number;
  /** Heartbeat timeout of the created hooks (30 s to 2 h; 120 s or more recommended). @default 600 seconds */
  readonly heartbeatTimeout?: Duration;
  /**
   * Create the launch hook carrying the plan on every group. Set false when the group carries
   * the hook itself (give it `planJson` as its notification metadata). @default true
   */
  readonly createLaunchHooks?: boolean;
  /** Also create a terminate hook, so a pipeline ends at once on termination. @default false */
  readonly createTerminateHooks?: boolean;
  /** turnstile's launch hook; `<name>-terminate` is its terminate hook. @default 'turnstile-launch' */
  readonly launchHookName?: string;
  /** turnstile also owns every hook whose name starts with this. @default - none */
  readonly ownedHookPrefix?: string;
  /** Every gate tag starts with this; IAM allows no other tag key. @default 'turnstile:gate:' */
  readonly gateTagPrefix?: string;
  /** SNS topic for the alarms. @default - no alarm actions */
  readonly alarmTopic?: sns.ITopic;
  /** @default LogLevel.INFO */
  readonly logLevel?: LogLevel;
  /**
   * An existing table (keys pk/sk, indexes `inflight`, `due`, `overflow`, `ready`, TTL on `ttl`, as the
   * one this construct creates). @default - a new table, retained on stack deletion
   */
  readonly table?: dynamodb.ITable;
  /**
   * The functions' code. @default - the `bootstrap.zip` files packaged in this library's
   * `assets/` (built by `make build`, copied by `npm run assets`)
   */
  readonly code?: TurnstileCode;
}

/** The metric names of the embedded-metric-format lines the functions write (namespace Turnstile). */
export type TurnstileMetricName =
  | 'TimeToInService'
  | 'StepDuration'
  | 'StepRetry'
  | 'Abandon'
  | 'Held'
  | 'DeploymentCreated'
  | 'InFlight'
  | 'HeldNow'
  | 'WaitingOnPause'
  | 'OldestPipelineAge'
  | 'DeadlineLeft';

/** Kinds of the `Alert` metric (shared/core `AlertKind`). */
export type TurnstileAlertKind =
  | 'PlanInvalid'
  | 'PlanCannotFit'
  | 'BreakerTripped'
  | 'InstanceHeld'
  | 'CreateFailed'
  | 'HeartbeatTimeoutTooShort'
  | 'RecordTooLarge';

const NAMESPACE = 'Turnstile';
const DEFAULT_ASSETS = path.join(__dirname, '..', '..', 'assets');

/** Statements of the read-only operator policy (turnstile status, show, doctor). */
function readStatements(tableArn: string): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({ sid: 'ReadRecords', actions: ['dynamodb:BatchGetItem'], resources: [tableArn] }),
    new iam.PolicyStatement({ sid: 'ReadIndexes', actions: ['dynamodb:Query'], resources: [`${tableArn}/index/*`] }),
    new iam.PolicyStatement({
      sid: 'DoctorDescribe',
      actions: ['autoscaling:DescribeAutoScalingGroups', 'autoscaling:DescribeLifecycleHooks', 'ec2:DescribeTags'],
      // These Describe* actions support no resource-level permissions.
      resources: ['*'],
    }),
    new iam.PolicyStatement({
      sid: 'DoctorDeploymentGroups',
      actions: ['codedeploy:GetDeploymentGroup'],
      resources: [`arn:${Aws.PARTITION}:codedeploy:${Aws.REGION}:${Aws.ACCOUNT_ID}:deploymentgroup:*`],
    }),
    new iam.PolicyStatement({
      sid: 'DoctorDeploymentConfigs',
      actions: ['codedeploy:GetDeploymentConfig'],
      resources: [`arn:${Aws.PARTITION}:codedeploy:${Aws.REGION}:${Aws.ACCOUNT_ID}:deploymentconfig:*`],
    }),
  ];
}

/**
 * turnstile: runs the CodeDeploy deployment groups of a plan on each new Auto Scaling
 * instance, one at a time and in order, holding the instance in Pending:Wait until all
 * succeeded. The same stack as infra/template.yaml (the parity test keeps them together).
 */
export class Turnstile extends Construct {
  /** The plan document, validated (unset options stay unset: the functions apply the defaults). */
  public readonly plan: PlanDocument;
  /** The plan as it goes into the launch hooks' notification metadata. */
  public readonly planJson: string;
  public readonly table: dynamodb.ITable;
  public readonly queue: sqs.IQueue;
  public readonly deadLetterQueue: sqs.IQueue;
  /** Where the timer's failed (or late) sweeps go. */
  public readonly timerDeadLetterQueue: sqs.IQueue;
  public readonly queueFunction: lambda.IFunction;
  public readonly timerFunction: lambda.IFunction;
  public readonly queueFunctionLogs: logs.ILogGroup;
  public readonly timerFunctionLogs: logs.ILogGroup;
  public readonly launchRule: events.IRule;
  public readonly terminateRule: events.IRule;
  public readonly codeDeployRule: events.IRule;
  public readonly readinessRule: events.IRule;
  /** The functions' shared permissions. */
  public readonly orchestratorPolicy: iam.IManagedPolicy;
  /** For whoever runs `turnstile status | show | doctor`. */
  public readonly operatorReadOnlyPolicy: iam.IManagedPolicy;
  /** For whoever runs `turnstile retry | abandon | breaker reset | pause | resume | dlq`. */
  public readonly operatorPolicy: iam.IManagedPolicy;
  public readonly launchHooks: autoscaling.ILifecycleHook[] = [];
  public readonly terminateHooks: autoscaling.ILifecycleHook[] = [];
  public readonly alarms: {
    readonly deadLetter: cloudwatch.IAlarm;
    readonly sweepFailed: cloudwatch.IAlarm;
    readonly queueAge: cloudwatch.IAlarm;
    readonly heldInstances: cloudwatch.IAlarm;
    readonly deadlineSoon: cloudwatch.IAlarm;
    readonly planInvalid: cloudwatch.IAlarm;
    readonly createFailed: cloudwatch.IAlarm;
  };
  public readonly dashboard: cloudwatch.CfnDashboard;
  /** Names of the managed Auto Scaling groups and CodeDeploy applications. */
  public readonly managedGroupNames: string[];
  public readonly managedApplications: string[];

  constructor(scope: Construct, id: string, props: TurnstileProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const launchHookName = props.launchHookName ?? 'turnstile-launch';
    const terminateHookName = `${launchHookName}-terminate`;
    const prefix = props.ownedHookPrefix ?? '';
    const gatePrefix = props.gateTagPrefix ?? 'turnstile:gate:';
    const heartbeat = (props.heartbeatTimeout ?? Duration.seconds(600)).toSeconds();
    const readinessTagKey = props.readinessTagKey ?? props.readiness?.tag ?? 'turnstile:ready';
    const queueConcurrency = props.queueConcurrency ?? 10;

    this.checkProps(props, launchHookName, prefix, gatePrefix, heartbeat, readinessTagKey, queueConcurrency);
    this.managedGroupNames = props.autoScalingGroups.map((g) => g.autoScalingGroupName);

    // ---- the plan ------------------------------------------------------------------------
    const stages = props.stages.map((s, i) => this.stageNames(s, i));
    this.managedApplications = unique(stages.map((s) => s.application));
    this.plan = renderPlan(props, stages);
    const tokens = stages.some((s) => Token.isUnresolved(s.application) || Token.isUnresolved(s.deploymentGroup));
    this.planJson = tokens ? stack.toJsonString(this.plan) : JSON.stringify(this.plan);
    this.validatePlan(props, stages, heartbeat, tokens, gatePrefix, launchHookName);

    // ---- state and queues ----------------------------------------------------------------
    this.table = props.table ?? this.createTable();
    if (!props.table) addScannerSkips(this.table.node.defaultChild as CfnResource, SKIPS.Table);
    const dlq = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
    });
    const queue = new sqs.Queue(this, 'Queue', {
      // Six times the queue function's timeout, as Lambda recommends for SQS sources.
      visibilityTimeout: Duration.seconds(360),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      deadLetterQueue: { queue: dlq, maxReceiveCount: 5 },
    });
    this.queue = queue;
    this.deadLetterQueue = dlq;
    // One sweep's schedule event at a time, none retried (docs/design.md "The timer's failures").
    const timerDlq = new sqs.Queue(this, 'TimerDeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
    });
    this.timerDeadLetterQueue = timerDlq;
    for (const [id, q] of [['Queue', queue], ['DeadLetterQueue', dlq], ['TimerDeadLetterQueue', timerDlq]] as const) {
      addScannerSkips(q.node.defaultChild as CfnResource, SKIPS[id]);
    }

    // ---- EventBridge -----------------------------------------------------------------------
    const toQueue: events.IRuleTarget = { bind: () => ({ id: 'queue', arn: queue.queueArn }) };
    const launchRule = new events.Rule(this, 'LaunchRule', {
      description: "Launch lifecycle actions of turnstile's own hooks on the managed Auto Scaling groups.",
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: ['EC2 Instance-launch Lifecycle Action'],
        detail: {
          AutoScalingGroupName: this.managedGroupNames,
          // Other tools' launch hooks are theirs (docs/design.md "Own hooks only").
          LifecycleHookName: prefix ? [launchHookName, { prefix }] : [launchHookName],
        },
      },
      targets: [toQueue],
    });
    const terminateRule = new events.Rule(this, 'TerminateRule', {
      description:
        'Terminate lifecycle actions of the managed Auto Scaling groups, of every hook: any of them means the instance is going away and its pipeline ends; turnstile completes only its own.',
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: ['EC2 Instance-terminate Lifecycle Action'],
        detail: { AutoScalingGroupName: this.managedGroupNames },
      },
      targets: [toQueue],
    });
    const codeDeployRule = new events.Rule(this, 'CodeDeployRule', {
      description: 'Deployment and instance state changes of the managed CodeDeploy applications.',
      eventPattern: {
        source: ['aws.codedeploy'],
        detailType: ['CodeDeploy Deployment State-change Notification', 'CodeDeploy Instance State-change Notification'],
        detail: {
          application: this.managedApplications,
          // START events change nothing the orchestrator acts on (docs/design.md).
          state: [{ 'anything-but': ['START'] }],
        },
      },
      targets: [toQueue],
    });
    const readinessRule = new events.Rule(this, 'ReadinessRule', {
      description:
        "An EC2 instance tagging itself ready (ReadinessTagKey). Tag events are best effort; the timer's sweep reads the tags of every instance still waiting as the fallback.",
      eventPattern: {
        source: ['aws.tag'],
        detailType: ['Tag Change on Resource'],
        detail: { service: ['ec2'], 'resource-type': ['instance'], 'changed-tag-keys': [readinessTagKey] },
      },
      targets: [toQueue],
    });
    this.launchRule = launchRule;
    this.terminateRule = terminateRule;
    this.codeDeployRule = codeDeployRule;
    this.readinessRule = readinessRule;
    // One policy, as the SAM stack's: each rule may send to the queue, nothing else may.
    new sqs.QueuePolicy(this, 'QueuePolicy', { queues: [queue] }).document.addStatements(
      new iam.PolicyStatement({
        sid: 'EventBridgeRules',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [queue.queueArn],
        conditions: {
          ArnEquals: { 'aws:SourceArn': [launchRule.ruleArn, terminateRule.ruleArn, codeDeployRule.ruleArn, readinessRule.ruleArn] },
        },
      }),
    );

    // ---- IAM -------------------------------------------------------------------------------
    const region = Aws.REGION;
    const account = Aws.ACCOUNT_ID;
    const partition = Aws.PARTITION;
    const orchestrator = new iam.ManagedPolicy(this, 'OrchestratorPolicy', {
      description: "What turnstile's functions may do, and no more.",
      statements: [
        // The store's transactions put and delete (TransactWriteItems is allowed by the actions
        // of its items); every query is on an index (infra/iam.py checks the SAM stack's).
        new iam.PolicyStatement({
          sid: 'State',
          actions: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'],
          resources: [this.table.tableArn],
        }),
        new iam.PolicyStatement({ sid: 'StateIndexes', actions: ['dynamodb:Query'], resources: [`${this.table.tableArn}/index/*`] }),
        new iam.PolicyStatement({ sid: 'TimerMessages', actions: ['sqs:SendMessage'], resources: [queue.queueArn] }),
        // DescribeLifecycleHooks supports no resource-level permissions.
        new iam.PolicyStatement({ sid: 'DescribeHooks', actions: ['autoscaling:DescribeLifecycleHooks'], resources: ['*'] }),
        new iam.PolicyStatement({
          sid: 'DeploymentConfigs',
          actions: ['codedeploy:GetDeploymentConfig'],
          resources: [`arn:${partition}:codedeploy:${region}:${account}:deploymentconfig:*`],
        }),
        new iam.PolicyStatement({
          sid: 'GateTags',
          actions: ['ec2:CreateTags', 'ec2:DeleteTags'],
          resources: [`arn:${partition}:ec2:${region}:${account}:instance/*`],
          conditions: {
            'ForAllValues:StringLike': { 'aws:TagKeys': `${gatePrefix}*` },
            StringEquals: { 'aws:ResourceTag/aws:autoscaling:groupName': this.managedGroupNames },
          },
        }),
      ],
    });
    this.orchestratorPolicy = orchestrator;

    this.operatorReadOnlyPolicy = new iam.ManagedPolicy(this, 'OperatorReadOnlyPolicy', {
      description:
        "Read turnstile's records and the managed groups' set-up (turnstile status, show, doctor); writes nothing.",
      statements: readStatements(this.table.tableArn),
    });
    this.operatorPolicy = new iam.ManagedPolicy(this, 'OperatorPolicy', {
      description: 'Operate turnstile (turnstile retry, abandon, breaker reset, pause, resume, dlq) through its queues.',
      statements: [...readStatements(this.table.tableArn), ...this.operateStatements()],
    });

    const queueRole = new iam.Role(this, 'QueueFunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      managedPolicies: [orchestrator],
    });
    const timerRole = new iam.Role(this, 'TimerFunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      managedPolicies: [orchestrator],
    });
    // The SQS event source's poller (SAM grants these through AWSLambdaSQSQueueExecutionRole,
    // on every queue; here on this queue only).
    queueRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'QueueEventSource',
        actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'],
        resources: [queue.queueArn],
      }),
    );
    // Fast redelivery (docs/design.md): the queue function alone, on its own queue only.
    queueRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'FastRedelivery', actions: ['sqs:ChangeMessageVisibility'], resources: [queue.queueArn] }),
    );
    // The timer's adoption of lost launches lists the managed groups' waiting instances.
    new iam.Policy(this, 'AdoptionPolicy', {
      policyName: 'turnstile-adoption',
      roles: [timerRole],
      statements: [
        new iam.PolicyStatement({
          sid: 'DescribeWaitingInstances',
          actions: ['autoscaling:DescribeAutoScalingGroups', 'autoscaling:DescribeWarmPool'],
          // Auto Scaling's Describe* actions support no resource-level permissions.
          resources: ['*'],
        }),
        // The sweep's fallback for lost tag events: one read of the readiness tags of every
        // instance still waiting for its bootstrap (ec2:DescribeTags has no resource-level permissions).
        new iam.PolicyStatement({ sid: 'ReadReadinessTags', actions: ['ec2:DescribeTags'], resources: ['*'] }),
      ],
    });
    // Per managed Auto Scaling group: complete and heartbeat its lifecycle actions, nothing else.
    this.managedGroupNames.forEach((name, i) => {
      new iam.Policy(this, `LifecycleAccess${i}`, {
        policyName: `turnstile-lifecycle-${name}`,
        roles: [queueRole, timerRole],
        statements: [
          new iam.PolicyStatement({
            actions: ['autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat'],
            resources: [`arn:${partition}:autoscaling:${region}:${account}:autoScalingGroup:*:autoScalingGroupName/${name}`],
          }),
        ],
      });
    });
    // Per managed CodeDeploy application: deployments of its deployment groups only.
    this.managedApplications.forEach((app, i) => {
      new iam.Policy(this, `DeploymentAccess${i}`, {
        policyName: `turnstile-codedeploy-${app}`,
        roles: [queueRole, timerRole],
        statements: [
          new iam.PolicyStatement({
            actions: [
              'codedeploy:CreateDeployment',
              'codedeploy:GetDeploymentGroup',
              'codedeploy:ListDeployments',
              'codedeploy:GetDeployment',
              'codedeploy:StopDeployment',
              'codedeploy:ListDeploymentTargets',
              'codedeploy:BatchGetDeploymentTargets',
            ],
            resources: [`arn:${partition}:codedeploy:${region}:${account}:deploymentgroup:${app}/*`],
          }),
          // CodeDeploy checks it for the revision CreateDeployment deploys (docs/aws-behaviour.md §6).
          new iam.PolicyStatement({
            actions: ['codedeploy:GetApplicationRevision'],
            resources: [`arn:${partition}:codedeploy:${region}:${account}:application:${app}`],
          }),
        ],
      });
    });

    // ---- functions -------------------------------------------------------------------------
    const code = props.code ?? defaultCode();
    const environment: Record<string, string> = {
      TURNSTILE_TABLE: this.table.tableName,
      TURNSTILE_QUEUE_URL: queue.queueUrl,
      // The hooks turnstile owns (docs/design.md "Own hooks only"): names, or prefixes ending in *.
      TURNSTILE_LAUNCH_HOOKS: prefix ? `${launchHookName},${prefix}*` : launchHookName,
      TURNSTILE_TERMINATE_HOOKS: prefix ? `${terminateHookName},${prefix}*` : terminateHookName,
      // The timer sweep adopts launches whose event was lost in these groups.
      TURNSTILE_MANAGED_GROUPS: this.managedGroupNames.join(','),
      // What a plan may name; a plan outside it is refused at validation, before any call IAM
      // would refuse (docs/design.md "Hostile plans").
      TURNSTILE_GATE_PREFIX: gatePrefix,
      TURNSTILE_MANAGED_APPLICATIONS: this.managedApplications.join(','),
      RUST_LOG: props.logLevel ?? LogLevel.INFO,
    };
    const fn = (id: 'QueueFunction' | 'TimerFunction', description: string, fnCode: lambda.Code, role: iam.IRole, concurrency: number, extra: Partial<lambda.FunctionProps> = {}) => {
      // The log group exists before the function (so the function never creates it itself),
      // and the role may write to it only.
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      addScannerSkips(logGroup.node.defaultChild as CfnResource, SKIPS[`${id}Logs`]);
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'Logs',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [logGroup.logGroupArn],
        }),
      );
      const f = new lambda.Function(this, id, {
        description,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.ARM_64,
        handler: 'bootstrap',
        memorySize: 256,
        timeout: Duration.seconds(60),
        code: fnCode,
        role,
        environment,
        logGroup,
        reservedConcurrentExecutions: concurrency,
        ...extra,
      });
      addScannerSkips(f.node.defaultChild as CfnResource, SKIPS[id]);
      return { f, logGroup };
    };
    // Sized from the expected load (docs/design.md "Reserved concurrency"); the event source
    // starts no more invocations than the function may run, so none is throttled.
    const q = fn('QueueFunction', 'Handles lifecycle and CodeDeploy events and timer messages.', code.queue, queueRole, queueConcurrency);
    // One sweep at a time, none retried or late: the next minute's sweep does the same work, and
    // two at once would only contend for the same records. A sweep that fails, or cannot start
    // within a minute, goes to the timer's dead-letter queue and raises the sweep-failed alarm.
    const t = fn('TimerFunction', 'Every minute, heartbeats, reconciles and replays what the due index holds.', code.timer, timerRole, 1, {
      maxEventAge: Duration.seconds(60),
      retryAttempts: 0,
    });
    // Lambda's DeadLetterConfig, with only the send it needs (the L2's deadLetterQueue prop
    // would also grant GetQueueAttributes and GetQueueUrl, which SAM's DeadLetterQueue does not).
    (t.f.node.defaultChild as lambda.CfnFunction).deadLetterConfig = { targetArn: timerDlq.queueArn };
    timerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'TimerDeadLetters', actions: ['sqs:SendMessage'], resources: [timerDlq.queueArn] }),
    );
    this.queueFunction = q.f;
    this.timerFunction = t.f;
    this.queueFunctionLogs = q.logGroup;
    this.timerFunctionLogs = t.logGroup;
    const mapping = new lambda.EventSourceMapping(this, 'QueueEventSource', {
      target: q.f,
      eventSourceArn: queue.queueArn,
      batchSize: 10,
      maxBatchingWindow: Duration.seconds(1),
      reportBatchItemFailures: true,
      // Out of range, checkProps has reported it; aws-cdk-lib would throw instead of reporting.
      maxConcurrency: queueConcurrency >= 2 && queueConcurrency <= 1000 ? queueConcurrency : undefined,
    });
    // The poller needs the role's queue permissions before the mapping is created.
    mapping.node.addDependency(queueRole);
    new events.Rule(this, 'TimerFunctionSweep', {
      schedule: events.Schedule.expression('rate(1 minute)'),
      targets: [new targets.LambdaFunction(t.f)],
    });

    // ---- hooks -----------------------------------------------------------------------------
    props.autoScalingGroups.forEach((asg, i) => {
      if (props.createLaunchHooks ?? true) {
        this.launchHooks.push(
          new autoscaling.LifecycleHook(this, `LaunchHook${i}`, {
            autoScalingGroup: asg,
            lifecycleHookName: launchHookName,
            lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_LAUNCHING,
            heartbeatTimeout: Duration.seconds(heartbeat),
            defaultResult: autoscaling.DefaultResult.ABANDON,
            notificationMetadata: this.planJson,
          }),
        );
      }
      if (props.createTerminateHooks ?? false) {
        this.terminateHooks.push(
          new autoscaling.LifecycleHook(this, `TerminateHook${i}`, {
            autoScalingGroup: asg,
            lifecycleHookName: terminateHookName,
            lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
            heartbeatTimeout: Duration.seconds(heartbeat),
            defaultResult: autoscaling.DefaultResult.CONTINUE,
          }),
        );
      }
    });

    // ---- alarms and dashboard ------------------------------------------------------------
    const alarm = (id: string, p: cloudwatch.AlarmProps & { ok?: boolean }) => {
      const a = new cloudwatch.Alarm(this, id, { treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING, ...p });
      if (props.alarmTopic) {
        a.addAlarmAction(new cw_actions.SnsAction(props.alarmTopic));
        if (p.ok) a.addOkAction(new cw_actions.SnsAction(props.alarmTopic));
      } else {
        addScannerSkips(a.node.defaultChild as CfnResource, ALARM_SKIPS);
      }
      return a;
    };
    const gt = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD;
    this.alarms = {
      deadLetter: alarm('DeadLetterAlarm', {
        alarmDescription:
          'Messages turnstile could not process reached the dead-letter queue: an event it never acted on (a launch it may adopt at the next sweep, or a deployment state it reconciles). Run `turnstile dlq list` to see each with the field that broke it, fix the producer or the function, then `turnstile dlq redrive`.',
        metric: dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) }),
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: gt,
      }),
      sweepFailed: alarm('SweepFailedAlarm', {
        alarmDescription:
          "A timer sweep failed, or could not start within a minute, and its event went to the timer's dead-letter queue. While sweeps fail nothing heartbeats the lifecycle actions whose timer messages were lost, lost CodeDeploy events are not reconciled and lost launches are not adopted, so instances may be abandoned. Each message's ErrorMessage attribute and RequestID (in the timer's log) say why; purge the queue once fixed.",
        metric: timerDlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(1) }),
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: gt,
      }),
      queueAge: alarm('QueueAgeAlarm', {
        alarmDescription:
          "turnstile's queue is falling behind (its oldest message is older than 5 minutes), so launches, deployment results and heartbeats wait. Look at the queue function's errors and throttles (its concurrency and DynamoDB's), and `turnstile status` for what waits.",
        metric: queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(1) }),
        evaluationPeriods: 3,
        threshold: 300,
        comparisonOperator: gt,
      }),
      heldInstances: alarm('HeldInstancesAlarm', {
        alarmDescription:
          'turnstile holds instances in Pending:Wait instead of abandoning them (a step keeps failing and the repeated-failure breaker tripped, an onFailure hold, or a plan that cannot fit its hook). They wait until their hook\'s global timeout and then get its default result. Run `turnstile status` to see each with its reason, fix the cause, then `turnstile breaker reset APP GROUP` and `turnstile retry INSTANCE` (or `turnstile abandon INSTANCE`).',
        metric: this.metric('HeldNow', { statistic: 'Maximum', period: Duration.minutes(1) }),
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: gt,
        ok: true,
      }),
      deadlineSoon: alarm('DeadlineSoonAlarm', {
        alarmDescription:
          "A pipeline in flight reaches its lifecycle hook's global timeout within 30 minutes: Auto Scaling will then apply the hook's default result (ABANDON terminates the instance, CONTINUE puts it in service without the steps left). Run `turnstile status` (the instance with the least time left) and `turnstile show INSTANCE`; resume a paused group (`turnstile resume`) or act on a held instance.",
        metric: this.metric('DeadlineLeft', { statistic: 'Minimum', period: Duration.minutes(1) }),
        evaluationPeriods: 1,
        threshold: 1800000,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      }),
      planInvalid: alarm('PlanInvalidAlarm', {
        alarmDescription:
          "A launch hook's plan (its notification metadata) is invalid, so turnstile deploys nothing and leaves the instance to the hook's default result. The queue function's log line names every bad field; check the plan with `turnstile plan check` and the group with `turnstile doctor --asg NAME`.",
        metric: this.metricAlert('PlanInvalid'),
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: gt,
      }),
      createFailed: alarm('CreateFailedAlarm', {
        alarmDescription:
          "CodeDeploy refused to create a deployment for good (a missing revision, a deleted deployment group, missing permissions), so the step fails on every instance that reaches it. The alert's log line has CodeDeploy's message; `turnstile doctor --asg NAME` checks each step's deployment group.",
        metric: this.metricAlert('CreateFailed'),
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: gt,
      }),
    };
    this.dashboard = new cloudwatch.CfnDashboard(this, 'Dashboard', {
      dashboardName: `turnstile-${Aws.STACK_NAME}`,
      dashboardBody: stack.toJsonString(dashboardBody(queue.queueName, dlq.queueName)),
    });

    // cdk-nag (AwsSolutions), for apps that run it: each finding acknowledged with its reason.
    for (const q of [queue, dlq, timerDlq]) {
      Validations.of(q).acknowledge({
        id: 'AwsSolutions-SQS4',
        reason:
          'As infra/template.yaml, whose queues have no aws:SecureTransport deny: EventBridge, Lambda and the AWS SDKs reach SQS over TLS only. To be added to both stacks together.',
      });
    }
    for (const c of this.node.findAll()) {
      if (c instanceof iam.CfnPolicy || c instanceof iam.CfnManagedPolicy) acknowledgeWildcards(c);
    }
  }

  /** Read turnstile's records and the managed groups' set-up (turnstile status, show, doctor). */
  public grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantAll(grantee, readStatements(this.table.tableArn));
  }

  /** Operate turnstile through its queues (retry, abandon, breaker reset, pause, resume, dlq); includes grantRead. */
  public grantOperate(grantee: iam.IGrantable): iam.Grant {
    return grantAll(grantee, [...readStatements(this.table.tableArn), ...this.operateStatements()]);
  }

  /** A metric of the functions' embedded metric format lines (namespace `Turnstile`). */
  public metric(metricName: TurnstileMetricName, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: NAMESPACE, metricName, ...props });
  }

  /** Time from launch to CONTINUE (ms), per Auto Scaling group. @default p50 over 5 minutes */
  public metricTimeToInService(autoScalingGroup: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.metric('TimeToInService', {
      statistic: 'p50',
      dimensionsMap: { AutoScalingGroup: autoScalingGroup.autoScalingGroupName },
      ...props,
    });
  }

  /** Duration of one step on one instance (ms), per Auto Scaling group and deployment group (`app/group`). */
  public metricStepDuration(autoScalingGroup: autoscaling.IAutoScalingGroup, deploymentGroup: string, props?: cloudwatch.MetricOptions) {
    return this.metric('StepDuration', {
      statistic: 'p50',
      dimensionsMap: { AutoScalingGroup: autoScalingGroup.autoScalingGroupName, DeploymentGroup: deploymentGroup },
      ...props,
    });
  }

  /** Step retries, per Auto Scaling group and deployment group (`app/group`). */
  public metricStepRetry(autoScalingGroup: autoscaling.IAutoScalingGroup, deploymentGroup: string, props?: cloudwatch.MetricOptions) {
    return this.metric('StepRetry', {
      statistic: 'Sum',
      dimensionsMap: { AutoScalingGroup: autoScalingGroup.autoScalingGroupName, DeploymentGroup: deploymentGroup },
      ...props,
    });
  }

  /** Instances abandoned, per Auto Scaling group. */
  public metricAbandon(autoScalingGroup: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.metric('Abandon', { statistic: 'Sum', dimensionsMap: { AutoScalingGroup: autoScalingGroup.autoScalingGroupName }, ...props });
  }

  /** Pipelines in flight (timer gauge), for the stack or one Auto Scaling group. */
  public metricInFlight(autoScalingGroup?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.gauge('InFlight', 'Maximum', autoScalingGroup, props);
  }

  /** Instances held in Pending:Wait (timer gauge). */
  public metricHeldNow(autoScalingGroup?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.gauge('HeldNow', 'Maximum', autoScalingGroup, props);
  }

  /** Instances waiting on a paused group (timer gauge). */
  public metricWaitingOnPause(autoScalingGroup?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.gauge('WaitingOnPause', 'Maximum', autoScalingGroup, props);
  }

  /** Age of the oldest pipeline in flight (ms, timer gauge). */
  public metricOldestPipelineAge(autoScalingGroup?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.gauge('OldestPipelineAge', 'Maximum', autoScalingGroup, props);
  }

  /** Time left before the nearest global deadline (ms, timer gauge). */
  public metricDeadlineLeft(autoScalingGroup?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.gauge('DeadlineLeft', 'Minimum', autoScalingGroup, props);
  }

  /** Alerts of one kind (`Alert` by `Kind`). @default Sum over 5 minutes */
  public metricAlert(kind: TurnstileAlertKind, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: NAMESPACE,
      metricName: 'Alert',
      dimensionsMap: { Kind: kind },
      statistic: 'Sum',
      period: Duration.minutes(5),
      ...props,
    });
  }

  private gauge(name: TurnstileMetricName, statistic: string, asg?: autoscaling.IAutoScalingGroup, props?: cloudwatch.MetricOptions) {
    return this.metric(name, {
      statistic,
      period: Duration.minutes(1),
      ...(asg ? { dimensionsMap: { AutoScalingGroup: asg.autoScalingGroupName } } : {}),
      ...props,
    });
  }

  private operateStatements(): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({ sid: 'SendActions', actions: ['sqs:SendMessage'], resources: [this.queue.queueArn] }),
      // turnstile dlq list | redrive: read the dead letters, send them back, delete what was sent back.
      new iam.PolicyStatement({
        sid: 'DeadLetters',
        actions: ['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage'],
        resources: [this.deadLetterQueue.queueArn],
      }),
    ];
  }

  private createTable(): dynamodb.Table {
    const S = dynamodb.AttributeType.STRING;
    const N = dynamodb.AttributeType.NUMBER;
    const table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: S },
      sortKey: { name: 'sk', type: S },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: 'ttl',
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const keysOnly = dynamodb.ProjectionType.KEYS_ONLY;
    table.addGlobalSecondaryIndex({ indexName: 'inflight', partitionKey: { name: 'asg_inflight', type: S }, sortKey: { name: 'pk', type: S }, projectionType: keysOnly });
    table.addGlobalSecondaryIndex({ indexName: 'due', partitionKey: { name: 'due_shard', type: S }, sortKey: { name: 'wake', type: N }, projectionType: keysOnly });
    // Instances waiting outside a group's full list, longest waiting first.
    table.addGlobalSecondaryIndex({ indexName: 'overflow', partitionKey: { name: 'overflow_group', type: S }, sortKey: { name: 'overflow_since', type: N }, projectionType: keysOnly });
    // Instances waiting for their readiness tag, with the tag, for the sweep's batched read of
    // their tags (docs/design.md "Readiness").
    table.addGlobalSecondaryIndex({
      indexName: 'ready',
      partitionKey: { name: 'ready_shard', type: S },
      sortKey: { name: 'pk', type: S },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['ready_key', 'ready_value'],
    });
    return table;
  }

  /** Application and deployment group names of a stage (literal where the app gave them). */
  private stageNames(s: TurnstileStage, i: number): { application: string; deploymentGroup: string } {
    if (s.deploymentGroup) {
      if (s.applicationName || s.deploymentGroupName) {
        Annotations.of(this).addError(`stages[${i}]: give either deploymentGroup or applicationName and deploymentGroupName, not both`);
      }
      const dg = s.deploymentGroup;
      return {
        application: literalName(dg.application.applicationName, dg.application, 'applicationName'),
        deploymentGroup: literalName(dg.deploymentGroupName, dg, 'deploymentGroupName'),
      };
    }
    if (!s.applicationName || !s.deploymentGroupName) {
      Annotations.of(this).addError(`stages[${i}]: needs deploymentGroup, or applicationName and deploymentGroupName`);
    }
    return { application: s.applicationName ?? '', deploymentGroup: s.deploymentGroupName ?? '' };
  }

  private checkProps(
    props: TurnstileProps,
    launchHookName: string,
    prefix: string,
    gatePrefix: string,
    heartbeat: number,
    readinessTagKey: string,
    queueConcurrency: number,
  ) {
    const err = (m: string) => Annotations.of(this).addError(m);
    if (props.autoScalingGroups.length === 0) err('autoScalingGroups: give at least one Auto Scaling group');
    // The SAM stack's parameter constraints.
    if (!/^[A-Za-z0-9/_-]{1,255}$/.test(launchHookName)) err(`launchHookName \`${launchHookName}\`: must match ^[A-Za-z0-9/_-]{1,255}$`);
    if (!/^[A-Za-z0-9/_-]{0,255}$/.test(prefix)) err(`ownedHookPrefix \`${prefix}\`: must match ^[A-Za-z0-9/_-]{0,255}$`);
    if (!/^[^*]{1,100}$/.test(gatePrefix)) err(`gateTagPrefix \`${gatePrefix}\`: must be 1 to 100 characters without *`);
    if (!/^(?!aws:)[^*]{1,128}$/.test(readinessTagKey)) err(`readinessTagKey \`${readinessTagKey}\`: must match ^(?!aws:)[^*]{1,128}$`);
    if (!(Number.isInteger(queueConcurrency) && queueConcurrency >= 2 && queueConcurrency <= 1000)) {
      err(`queueConcurrency: ${queueConcurrency}; must be a whole number from 2 to 1000`);
    }
    const tag = props.readiness?.tag;
    if (tag !== undefined && !Token.isUnresolved(tag) && tag !== readinessTagKey) {
      Annotations.of(this).addWarningV2(
        'turnstile:readiness-tag-key',
        `readiness.tag \`${tag}\` is not readinessTagKey \`${readinessTagKey}\`: its tag events do not reach the queue, so an instance is seen ready only by the timer's sweep, within a minute`,
      );
    }
    if (heartbeat < 30 || heartbeat > 7200) err(`heartbeatTimeout: ${heartbeat} s; lifecycle hooks take 30 to 7200 s`);
    else if (heartbeat < 120) {
      Annotations.of(this).addWarningV2(
        'turnstile:heartbeat',
        `heartbeatTimeout: ${heartbeat} s; below 120 s a single lost timer message can miss a heartbeat`,
      );
    }
  }

  private validatePlan(
    props: TurnstileProps,
    stages: { application: string; deploymentGroup: string }[],
    heartbeat: number,
    tokens: boolean,
    gatePrefix: string,
    launchHookName: string,
  ) {
    const err = (m: string) => Annotations.of(this).addError(m);
    const integer = (field: string, v: number | undefined) => {
      // In Rust these are unsigned integers (a serde type error otherwise).
      if (v !== undefined && !(Number.isInteger(v) && v >= 0)) err(`${field}: must be a whole number of at least 0, is ${v}`);
    };
    const checkOpts = (at: string, o: PlanStepOptions | undefined) => {
      integer(`${at}.retries`, o?.retries);
      integer(`${at}.retryBackoffSecs`, o?.retryBackoffSecs);
      integer(`${at}.timeoutSecs`, o?.timeoutSecs);
    };
    checkOpts('defaults', this.plan.defaults);
    this.plan.steps.forEach((s, i) => checkOpts(`steps[${i}]`, s));
    integer('maxBatch', this.plan.maxBatch);
    integer('batchWindowSecs', this.plan.batchWindowSecs);
    integer('batchFollowSecs', this.plan.batchFollowSecs);
    integer('breaker.threshold', this.plan.breaker?.threshold);
    integer('breaker.windowSecs', this.plan.breaker?.windowSecs);
    integer('readiness.timeoutSecs', this.plan.readiness?.timeoutSecs);

    // The Rust validator's rules, on a copy whose unresolved names stand in as one character
    // (their length is checked by CodeDeploy, and only a literal can be checked here).
    // The same token stands in as the same short name, so duplicates are still found.
    const standIns = new Map<string, string>();
    const stand = (v: string) => {
      if (!Token.isUnresolved(v)) return v;
      if (!standIns.has(v)) standIns.set(v, `${standIns.size}`);
      return standIns.get(v) as string;
    };
    const checked: PlanDocument = {
      ...this.plan,
      steps: this.plan.steps.map((s) => ({ ...s, application: stand(s.application), deploymentGroup: stand(s.deploymentGroup) })),
    };
    for (const issue of validatePlanDocument(checked)) err(formatIssue(issue));

    const len = Buffer.byteLength(JSON.stringify(checked), 'utf8');
    if (!tokens && len > MAX_METADATA_LEN) {
      err(formatIssue({ field: '$', reason: `plan is ${len} characters; lifecycle hook metadata holds at most ${MAX_METADATA_LEN}` }));
    } else if (tokens) {
      // Unresolved names are at most 100 characters each (CodeDeploy's limit).
      const unresolved = stages.flatMap((s) => [s.application, s.deploymentGroup]).filter((v) => Token.isUnresolved(v)).length;
      const worst = len + unresolved * 99;
      if (len > MAX_METADATA_LEN) {
        err(formatIssue({ field: '$', reason: `plan is at least ${len} characters; lifecycle hook metadata holds at most ${MAX_METADATA_LEN}` }));
      } else if (worst > MAX_METADATA_LEN) {
        Annotations.of(this).addWarningV2(
          'turnstile:plan-length',
          `the plan may reach ${worst} characters once CloudFormation resolves ${unresolved} application and deployment group names (lifecycle hook metadata holds at most ${MAX_METADATA_LEN}); give the applications and deployment groups explicit names so the length can be checked`,
        );
      }
    }
    const unfit = planCannotFit(checked, heartbeat, launchHookName);
    if (unfit) err(`${unfit}; the queue function would hold every new instance (PlanCannotFit)`);

    const managed = new Set(props.autoScalingGroups);
    const managedNames = new Set(props.autoScalingGroups.map((g) => g.autoScalingGroupName));
    props.stages.forEach((s, i) => {
      const gate = this.plan.steps[i].gateTag;
      if (Token.isUnresolved(gate)) err(`steps[${i}].gateTag: must be a literal string (it goes into the plan and the IAM condition)`);
      else if (!gate.startsWith(gatePrefix)) {
        err(`steps[${i}].gateTag: \`${gate}\` does not start with the gate tag prefix \`${gatePrefix}\`, so turnstile may not set it`);
      }
      const dg = s.deploymentGroup;
      for (const asg of dg?.autoScalingGroups ?? []) {
        if (managed.has(asg) || managedNames.has(asg.autoScalingGroupName)) {
          err(
            `steps[${i}].deploymentGroup: ${dg?.node.path} lists Auto Scaling group ${asg.node.path}, so CodeDeploy installs its own launch hook there, racing turnstile's; select the instances by tag instead (docs/design.md "Admission by gate tags")`,
          );
        }
      }
      if (dg) this.checkGateTagGroup(dg, i, gate, this.plan.steps[i].gateValue ?? 'open');
    });
  }

  /** Warns when a deployment group of this app does not select its gate as a tag group of its own. */
  private checkGateTagGroup(dg: codedeploy.IServerDeploymentGroup, i: number, gate: string, value: string) {
    const cfn = dg.node.defaultChild;
    if (!(cfn instanceof codedeploy.CfnDeploymentGroup)) return; // imported: nothing to see
    type Filter = { key?: string; value?: string; type?: string };
    // Resolved, the L1 properties are plain data (camelCase, as the L2 set them).
    const r = Stack.of(cfn).resolve(cfn.ec2TagSet) as { ec2TagSetList?: { ec2TagGroup?: Filter[] }[] } | undefined;
    const own = (r?.ec2TagSetList ?? []).some((g) => {
      const f = g.ec2TagGroup ?? [];
      return f.length === 1 && f[0].key === gate && f[0].value === value && f[0].type === 'KEY_AND_VALUE';
    });
    if (!own) {
      Annotations.of(this).addWarningV2(
        'turnstile:gate-tag-group',
        `steps[${i}].deploymentGroup: ${dg.node.path} has no tag group of its own for the gate ${gate}=${value} (its tag set must AND the gate with the instances' other tags, or every instance is in the group at once)`,
      );
    }
  }
}

function renderPlan(props: TurnstileProps, names: { application: string; deploymentGroup: string }[]): PlanDocument {
  const steps: PlanStep[] = props.stages.map((s, i) => ({
    application: names[i].application,
    deploymentGroup: names[i].deploymentGroup,
    gateTag: s.gateTag,
    ...defined({ gateValue: s.gateValue }),
    ...stepOptions(s),
  }));
  const defaults = props.defaults ? stepOptions(props.defaults) : undefined;
  const breaker = props.breaker
    ? defined({ threshold: props.breaker.threshold, windowSecs: props.breaker.window?.toSeconds() })
    : undefined;
  const r = props.readiness;
  const readiness: PlanReadiness | undefined = r
    ? { tag: r.tag, ...defined({ value: r.value, timeoutSecs: r.timeout?.toSeconds(), onTimeout: r.onTimeout }) }
    : undefined;
  return {
    version: 1,
    steps,
    ...(defaults && Object.keys(defaults).length ? { defaults } : {}),
    ...defined({
      warmPool: props.warmPool,
      batchWindowSecs: props.batchWindow?.toSeconds(),
      batchFollowSecs: props.batchFollow?.toSeconds(),
      maxBatch: props.maxBatch,
    }),
    ...(breaker && Object.keys(breaker).length ? { breaker } : {}),
    ...(readiness ? { readiness } : {}),
  };
}

function stepOptions(o: StepOptions): PlanStepOptions {
  const cfg = o.deploymentConfig;
  return defined({
    retries: o.retries,
    retryBackoffSecs: o.retryBackoff?.toSeconds(),
    timeoutSecs: o.timeout?.toSeconds(),
    deploymentConfig: typeof cfg === 'string' || cfg === undefined ? cfg : cfg.deploymentConfigName,
    onFailure: o.onFailure,
  });
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/**
 * A literal name when the construct was given one (its L1 resource's name property is a
 * plain string), so the plan can be rendered and checked at synth time; the token otherwise.
 */
function literalName(name: string, c: IConstruct, prop: string): string {
  if (!Token.isUnresolved(name)) return name;
  const cfn = c.node.defaultChild as unknown as Record<string, unknown> | undefined;
  const v = cfn?.[prop];
  return typeof v === 'string' && !Token.isUnresolved(v) ? v : name;
}

function grantAll(grantee: iam.IGrantable, statements: iam.PolicyStatement[]): iam.Grant {
  return statements
    .map((s) => {
      return iam.Grant.addToPrincipal({ grantee, actions: [...s.actions], resourceArns: [...s.resources] });
    })
    .reduce((a, b) => a.combine(b));
}

/** Why each wildcard resource of turnstile's policies is as narrow as it can be. */
const WILDCARD_REASONS: [RegExp, string][] = [
  [/^\*$/, 'Describe* actions with no resource-level permissions (autoscaling DescribeLifecycleHooks, DescribeAutoScalingGroups, DescribeWarmPool; ec2 DescribeTags, also the readiness sweep), as in infra/template.yaml'],
  [/\/index\/\*$/, "the table's own indexes (inflight, due, overflow, ready), which the store queries"],
  [/:deploymentconfig:\*$/, 'GetDeploymentConfig only; a plan may name any built-in or account deployment configuration'],
  [/:deploymentgroup:\*$/, 'GetDeploymentGroup for turnstile doctor, which checks whatever deployment group a plan names (read only)'],
  [/:instance\/\*$/, "CreateTags/DeleteTags on instances only with tag keys under the gate prefix (aws:TagKeys) and only on the managed groups' instances (aws:ResourceTag/aws:autoscaling:groupName)"],
  [/:autoScalingGroup:\*:autoScalingGroupName\/[^*]+$/, "one managed group by name; the ARN's group id is generated by Auto Scaling"],
  [/:deploymentgroup:[^*]+\/\*$/, "the deployment groups of one managed application; plans name them and may change without a stack update"],
];

/** Acknowledges AwsSolutions-IAM5 for each wildcard resource of a policy, with its reason. */
function acknowledgeWildcards(policy: iam.CfnPolicy | iam.CfnManagedPolicy) {
  const doc = Stack.of(policy).resolve(policy.policyDocument) as { Statement: { Resource: unknown }[] };
  for (const st of doc.Statement) {
    for (const r of ([] as unknown[]).concat(st.Resource)) {
      const flat = flattenReference(r);
      if (!flat.includes('*')) continue;
      const reason = WILDCARD_REASONS.find(([re]) => re.test(flat))?.[1];
      if (!reason) throw new Error(`turnstile: no reason recorded for the wildcard resource ${flat} of ${policy.node.path}`);
      Validations.of(policy).acknowledge({ id: `AwsSolutions-IAM5[Resource::${flat}]`, reason });
    }
  }
}

/** A resolved CloudFormation value as cdk-nag names it in a finding (its flattenCfnReference). */
function flattenReference(v: unknown): string {
  if (typeof v === 'string') return v.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const o = v as Record<string, unknown>;
  if (o['Fn::Join']) {
    const [sep, items] = o['Fn::Join'] as [string, unknown[]];
    return items.map(flattenReference).join(sep);
  }
  if (o['Fn::Sub']) return flattenReference(o['Fn::Sub']);
  if (o['Fn::GetAtt']) {
    const [res, attr] = o['Fn::GetAtt'] as [unknown, unknown];
    return `<${flattenReference(res)}.${flattenReference(attr)}>`;
  }
  if (o['Fn::ImportValue']) return flattenReference(o['Fn::ImportValue']);
  if (o.Ref) return `<${flattenReference(o.Ref)}>`;
  return JSON.stringify(v);
}

function defaultCode(): TurnstileCode {
  const zip = (name: string) => {
    const p = path.join(DEFAULT_ASSETS, name, 'bootstrap.zip');
    if (!fs.existsSync(p)) {
      throw new Error(
        `turnstile: ${p} is missing. Build the functions (make build) and copy them into the package (npm run assets in infra/cdk), or pass the code prop.`,
      );
    }
    return lambda.Code.fromAsset(p);
  };
  return { queue: zip('turnstile-queue'), timer: zip('turnstile-timer') };
}

/** The SAM stack's dashboard (infra/template.yaml `Dashboard`), widget for widget. */
function dashboardBody(queueName: string, deadLetterQueueName: string) {
  const region = Aws.REGION;
  return {
    widgets: [
      {
        type: 'metric', x: 0, y: 0, width: 12, height: 6, properties: {
          title: 'Time to InService (launch to CONTINUE)', region, view: 'timeSeries', stat: 'p50', period: 300,
          metrics: [
            [{ expression: "SEARCH('{Turnstile,AutoScalingGroup} MetricName=\"TimeToInService\"', 'p50', 300)", label: 'p50', id: 'p50' }],
            [{ expression: "SEARCH('{Turnstile,AutoScalingGroup} MetricName=\"TimeToInService\"', 'p99', 300)", label: 'p99', id: 'p99' }],
          ],
        },
      },
      {
        type: 'metric', x: 12, y: 0, width: 12, height: 6, properties: {
          title: 'Pipelines in flight, held, waiting on a pause', region, view: 'timeSeries', stat: 'Maximum', period: 60,
          metrics: [['Turnstile', 'InFlight'], ['.', 'HeldNow'], ['.', 'WaitingOnPause']],
        },
      },
      {
        type: 'metric', x: 0, y: 6, width: 12, height: 6, properties: {
          title: 'Step retries and abandons', region, view: 'timeSeries', stat: 'Sum', period: 300,
          metrics: [
            [{ expression: "SEARCH('{Turnstile,AutoScalingGroup,DeploymentGroup} MetricName=\"StepRetry\"', 'Sum', 300)", id: 'retries' }],
            [{ expression: "SEARCH('{Turnstile,AutoScalingGroup} MetricName=\"Abandon\"', 'Sum', 300)", id: 'abandons' }],
          ],
        },
      },
      {
        type: 'metric', x: 12, y: 6, width: 12, height: 6, properties: {
          title: 'Queue age (s) and dead letters', region, view: 'timeSeries', stat: 'Maximum', period: 60,
          metrics: [
            ['AWS/SQS', 'ApproximateAgeOfOldestMessage', 'QueueName', queueName],
            ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', deadLetterQueueName],
          ],
        },
      },
      {
        type: 'metric', x: 0, y: 12, width: 24, height: 6, properties: {
          title: 'Time left before the nearest global deadline (ms)', region, view: 'timeSeries', stat: 'Minimum', period: 60,
          metrics: [['Turnstile', 'DeadlineLeft']],
        },
      },
    ],
  };
}
