# Alluvium — build, test, benchmark. `make help` lists the targets.
GO      ?= go
TOOLS   ?= $(HOME)/.cache/alluvium-tools
export PATH := $(TOOLS)/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PROTOS  := common.proto fsmaster.proto journal.proto blockworker.proto pipeline.proto jobmaster.proto jobfsm.proto planplugin.proto
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 20s

.PHONY: help build test vet unit proto demo bench bench-scale bench-scale-workers bench-scale-inodes fmt fuzz test-chaos test-multihost clean console-vendor console-screenshots

help:
	@echo "make build       build bin/alluvium"
	@echo "make test        go vet + go test -race ./... (end-to-end tests start real processes)"
	@echo "make test-chaos  the fault-injection suite alone (tests/chaos: kill -9, SIGSTOP, full tiers, damaged files)"
	@echo "make test-multihost  the HA cluster on network namespaces (tests/multihost: leader kill, partitions, quorum loss; root)"
	@echo "make demo        start an all-in-one cluster on sample data, run jobs, show results, stop"
	@echo "make bench       run the benchmarks and write docs/BENCHMARKS.md (BENCH=regexp BENCH_SECTION=name: some, in a section of their own)"
	@echo "make bench-scale-workers the scale run's worker phases alone (10k simulated workers, leader restart; root)"
	@echo "make bench-scale-inodes the 10M-inode figures (heap, restart, load plan) from a generated checkpoint; minutes"
	@echo "make bench-scale the scale run (10M files, 10k simulated workers; root, ~1 h) into its section of docs/BENCHMARKS.md"
	@echo "make fuzz        run every fuzz target for FUZZTIME each ($(FUZZTIME))"
	@echo "make proto       regenerate api/*.pb.go from api/*.proto"
	@echo "make fmt         gofmt the tree"
	@echo "make console-vendor  refresh the web console's vendored uPlot (UPLOT_VERSION=$(UPLOT_VERSION)) from the npm registry"
	@echo "make console-screenshots  re-take docs/screenshots (the console in headless Chromium)"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/alluvium ./cmd/alluvium

# The end-to-end tests run a race-enabled binary so the servers' races show too.
bin/alluvium.race: FORCE
	$(GO) build -race -ldflags "$(LDFLAGS)" -o bin/alluvium.race ./cmd/alluvium

vet:
	$(GO) vet ./...

test: vet bin/alluvium.race
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium.race $(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# The fault-injection suite (also part of `make test`).
test-chaos: bin/alluvium.race
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium.race $(GO) test -race -count=1 -timeout 15m ./tests/chaos/

# Three FS masters, three job masters and two workers, each host a network
# namespace (also part of `make test`; skipped where namespaces cannot be made).
test-multihost: bin/alluvium.race
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium.race $(GO) test -race -count=1 -timeout 20m ./tests/multihost/

proto:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	@test -x $(TOOLS)/bin/protoc-gen-go || GOBIN=$(TOOLS)/bin $(GO) install $(PROTOC_GEN_GO)
	@test -x $(TOOLS)/bin/protoc-gen-go-grpc || GOBIN=$(TOOLS)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd api && protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(PROTOS)

# The newcomer's first command: an all-in-one cluster on generated sample
# data, a load -> copy -> persist pipeline, a cron policy, a summary; it
# stops everything it started and exits 0 only on success (tests/demo).
demo: build
	$(GO) run ./tests/demo -bin $(CURDIR)/bin/alluvium $(DEMO_FLAGS)

# BENCH=regexp runs some benchmarks only; with BENCH_SECTION=name their
# figures go to a section of that name beside the full run's table (which
# a partial run would otherwise replace), BENCH_NOTE a line in it.
bench: build
	$(GO) run ./tests/bench/cmd/benchreport $(if $(BENCH),-bench '$(BENCH)') $(if $(BENCH_SECTION),-section $(BENCH_SECTION)) $(if $(BENCH_NOTE),-note '$(BENCH_NOTE)')

# The scale run (tests/scale): a UFS of SCALE_FILES files on a loop-mounted
# ext4 image it builds once under SCALE_DIR (kept for the next run),
# SCALE_WORKERS simulated workers, one FS master and one job master. Its
# figures go to their own section of docs/BENCHMARKS.md, the masters'
# profiles to docs/profiles/scale/. Then the learning listing alone over
# the same tree with its inodes warm (section scale-learn-warm), beside a
# warm stat-ing find: the run above learns from cold inodes.
SCALE_FILES   ?= 10000000
SCALE_WORKERS ?= 10000
SCALE_DIR     ?= /var/tmp/alluvium-scale
# What both runs of the scale tree share: the binary, the tree, profiles.
SCALE_TREE_ENV = ALLUVIUM_BIN=$(CURDIR)/bin/alluvium ALLUVIUM_SCALE_FILES=$(SCALE_FILES) \
	ALLUVIUM_SCALE_DIR=$(SCALE_DIR) ALLUVIUM_SCALE_OUT=$(CURDIR)/docs/profiles/scale
bench-scale: build
	mkdir -p docs/profiles/scale
	$(SCALE_TREE_ENV) ALLUVIUM_SCALE_WORKERS=$(SCALE_WORKERS) ALLUVIUM_SCALE_CONNS=$(SCALE_CONNS) \
	$(GO) run ./tests/bench/cmd/benchreport -pkg ./tests/scale/ -bench 'Scale$$' -count 1 -timeout 6h -section scale
	$(SCALE_TREE_ENV) ALLUVIUM_SCALE_LEARN_WARM=1 \
	$(GO) run ./tests/bench/cmd/benchreport -pkg ./tests/scale/ -bench 'Scale$$' -count 1 -timeout 2h -section scale-learn-warm

# The worker phases alone (BenchmarkScaleWorkers): SCALE_WORKERS simulated
# workers at 1 Hz, a load of a small tree (SCALE_WORKER_FILES) cached on
# them, both leaders restarted; no big tree to build.
# SCALE_CONNS: the workers share that many connections to each master
# (0: one per worker, as separate processes have). The run FAILS when the
# simulator delivers under 95% of the heartbeats and polls due: on 2 cores
# shared with both masters it keeps up 10,000 workers only over shared
# connections (100 by default; docs/BENCHMARKS.md "Scale workers at the
# full rate"). SCALE_SIM_CPUS / SCALE_MASTER_CPUS pin the simulator and the
# masters with taskset (empty: not pinned). SCALE_NICE is the nice value the
# simulator and the masters run at (0: the caller's; below 0 needs root):
# -10 puts them ahead of the shared machine's other work (in runs beside
# builds taking 0.4-0.9 of a core for seconds, those seconds held most
# heartbeats over 50 ms); hb-other-cpu-cores says how much of that work
# ran in the measured window either way.
SCALE_WORKER_FILES ?= 10000
SCALE_CONNS ?= 100
SCALE_SIM_CPUS ?=
SCALE_MASTER_CPUS ?=
SCALE_NICE ?= 0
bench-scale-workers: build
	mkdir -p docs/profiles/scale
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium ALLUVIUM_SCALE_FILES=$(SCALE_WORKER_FILES) ALLUVIUM_SCALE_WORKERS=$(SCALE_WORKERS) ALLUVIUM_SCALE_CONNS=$(SCALE_CONNS) \
	ALLUVIUM_SCALE_SIM_CPUS=$(SCALE_SIM_CPUS) ALLUVIUM_SCALE_MASTER_CPUS=$(SCALE_MASTER_CPUS) ALLUVIUM_SCALE_NICE=$(SCALE_NICE) \
	ALLUVIUM_SCALE_OUT=$(CURDIR)/docs/profiles/scale \
	$(GO) run ./tests/bench/cmd/benchreport -pkg ./tests/scale/ -bench 'ScaleWorkers$$' -count 1 -timeout 2h -section scale-workers

# The 10M-inode figures without a UFS tree (BenchmarkScaleInodes): a
# namespace of SCALE_FILES empty files generated into a checkpoint by the
# FS master's own writer; the real binary's heap per inode, start and
# kill -9 restart from it, a load with verify over it (minutes, not an hour).
# With ALLUVIUM_SCALE_STEADY_SECONDS=60 ALLUVIUM_SCALE_WORKERS=10000
# ALLUVIUM_SCALE_CONNS=100 in the environment it also measures the workers'
# heartbeats against the generated namespace (SCALE_FILES=1000000: the 1M-file
# run's heartbeat figures in ~2 minutes; BenchmarkScaleInodes).
bench-scale-inodes: build
	mkdir -p docs/profiles/scale
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium ALLUVIUM_SCALE_FILES=$(SCALE_FILES) ALLUVIUM_SCALE_OUT=$(CURDIR)/docs/profiles/scale \
	$(GO) run ./tests/bench/cmd/benchreport -pkg ./tests/scale/ -bench 'ScaleInodes$$' -count 1 -timeout 2h -section scale-inodes

fuzz:
	bash tests/fuzz.sh $(FUZZTIME)

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

# The web console's one third-party library, uPlot (charts), is vendored
# in console/web/vendor/uplot with its version and licence; the pages need
# no build step. This fetches the package with npm and copies its ES module.
UPLOT_VERSION ?= 1.6.32
console-vendor:
	@command -v npm >/dev/null || { echo "npm missing: apt-get install -y npm"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz) && \
	  mkdir -p console/web/vendor/uplot && \
	  cp "$$tmp/package/dist/uPlot.esm.js" "$$tmp/package/dist/uPlot.min.css" "$$tmp/package/LICENSE" console/web/vendor/uplot/ && \
	  printf 'uplot %s (npm), MIT licence (LICENSE); refresh with make console-vendor UPLOT_VERSION=x.y.z\n' $(UPLOT_VERSION) > console/web/vendor/uplot/VERSION
	@cat console/web/vendor/uplot/VERSION

# The README's pictures of the console, taken by its browser test.
SCREENSHOTS := overview jobs job-failed browse-file policies workers
console-screenshots: bin/alluvium.race
	rm -rf bin/console-artifacts
	ALLUVIUM_BIN=$(CURDIR)/bin/alluvium.race ALLUVIUM_TEST_ARTIFACTS=$(CURDIR)/bin/console-artifacts \
	  $(GO) test -race -count=1 -run TestConsoleInBrowser ./tests/console/
	mkdir -p docs/screenshots
	for s in $(SCREENSHOTS); do cp bin/console-artifacts/console-*/$$s.png docs/screenshots/; done
	@ls -la docs/screenshots

clean:
	rm -rf bin

FORCE:
