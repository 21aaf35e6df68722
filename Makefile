# Perch. `make test` is what CI runs and installs what it needs itself;
# `make demo` brings up a demo appliance on this machine (root).
GO      ?= go
BIN     := bin/perch
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
export PERCH_CACHE ?= $(HOME)/.cache/perch
DEMO_ROOT ?= /var/lib/perch-demo/root

.PHONY: build unit fuzz integration test e2e cluster bench demo demo-down lint deps k3s-fixture clean

build:
	CGO_ENABLED=1 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/perch

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	for m in $(NESTED); do $(GO) -C $$m vet ./... || exit 1; done

# The nested modules hold the e2e images' programs (internal/testimages).
NESTED  := internal/testimages/standins internal/testimages/upstream \
	$(addprefix internal/testimages/monitoring/,prometheus alertmanager node_exporter kube-state-metrics)

unit:
	$(GO) test -count=1 ./...
	$(GO) -C internal/testimages/standins test -count=1 ./...

# A short run of every fuzz target: no input may make a parser panic.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzLoadBytes -fuzztime=20s ./installer/config
	$(GO) test -run='^$$' -fuzz=FuzzLoadTOML -fuzztime=20s ./installer/config
	$(GO) test -run='^$$' -fuzz=FuzzLoadJSON -fuzztime=20s ./installer/config
	$(GO) test -run='^$$' -fuzz=FuzzParseManifest -fuzztime=20s ./bundles
	$(GO) test -run='^$$' -fuzz=FuzzParseSpec -fuzztime=20s ./bundles

deps:
	scripts/test-deps

k3s-fixture:
	@scripts/k3s-fixture

# Integration tier: perch installs a real k3s (built from the pinned module)
# under a sandbox root with --init none, from a path and from a signed
# bundle; bundles are built from images in Debian's docker-registry and
# checked with skopeo and minisign.
integration: deps
	PERCH_K3S_BIN=$$(scripts/k3s-fixture) $(GO) test -tags integration -count=1 -v -timeout 20m -run Integration ./cmd/perch ./bundles

# On a cold machine the e2e's monitoring programs' modules download while
# the first tiers run (internal/testimages/prefetch), not when it needs them.
test: deps
	@mkdir -p $(PERCH_CACHE); \
	$(GO) run ./internal/testimages/prefetch >$(PERCH_CACHE)/prefetch.log 2>&1 & \
	$(MAKE) lint unit fuzz integration e2e cluster; rc=$$?; wait; cat $(PERCH_CACHE)/prefetch.log; exit $$rc

# End to end: a whole appliance from a signed bundle (scripts/e2e).
e2e: deps
	scripts/e2e

# The cluster tier: five nodes in network namespaces (scripts/cluster).
cluster: deps
	scripts/cluster

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

demo: deps build
	scripts/demo up $(DEMO_ROOT)

demo-down: build
	scripts/demo down $(DEMO_ROOT)

clean:
	rm -rf bin
