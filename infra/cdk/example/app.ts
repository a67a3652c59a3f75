// Example: one Auto Scaling group shared by three CodeDeploy applications (web, api, worker),
// deployed to each new instance one at a time, in order, by turnstile. The CDK twin of
// infra/example/template.yaml.
import {
  App,
  CfnOutput,
  CfnResource,
  CfnParameter,
  Stack,
  StackProps,
  Tags,
  Validations,
  aws_autoscaling as autoscaling,
  aws_codedeploy as codedeploy,
  aws_ec2 as ec2,
  aws_iam as iam,
  aws_lambda as lambda,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { Turnstile, TurnstileCode } from '../src';

export interface SharedFleetStackProps extends StackProps {
  /** The functions' code; by default the library's packaged bootstrap.zip files. */
  readonly code?: TurnstileCode;
}

export class SharedFleetStack extends Stack {
  public readonly turnstile: Turnstile;

  constructor(scope: Construct, id: string, props: SharedFleetStackProps = {}) {
    super(scope, id, props);
    const artifactBucket = new CfnParameter(this, 'ArtifactBucket', {
      description: "S3 bucket holding the applications' revisions (the instances read from it).",
    });

    // Public subnets for the NAT gateway only: nothing launched there gets a public address.
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 1,
      flowLogs: { all: {} },
      subnetConfiguration: [
        { name: 'Public', subnetType: ec2.SubnetType.PUBLIC, mapPublicIpOnLaunch: false },
        { name: 'Private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      ],
    });

    const role = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject', 's3:GetObjectVersion'],
        resources: [`arn:${this.partition}:s3:::${artifactBucket.valueAsString}/*`],
      }),
    );
    const userData = ec2.UserData.forLinux();
    userData.addCommands(
      // The CodeDeploy agent; the first deployment retries if it starts late.
      'set -euo pipefail',
      'dnf install -y ruby wget',
      'cd /tmp',
      `wget -q "https://aws-codedeploy-${this.region}.s3.${this.region}.amazonaws.com/latest/install"`,
      'chmod +x ./install',
      './install auto',
      'systemctl enable --now codedeploy-agent',
    );
    const fleet = new autoscaling.AutoScalingGroup(this, 'Fleet', {
      vpc,
      minCapacity: 0,
      maxCapacity: 10,
      launchTemplate: new ec2.LaunchTemplate(this, 'LaunchTemplate', {
        machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
        instanceType: new ec2.InstanceType('t4g.small'),
        role,
        userData,
        requireImdsv2: true,
        detailedMonitoring: true,
        blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(8, { encrypted: true }) }],
      }),
    });
    Tags.of(fleet).add('role', 'shared-fleet', { applyToLaunchedInstances: true });

    // Each group selects the fleet's instances AND its own gate (tag groups are ANDed), and is
    // NOT associated with the Auto Scaling group (that would install CodeDeploy's racing hook).
    const stages = ['web', 'api', 'worker'].map((name) => ({
      deploymentGroup: new codedeploy.ServerDeploymentGroup(this, `${name}Group`, {
        application: new codedeploy.ServerApplication(this, `${name}App`, { applicationName: name }),
        deploymentGroupName: `${name}-fleet`,
        deploymentConfig: codedeploy.ServerDeploymentConfig.ONE_AT_A_TIME,
        ec2InstanceTags: new codedeploy.InstanceTagSet({ role: ['shared-fleet'] }, { [`turnstile:gate:${name}`]: ['open'] }),
      }),
      gateTag: `turnstile:gate:${name}`,
    }));

    this.turnstile = new Turnstile(this, 'Turnstile', {
      autoScalingGroups: [fleet],
      stages,
      code: props.code,
    });

    new CfnOutput(this, 'FleetName', {
      description: "Scale it out (set its desired capacity) and watch the instances' deployments.",
      value: fleet.autoScalingGroupName,
    });

    // cdk-nag (AwsSolutions) findings of the example's own resources, each with its reason.
    const ack = (c: Construct, id: string, reason: string) => Validations.of(c).acknowledge({ id, reason });
    ack(role, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]', 'AWS maintains the SSM agent permissions; the example fleet is reached through Session Manager, not SSH');
    ack(role, 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<ArtifactBucket>/*]', 'the instances read any revision in the artifact bucket; revision keys are not known when the stack is made');
    for (const s of stages) {
      ack(s.deploymentGroup, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRole]', "CodeDeploy's documented service role policy");
    }
    ack(fleet, 'AwsSolutions-AS3', "turnstile's alarms and dashboard watch the launches; no separate scaling notifications in the example");

    // The security scanners' skips of the example's own resources (README "Security checks").
    const skip = (cfn: CfnResource, checkov: { id: string; comment: string }[], guard: { rule: string; reason: string }[]) => {
      if (checkov.length) cfn.addMetadata('checkov', { skip: checkov });
      if (guard.length) cfn.addMetadata('guard', { SuppressedRules: guard });
    };
    const flowLogKey =
      "The example VPC's flow log records (addresses, ports, accepted or rejected) are encrypted at rest by CloudWatch Logs with its own keys; a customer managed key would need a key policy for the logs service and costs per request.";
    const flowLogGroup = vpc.node.findChild('all').node.findChild('LogGroup').node.defaultChild as CfnResource;
    skip(flowLogGroup, [{ id: 'CKV_AWS_158', comment: flowLogKey }], [{ rule: 'cloudwatch_log_group_encrypted_check', reason: flowLogKey }]);
    skip(
      fleet.node.findChild('ASG') as CfnResource,
      [],
      [
        {
          rule: 'autoscaling_multiple_az_check',
          reason:
            "The group launches into the VPC's two private subnets, one per Availability Zone (VPCZoneIdentifier, maxAzs 2); the rule reads only AvailabilityZones, which Auto Scaling derives from the subnets.",
        },
        {
          rule: 'autoscaling_mixed_instances_policy_multiple_instance_types_check',
          reason: 'An example with one instance type; turnstile works the same whatever the group launches.',
        },
      ],
    );
  }
}

/** The example app. TURNSTILE_EXAMPLE_CODE (a directory) stands in for the functions' code, for tests without the release build. */
export function exampleApp(app = new App()): App {
  const standIn = process.env.TURNSTILE_EXAMPLE_CODE;
  const code = standIn ? { queue: lambda.Code.fromAsset(standIn), timer: lambda.Code.fromAsset(standIn) } : undefined;
  new SharedFleetStack(app, 'SharedFleet', { code });
  return app;
}
