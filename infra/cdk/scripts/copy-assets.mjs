// Copies the functions' release builds (make build: target/lambda/<name>/bootstrap.zip) into
// assets/<name>/bootstrap.zip, where the construct finds them when no `code` prop is given.
// Runs on `npm pack` / `npm publish` (prepack); `npm run assets` runs it by hand.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const missing = [];
for (const name of ['turnstile-queue', 'turnstile-timer']) {
  const from = join(root, 'target', 'lambda', name, 'bootstrap.zip');
  if (!existsSync(from)) {
    missing.push(from);
    continue;
  }
  const to = join(here, '..', 'assets', name, 'bootstrap.zip');
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  console.log(`${from} -> ${to}`);
}
if (missing.length) {
  console.error(`missing ${missing.join(', ')}: run \`make build\` at the repository root first`);
  process.exit(1);
}
