import * as path from 'node:path';
import { App, Stack, aws_autoscaling as autoscaling, aws_codedeploy as codedeploy, aws_lambda as lambda } from 'aws-cdk-lib';
import { Turnstile, TurnstileProps, TurnstileStage } from '../src';

/** Repository root (tests run from dist/test). */
export const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/** The stand-in function code: a tiny directory, so tests never need the release build. */
export const STAND_IN = path.join(ROOT, 'infra', 'cdk', 'test', 'asset');
export const standInCode = () => ({ queue: lambda.Code.fromAsset(STAND_IN), timer: lambda.Code.fromAsset(STAND_IN) });

export interface Fixture {
  readonly app: App;
  readonly stack: Stack;
  readonly turnstile: Turnstile;
  readonly asgs: autoscaling.IAutoScalingGroup[];
}

/** Imported groups by name: names are literal, so both stacks can be compared value for value. */
export function importedStages(stack: Stack, apps = ['web', 'api', 'worker']): TurnstileStage[] {
  return apps.map((a) => ({
    deploymentGroup: codedeploy.ServerDeploymentGroup.fromServerDeploymentGroupAttributes(stack, `${a}Group`, {
      application: codedeploy.ServerApplication.fromServerApplicationName(stack, `${a}App`, a),
      deploymentGroupName: `${a}-fleet`,
    }),
    gateTag: `turnstile:gate:${a}`,
  }));
}

export function fixture(
  overrides: Partial<TurnstileProps> | ((stack: Stack) => Partial<TurnstileProps>) = {},
  opts: { groups?: string[]; stages?: (stack: Stack) => TurnstileStage[] } = {},
): Fixture {
  const app = new App();
  const stack = new Stack(app, 'Test');
  const asgs = (opts.groups ?? ['shared-fleet']).map((n) => autoscaling.AutoScalingGroup.fromAutoScalingGroupName(stack, `Asg-${n}`, n));
  const turnstile = new Turnstile(stack, 'Turnstile', {
    autoScalingGroups: asgs,
    stages: (opts.stages ?? importedStages)(stack),
    code: standInCode(),
    ...(typeof overrides === 'function' ? overrides(stack) : overrides),
  });
  return { app, stack, turnstile, asgs };
}
