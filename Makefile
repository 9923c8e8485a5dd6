# Spartan: see README.md. `make run` needs no root; `make test` installs
# what the tests need (Debian packages) and runs every test.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)
# Debian packages the tests use: dig, named + dnssec tools, ZooKeeper, ip, systemd-analyze,
# nsd and nftables (the benchmark harness's own tests), lintian (the package's check).
TEST_DEBS := bind9 bind9-dnsutils bind9-utils zookeeper iproute2 procps systemd nsd nftables lintian
# Packages whose tests exercise concurrency: run under the race detector.
RACE_PKGS := ./supervisor/... ./actors/... ./msg/...

.PHONY: all build man deb run test test-deps vet race bench bench-hotpath fuzz mutate soak systemd-check clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/spartan ./cmd/spartan
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/spartanctl ./cmd/spartanctl

# Man pages from the markdown the binaries print for -h / help.
man:
	mkdir -p $(BIN)/man
	$(GO) tool go-md2man -in cmd/spartan/spartan.8.md -out $(BIN)/man/spartan.8
	$(GO) tool go-md2man -in cmd/spartanctl/spartanctl.8.md -out $(BIN)/man/spartanctl.8

# The Debian package (rel/README.md): bin/spartan_VERSION_amd64.deb.
deb:
	GO=$(GO) bash rel/deb/build.sh $(BIN) $(VERSION)

# Development daemon: 127.0.0.1:10053, no interface management, upstreams
# from /etc/resolv.conf, no root needed.
run: build
	mkdir -p /tmp/spartan-dev
	$(BIN)/spartan -config rel/spartan-dev.json -log-level debug

test-deps:
	@missing=""; for p in $(TEST_DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

test: test-deps build vet
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 10m ./cmd/... ./test/... ./bench/...

# The comparative benchmark (writes bench/RESULTS.md; ~25 min) and the
# hot-path micro benchmarks (writes bench/HOTPATH.md; ~1 min).
bench: build bench-hotpath
	bash bench/run.sh

bench-hotpath:
	bash bench/hotpath.sh

fuzz:
	bash test/fuzz.sh

# Mutation score of the decision code (writes docs/MUTATION.md; ~20 min on
# a quiet 2-core machine). Not part of `make test`.
mutate:
	bash test/mutate.sh

# The soak (not part of `make test`): load over every route, kills of random
# tree nodes every 200 ms, a reload every minute and hostile clients, sampled
# every minute into bench/SOAK.md. SOAK_DURATION=3m for a short run.
SOAK_DURATION ?= 30m
soak: test-deps
	$(GO) test -tags soak -count=1 -timeout 0 -v ./test/soak -soak.duration=$(SOAK_DURATION) -soak.out=$(CURDIR)/bench/SOAK.md

# The units of rel/ under the real systemd, booted as PID 1 of its own
# namespaces (root; about 2 minutes), written to bench/SYSTEMD.md. Not part
# of `make test`.
systemd-check:
	$(GO) test -tags systemd -count=1 -timeout 10m -v ./test/systemd -systemd.out=$(CURDIR)/bench/SYSTEMD.md

clean:
	rm -rf $(BIN)
