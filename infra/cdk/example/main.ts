import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { exampleApp } from './app';

const app = exampleApp();
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
