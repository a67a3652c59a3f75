// The security scanners' in-line skips (README "Security checks"): checkov's
// `Metadata.checkov.skip` and cfn-guard's `Metadata.guard.SuppressedRules` (read by
// infra/scan.py), the same checks on the same resources with the same reasons as
// infra/template.yaml. The parity test compares them resource by resource; change a reason
// here only together with the SAM template and the README's table.
import { CfnResource } from 'aws-cdk-lib';

const TABLE_KEY =
  "No customer managed key: the table holds pipeline state (instance, deployment and group ids, plan steps), no secrets or personal data, and is encrypted at rest with the AWS managed key (SSEEnabled). A key of the user's would need a key policy for both functions' roles and the operators, and costs per request (README, Security checks).";
const QUEUE_SSE =
  "The queue is encrypted at rest with SQS managed keys (SqsManagedSseEnabled); the check looks only at KmsMasterKeyId. Its messages are AWS events and turnstile's own timer and operator messages, no secrets.";
const TIMER_QUEUE_SSE =
  "The queue is encrypted at rest with SQS managed keys (SqsManagedSseEnabled); the check looks only at KmsMasterKeyId. Its messages are the timer's schedule events.";
const DLQ_OWN_DLQ = 'This is the dead-letter queue; a queue for its own failures would only hide them from the dead-letter alarm.';
const TIMER_DLQ_OWN_DLQ = "This is a dead-letter queue (the timer's); a queue for its own failures would only hide them from its alarm.";
const QUEUE_FUNCTION_DLQ =
  "Its only invoker is the SQS event source mapping, a synchronous invocation, to which a function's dead-letter queue never applies; a failed message goes to the queue's own dead-letter queue after 5 receives (RedrivePolicy).";
const NO_VPC =
  'No VPC: the functions reach only AWS APIs (DynamoDB, SQS, Auto Scaling, EC2, CodeDeploy) and no private resource; in a VPC they would need a NAT gateway or four interface endpoints and a gateway endpoint, at a cost and with new ways to fail, for no resource to protect.';
const ENV_KEY = 'The environment holds names (table, queue URL, hooks, groups, log level), no secrets; Lambda encrypts it at rest with an AWS managed key.';
const LOGS_KEY =
  'Encrypted at rest by CloudWatch Logs with its own keys. The lines are operational traces (ids, states, AWS error messages), no secrets; a customer managed key would need a key policy for the logs service and costs per request (README, Security checks).';
const LOGS_RETENTION =
  "30 days: the logs are for debugging a live problem. What happened to each instance is in its record (turnstile show), and CloudTrail's event history keeps the Auto Scaling, EC2 and CodeDeploy calls turnstile makes for 90 days; a year of debug-level lines from every invocation costs without a use.";
const ALARM_ACTION =
  "Its action is the optional AlarmTopicArn, which every alarm gets when it is set. Without one the alarm still shows in the console and on the dashboard; whether anyone is paged is the user's choice at deploy time, which the rule cannot see.";

export interface ScannerSkips {
  readonly checkov?: { id: string; comment: string }[];
  readonly guard?: { rule: string; reason: string }[];
}

const LOG_GROUP: ScannerSkips = {
  checkov: [{ id: 'CKV_AWS_158', comment: LOGS_KEY }],
  guard: [
    { rule: 'cloudwatch_log_group_encrypted_check', reason: LOGS_KEY },
    { rule: 'cloudwatch_log_group_retention_period_check', reason: LOGS_RETENTION },
  ],
};
/** Alarms get this only while they have no action (no `alarmTopic`): with one, the rule passes. */
export const ALARM_SKIPS: ScannerSkips = { guard: [{ rule: 'cloudwatch_alarm_action_check', reason: ALARM_ACTION }] };

/** By the construct's child id, which is the SAM template's logical id. */
export const SKIPS: Record<string, ScannerSkips> = {
  Table: { checkov: [{ id: 'CKV_AWS_119', comment: TABLE_KEY }] },
  DeadLetterQueue: { checkov: [{ id: 'CKV_AWS_27', comment: QUEUE_SSE }], guard: [{ rule: 'sqs_dlq_check', reason: DLQ_OWN_DLQ }] },
  Queue: { checkov: [{ id: 'CKV_AWS_27', comment: QUEUE_SSE }] },
  TimerDeadLetterQueue: { checkov: [{ id: 'CKV_AWS_27', comment: TIMER_QUEUE_SSE }], guard: [{ rule: 'sqs_dlq_check', reason: TIMER_DLQ_OWN_DLQ }] },
  QueueFunction: {
    checkov: [
      { id: 'CKV_AWS_116', comment: QUEUE_FUNCTION_DLQ },
      { id: 'CKV_AWS_117', comment: NO_VPC },
      { id: 'CKV_AWS_173', comment: ENV_KEY },
    ],
    guard: [{ rule: 'lambda_inside_vpc_check', reason: NO_VPC }],
  },
  TimerFunction: {
    checkov: [
      { id: 'CKV_AWS_117', comment: NO_VPC },
      { id: 'CKV_AWS_173', comment: ENV_KEY },
    ],
    guard: [{ rule: 'lambda_inside_vpc_check', reason: NO_VPC }],
  },
  QueueFunctionLogs: LOG_GROUP,
  TimerFunctionLogs: LOG_GROUP,
};

/** Writes the skips into the resource's template Metadata, where the scanners read them. */
export function addScannerSkips(resource: CfnResource, skips: ScannerSkips) {
  if (skips.checkov) resource.addMetadata('checkov', { skip: skips.checkov.map((s) => ({ ...s })) });
  if (skips.guard) resource.addMetadata('guard', { SuppressedRules: skips.guard.map((s) => ({ ...s })) });
}
