# Spinneret: `make demo` to see a crawl, `make test` to run every test.
CARGO ?= cargo

.PHONY: build demo test check fmt clippy clean

## build: compile every crate and binary (debug)
build:
	$(CARGO) build --workspace --bins

## demo: crawl the generated test site with two workers and an itemsaver
demo: build
	./scripts/demo.sh

## test: build the binaries the end-to-end tests spawn, then run every test
test: build
	$(CARGO) test --workspace

## check: formatting, lints and tests, as before every commit
check: fmt clippy test

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## clean: remove build output and demo files
clean:
	$(CARGO) clean
	rm -f items.db items.db-wal items.db-shm
