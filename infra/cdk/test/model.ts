// "What matters" of a turnstile stack, normalised so that the SAM stack and the construct's
// synthesized stack compare with deepStrictEqual, section by section:
//
//   functions.<QueueFunction|TimerFunction>.settings     runtime, architecture, memory, env...
//   functions.<fn>.permissions                          { action: [resource (if condition)] }
//   eventSources                                        SQS mappings and their settings
//   rules.<name>                                        pattern, schedule, description, targets
//   queues.<name>, queuePolicies, table, logGroups, alarms.<name>, hooks, dashboard
//   operatorPolicies.<name>                             { action: [resource (if condition)] }
//   scannerSkips.<name>                                 Metadata checkov.skip and guard.SuppressedRules
//   other                                               any resource the model does not know
//
// Where the construct intentionally differs (see the README's "Deploying with CDK"), the
// difference is normalised here, each with its reason, and nowhere else.
import { Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { Template } from 'aws-cdk-lib/assertions';
import { EvalContext, Json, Obj, Resource, cdkSymbols, evalConditions, evaluate, expandResources, loadYamlTemplate, parameterValues } from './cfn';

export interface Model {
  functions: Record<string, { settings: Json; permissions: Record<string, string[]>; logs: Record<string, string[]> }>;
  eventSources: Json[];
  rules: Record<string, Json>;
  queues: Record<string, Json>;
  queuePolicies: Record<string, Record<string, string[]>>;
  table: Json;
  logGroups: Record<string, Json>;
  alarms: Record<string, Json>;
  hooks: Json[];
  dashboard: Json;
  operatorPolicies: Record<string, Record<string, string[]>>;
  scannerSkips: Record<string, Json>;
  other: Record<string, string>;
}

const asList = (v: Json | undefined): Json[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

/** Stable JSON: keys sorted, and every list of strings sorted (IAM and patterns treat them as sets). */
function canon(v: Json): Json {
  if (Array.isArray(v)) {
    const items = v.map(canon);
    return items.every((x) => typeof x === 'string') ? [...(items as string[])].sort() : items;
  }
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]));
  }
  return v;
}

/** `{ action: [resource, or resource if {condition}] }` for a list of (evaluated) statements. */
function permissions(statements: Json[], into: Record<string, string[]> = {}): Record<string, string[]> {
  for (const s of statements as Obj[]) {
    const cond = s.Condition ? ` if ${JSON.stringify(canon(conditionSets(s.Condition as Obj)))}` : '';
    const principal = s.Principal ? `${JSON.stringify(canon(s.Principal))} ` : '';
    const effect = s.Effect === 'Allow' ? '' : `${s.Effect} `;
    for (const a of asList(s.Action) as string[]) {
      const list = (into[a] ??= []);
      for (const r of asList(s.Resource) as string[]) {
        const e = `${effect}${principal}${r}${cond}`;
        if (!list.includes(e)) list.push(e);
      }
      list.sort();
    }
  }
  return Object.fromEntries(Object.keys(into).sort().map((k) => [k, into[k]]));
}

/** IAM reads a condition's single value and a one-element list alike. */
function conditionSets(c: Obj): Obj {
  return Object.fromEntries(
    Object.entries(c).map(([op, kv]) => [op, Object.fromEntries(Object.entries(kv as Obj).map(([k, v]) => [k, asList(v)]))]),
  );
}

function splitLogs(p: Record<string, string[]>) {
  const permissions: Record<string, string[]> = {};
  const logs: Record<string, string[]> = {};
  for (const [a, r] of Object.entries(p)) (a.startsWith('logs:') ? logs : permissions)[a] = r;
  return { permissions, logs };
}

const sortBy = (key: string) => (a: Json, b: Json) => String((a as Obj)[key]).localeCompare(String((b as Obj)[key]));

function tableModel(props: Obj, r: Resource): Json {
  const p = { ...props };
  p.AttributeDefinitions = [...(p.AttributeDefinitions as Json[])].sort(sortBy('AttributeName'));
  p.GlobalSecondaryIndexes = [...((p.GlobalSecondaryIndexes as Json[]) ?? [])].sort(sortBy('IndexName'));
  return { Properties: canon(p), DeletionPolicy: r.DeletionPolicy ?? 'Delete', UpdateReplacePolicy: r.UpdateReplacePolicy ?? 'Delete' };
}

function ruleModel(p: Obj): Json {
  return canon({
    ...(p.Description !== undefined ? { Description: p.Description } : {}),
    ...(p.EventPattern !== undefined ? { EventPattern: p.EventPattern } : {}),
    ...(p.ScheduleExpression !== undefined ? { ScheduleExpression: p.ScheduleExpression } : {}),
    State: p.State ?? 'ENABLED',
    // Everything a target says but its Id (the construct's ids are CDK's, SAM's are SAM's).
    Targets: (asList(p.Targets) as Obj[]).map((t) => {
      const { Id, ...rest } = t;
      void Id;
      return Object.keys(rest).length === 1 ? (rest.Arn as string) : rest;
    }),
  });
}

function hookModel(p: Obj): Json {
  return canon({ ...p, HeartbeatTimeout: Number(p.HeartbeatTimeout) });
}

function empty(): Model {
  return { functions: {}, eventSources: [], rules: {}, queues: {}, queuePolicies: {}, table: null, logGroups: {}, alarms: {}, hooks: [], dashboard: null, operatorPolicies: {}, scannerSkips: {}, other: {} };
}

/** The scanners' in-line skips of a resource (README "Security checks"), as infra/scan.py reads them. */
function scannerSkips(m: Model, name: string, r: Resource, drop: (rule: string) => boolean = () => false) {
  const meta = (r.Metadata ?? {}) as Obj;
  const checkov = asList(((meta.checkov ?? {}) as Obj).skip);
  const guard = (asList(((meta.guard ?? {}) as Obj).SuppressedRules) as Obj[]).filter((g) => !drop(g.rule as string));
  if (checkov.length || guard.length) m.scannerSkips[name] = canon({ checkov, guard });
}

function finish(m: Model): Model {
  m.eventSources.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  m.hooks.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  return m;
}

// ---- the SAM stack ------------------------------------------------------------------------

/** SAM's implicit permissions (its managed policies), as the construct grants them. */
const SAM_SQS_EVENT_ACTIONS = ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'];

export function samModel(file: string, given: Record<string, Json>): Model {
  const t = loadYamlTemplate(file);
  const params = parameterValues(t, given);
  const conditions = evalConditions((t.Conditions ?? {}) as Obj, params);
  const resources = expandResources(t, params);
  const ctx = (r?: Resource): EvalContext => ({ params: { ...params, ...(r?.scope ?? {}) }, conditions, symbol: (s) => s });
  const props = (r: Resource) => evaluate((r.Properties ?? {}) as Json, ctx(r)) as Obj;
  const globals = evaluate(((t.Globals as Obj)?.Function ?? {}) as Json, ctx()) as Obj;
  const m = empty();
  const managed: Record<string, Json[]> = {};
  for (const [name, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::ManagedPolicy') managed[name] = asList((props(r).PolicyDocument as Obj).Statement);
  }
  for (const [name, r] of Object.entries(resources)) {
    if (r.Condition && !conditions[r.Condition]) continue;
    const p = props(r);
    // The SAM stack cannot know whether AlarmTopicArn will be set, so its alarms always carry
    // the alarm-action suppression; the construct knows, and adds it only to alarms without an
    // action (with one, the rule passes and the suppression would be stale).
    const alarmed = r.Type === 'AWS::CloudWatch::Alarm' && params.AlarmTopicArn !== '';
    scannerSkips(m, name, r, (rule) => alarmed && rule === 'cloudwatch_alarm_action_check');
    switch (r.Type) {
      case 'AWS::Serverless::Function': {
        const merged: Obj = { ...globals, ...p };
        merged.Environment = { Variables: { ...((globals.Environment as Obj)?.Variables as Obj), ...((p.Environment as Obj)?.Variables as Obj) } };
        const { CodeUri, Policies, Events, DeadLetterQueue, EventInvokeConfig, ...settings } = merged;
        void CodeUri;
        const statements: Json[] = [];
        if (DeadLetterQueue) {
          // SAM's DeadLetterQueue becomes Lambda's DeadLetterConfig, and a policy to send to it.
          const dlq = DeadLetterQueue as Obj;
          settings.DeadLetterConfig = { TargetArn: dlq.TargetArn };
          statements.push({ Effect: 'Allow', Action: dlq.Type === 'SNS' ? 'sns:Publish' : 'sqs:SendMessage', Resource: dlq.TargetArn });
        }
        if (EventInvokeConfig) {
          // SAM's EventInvokeConfig becomes an AWS::Lambda::EventInvokeConfig (destinations
          // without their Type), and a policy to send to each SQS or SNS destination.
          const { DestinationConfig, ...rest } = EventInvokeConfig as Obj;
          const eic: Obj = { ...rest };
          if (DestinationConfig) {
            const dc: Obj = {};
            for (const [when, d] of Object.entries(DestinationConfig as Obj)) {
              const { Type, Destination } = d as Obj;
              dc[when] = { Destination };
              if (Type === 'SQS') statements.push({ Effect: 'Allow', Action: 'sqs:SendMessage', Resource: Destination });
              if (Type === 'SNS') statements.push({ Effect: 'Allow', Action: 'sns:Publish', Resource: Destination });
            }
            eic.DestinationConfig = dc;
          }
          settings.EventInvokeConfig = eic;
        }
        for (const pol of asList(Policies) as (Obj | string)[]) {
          if (typeof pol === 'object' && 'Statement' in pol) statements.push(...asList(pol.Statement));
          else if (typeof pol === 'string' && pol.startsWith('${') && managed[pol.slice(2, -1)]) statements.push(...managed[pol.slice(2, -1)]);
          else throw new Error(`${name}: policy ${JSON.stringify(pol)} is not modelled`);
        }
        for (const [other, o] of Object.entries(resources)) {
          if (o.Type === 'AWS::IAM::Policy' && (asList(props(o).Roles) as string[]).includes(`\${${name}Role}`)) {
            statements.push(...asList((props(o).PolicyDocument as Obj).Statement));
            void other;
          }
        }
        for (const [evName, e] of Object.entries((Events ?? {}) as Obj)) {
          const { Type, Properties } = e as Obj;
          const ep = Properties as Obj;
          if (Type === 'SQS') {
            const { Queue, ...rest } = ep;
            m.eventSources.push(canon({ FunctionName: `\${${name}}`, EventSourceArn: Queue, ...rest }));
            // SAM attaches AWSLambdaSQSQueueExecutionRole (these actions on every queue); the
            // construct grants them on the event source's queue only.
            statements.push({ Effect: 'Allow', Action: SAM_SQS_EVENT_ACTIONS, Resource: Queue });
          } else if (Type === 'Schedule') {
            // SAM's Schedule event: a rule, and these event properties on its target.
            const target: Obj = { Arn: `\${${name}.Arn}` };
            if (ep.RetryPolicy) target.RetryPolicy = ep.RetryPolicy;
            if (ep.DeadLetterConfig) target.DeadLetterConfig = { Arn: (ep.DeadLetterConfig as Obj).Arn };
            if (ep.Input) target.Input = ep.Input;
            m.rules[`${name}${evName}`] = ruleModel({ ScheduleExpression: ep.Schedule, ...(ep.Enabled === false ? { State: 'DISABLED' } : {}), Targets: [target] });
          } else {
            throw new Error(`${name}.${evName}: event type ${String(Type)} is not modelled`);
          }
        }
        m.functions[name] = { settings: canon(settings), ...splitLogs(permissions(statements)) };
        // SAM's AWSLambdaBasicExecutionRole: logs:CreateLogGroup, CreateLogStream, PutLogEvents on *.
        m.functions[name].logs = { 'logs:CreateLogGroup': ['*'], 'logs:CreateLogStream': ['*'], 'logs:PutLogEvents': ['*'] };
        break;
      }
      case 'AWS::Events::Rule':
        m.rules[name] = ruleModel(p);
        break;
      case 'AWS::SQS::Queue':
        m.queues[name] = canon(p);
        break;
      case 'AWS::SQS::QueuePolicy':
        for (const q of asList(p.Queues) as string[]) m.queuePolicies[q] = permissions(asList((p.PolicyDocument as Obj).Statement));
        break;
      case 'AWS::DynamoDB::Table':
        m.table = tableModel(p, r);
        break;
      case 'AWS::Logs::LogGroup': {
        const { LogGroupName, ...rest } = p;
        void LogGroupName;
        m.logGroups[name] = canon(rest);
        break;
      }
      case 'AWS::CloudWatch::Alarm':
        m.alarms[name] = canon(p);
        break;
      case 'AWS::AutoScaling::LifecycleHook':
        m.hooks.push(hookModel(p));
        break;
      case 'AWS::CloudWatch::Dashboard':
        m.dashboard = canon({ DashboardName: p.DashboardName, DashboardBody: JSON.parse(p.DashboardBody as string) });
        break;
      case 'AWS::IAM::ManagedPolicy':
        if (name !== 'OrchestratorPolicy') m.operatorPolicies[name] = permissions(managed[name]);
        break;
      case 'AWS::IAM::Policy':
        break; // attached to the functions' roles above
      default:
        m.other[name] = r.Type;
    }
  }
  return finish(m);
}

// ---- the construct's stack ----------------------------------------------------------------

export function cdkModel(stack: Stack, root: IConstruct): Model {
  const t = Template.fromStack(stack).toJSON() as Obj;
  const symbol = cdkSymbols(stack, root);
  const ctx: EvalContext = { params: {}, conditions: {}, symbol };
  const resources = (t.Resources ?? {}) as unknown as Record<string, Resource>;
  const props = (r: Resource) => evaluate((r.Properties ?? {}) as Json, ctx) as Obj;
  const m = empty();
  const managed: Record<string, Json[]> = {};
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::ManagedPolicy') managed[`\${${symbol(id)}}`] = asList((props(r).PolicyDocument as Obj).Statement);
  }
  const roleStatements = (role: string): Json[] => {
    const out: Json[] = [];
    const rp = props(Object.entries(resources).find(([id]) => `\${${symbol(id)}}` === role)![1]);
    for (const arn of asList(rp.ManagedPolicyArns) as string[]) {
      if (!managed[arn]) throw new Error(`${role}: managed policy ${arn} is not modelled`);
      out.push(...managed[arn]);
    }
    for (const pol of asList(rp.Policies) as Obj[]) out.push(...asList((pol.PolicyDocument as Obj).Statement));
    for (const r of Object.values(resources)) {
      if (r.Type === 'AWS::IAM::Policy' && (asList(props(r).Roles) as string[]).includes(role)) {
        out.push(...asList((props(r).PolicyDocument as Obj).Statement));
      }
    }
    return out;
  };
  for (const [id, r] of Object.entries(resources)) {
    const name = symbol(id);
    const p = props(r);
    scannerSkips(m, name, r);
    switch (r.Type) {
      case 'AWS::Lambda::Function': {
        // The construct's log groups exist before the functions and are passed as LoggingConfig.
        const { Code, Role, LoggingConfig, ...settings } = p;
        void Code;
        const role = (Role as string).replace(/\.Arn\}$/, '}');
        m.functions[name] = { settings: canon(settings), ...splitLogs(permissions(roleStatements(role))) };
        if ((LoggingConfig as Obj)?.LogGroup !== `\${${name}Logs}`) throw new Error(`${name}: logs go to ${JSON.stringify(LoggingConfig)}`);
        break;
      }
      case 'AWS::Lambda::EventSourceMapping':
        m.eventSources.push(canon(p));
        break;
      case 'AWS::Events::Rule':
        m.rules[name] = ruleModel(p);
        break;
      case 'AWS::SQS::Queue':
        m.queues[name] = canon(p);
        break;
      case 'AWS::SQS::QueuePolicy':
        for (const q of asList(p.Queues) as string[]) m.queuePolicies[q] = permissions(asList((p.PolicyDocument as Obj).Statement));
        break;
      case 'AWS::DynamoDB::Table':
        m.table = tableModel(p, r);
        break;
      case 'AWS::Logs::LogGroup':
        m.logGroups[name] = canon(p);
        break;
      case 'AWS::CloudWatch::Alarm':
        m.alarms[name] = canon(p);
        break;
      case 'AWS::AutoScaling::LifecycleHook':
        m.hooks.push(hookModel(p));
        break;
      case 'AWS::CloudWatch::Dashboard':
        m.dashboard = canon({ DashboardName: p.DashboardName, DashboardBody: JSON.parse(p.DashboardBody as string) });
        break;
      case 'AWS::IAM::ManagedPolicy':
        if (name !== 'OrchestratorPolicy') m.operatorPolicies[name] = permissions(managed[`\${${name}}`]);
        break;
      case 'AWS::IAM::Policy':
      case 'AWS::IAM::Role':
        break; // read through the functions' roles
      case 'AWS::Lambda::Permission':
        break; // the schedule's invoke permission; SAM's Schedule event makes the same
      case 'AWS::Lambda::EventInvokeConfig':
        break; // below, into its function's settings (where SAM has it)
      default:
        m.other[name] = r.Type;
    }
  }
  for (const r of Object.values(resources)) {
    if (r.Type !== 'AWS::Lambda::EventInvokeConfig') continue;
    const { FunctionName, Qualifier, ...rest } = props(r);
    void Qualifier;
    const fn = m.functions[(FunctionName as string).slice(2, -1)];
    if (!fn) throw new Error(`EventInvokeConfig of an unknown function ${String(FunctionName)}`);
    fn.settings = canon({ ...(fn.settings as Obj), EventInvokeConfig: rest });
  }
  return finish(m);
}
