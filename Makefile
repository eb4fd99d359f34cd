# Spinneret: `make demo` to see a crawl, `make test` to run every test.
CARGO ?= cargo

.PHONY: build deps demo test check fmt clippy clean bench bench-quick release

## build: compile every crate and binary (debug)
build:
	$(CARGO) build --workspace --bins

## demo: crawl the generated test site with two workers and an itemsaver
demo: build
	./scripts/demo.sh

## deps: install the system packages the tests need, if any is missing (scripts/deps.sh lists them),
## and the WARC reader warcio in target/warcio-venv
deps:
	./scripts/deps.sh
	./scripts/warcio.sh

## test: install what the tests need, build the binaries they spawn, then run every test
test: deps build
	$(CARGO) test --workspace

## release: optimised binaries, as the benchmark measures them
release:
	$(CARGO) build --release --workspace --bins

## bench: the full benchmark (20,000 pages) and the criterion benches; writes target/bench/report.json
bench: release
	$${CARGO_TARGET_DIR:-target}/release/bench
	$(CARGO) bench -p bench --bench core -- --warm-up-time 1 --measurement-time 3

## bench-quick: the same measurements on a small site, in under a minute
bench-quick: release
	$${CARGO_TARGET_DIR:-target}/release/bench --quick

## check: formatting, lints and tests, as before every commit
check: fmt clippy test

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## clean: remove build output and demo files
clean:
	$(CARGO) clean
	rm -rf items.db items.db-wal items.db-shm *.state
