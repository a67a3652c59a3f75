# turnstile: Auto Scaling lifecycle-hook orchestrator for CodeDeploy.
#
#   make test    formatting, lints, and every test (what CI runs)
#   make demo    the whole flow in the in-process simulation (see README)

CARGO ?= cargo
# Property tests run this many cases per property (proptest's PROPTEST_CASES).
PROPTEST_CASES ?= 1000
export PROPTEST_CASES

.PHONY: test fmt-check clippy unit core-deps demo simulate check-toolchain

test: check-toolchain fmt-check clippy core-deps unit

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

demo: check-toolchain
	$(CARGO) run --release --locked -q -p turnstile-sim --bin simulate -- --instances 10 --groups 3 --faults

simulate: check-toolchain
	$(CARGO) run --release --locked -q -p turnstile-sim --bin simulate -- $(ARGS)
