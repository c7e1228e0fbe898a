# gridsight: `make demo` and `make test` are the two commands; both install what they need.
SHELL := /bin/bash
CARGO ?= cargo
export ORT_DYLIB_PATH ?= $(CURDIR)/.cache/onnxruntime/libonnxruntime.so.1.31.1
export GRIDSIGHT_SHARED ?= $(abspath $(CURDIR)/../shared)
export GRIDSIGHT_MEDIA ?= $(CURDIR)/.cache/media

.PHONY: setup build demo test check-config bench bench-node bench-privacy bench-recall bench-page bench-live bench-still deb docs fmt lint clean

## setup: install Debian packages, ONNX Runtime, models and media (idempotent)
setup:
	@bash deploy/setup.sh

## build: release build of the edge-node binary
build: setup
	$(CARGO) build --release --locked --bin edge-node

## demo: run the camera simulator and the daemon on deploy/demo.toml until Ctrl-C
demo: build
	@bash deploy/demo.sh

## test: every test (unit, config suite, ONNX Runtime, end-to-end)
test: setup
	$(CARGO) test --workspace --locked

## check-config FILE=...: validate a config file
check-config:
	$(CARGO) run --quiet --locked --bin edge-node -- check-config $(FILE)

## bench: the benchmarks under benches/
bench: setup
	$(CARGO) bench --workspace --locked

## bench-node: the node benchmark (the headline: CPU per camera-second by stage on a mix of
## scenes), both RTSP clients and the peers' decode-everything pipeline side by side
bench-node: setup
	$(CARGO) bench --locked --bench node -- clients peers

## bench-privacy: what the whole-frame face search of published pictures costs (per picture,
## per alert, per blurred clip, per camera-second of thumbnails)
bench-privacy: setup
	$(CARGO) bench --locked --bench node -- privacy

## bench-still: what the dual background of left_object / removed_object rules costs per
## camera-second on 640x360 key frames, and its memory per camera
bench-still: setup
	$(CARGO) bench --locked --bench node -- still

## bench-recall: the cheap cadence against per-frame detection at 5 fps, on the same streams at the
## same time: recall and precision per rule kind and class, first-alert delay, CPU and inferences
## (GRIDSIGHT_BENCH_CADENCE='detect_fps = 2.5; ...' measures other settings, GRIDSIGHT_BENCH_SCENES=a,b fewer cameras)
bench-recall: setup
	$(CARGO) bench --locked --bench recall

## bench-live: raw live video: the node's CPU per viewer-second with 50 viewers of live.mp4 on 4 cameras, ingest with and without them
bench-live: setup
	$(CARGO) bench --locked --bench node -- live

## bench-page: the status page with 200 cameras in headless Chromium (time to show them, script time per update)
bench-page: build
	@bash benches/page.sh 200

## deb: the Debian package for site boxes (target/deb/gridsight_VERSION_amd64.deb)
deb: build
	@bash deploy/deb/build.sh target/release/edge-node target/deb

## docs: the book under docs/ (docs/book/index.html): the config reference regenerated from the
## config types, then mdBook (from crates.io, into .cache/mdbook on first use)
MDBOOK := $(CURDIR)/.cache/mdbook/bin/mdbook
docs: setup
	@test -x $(MDBOOK) || $(CARGO) install mdbook --version 0.5.4 --locked --no-default-features --features search --root $(CURDIR)/.cache/mdbook
	$(CARGO) run --quiet --locked --bin edge-node -- config-reference > docs/src/reference/config.md
	$(MDBOOK) build docs
	@echo "docs: open docs/book/index.html"

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf target var
