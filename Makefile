# strata: build, test and benchmark. Every target installs what it needs.
GO        ?= go
BIN       := bin/strata
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export PATH := /usr/local/go/bin:$(PATH)

# Linters, pinned, built into bin/tools on first use (a fresh machine needs
# only Go). staticcheck 2026.2.2 is module version v0.8.2.
STATICCHECK_VERSION := v0.8.2
TOOLS       := bin/tools
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)

.PHONY: all build deps test-setup vm vm-systemd test test-cgroup test-cgroup-systemd lint bench bench-quick bench-net demo clean

all: build

# One static binary: no cgo, so it runs on any Linux of the same arch.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/strata

# Debian packages the tests and benchmarks use (fuse3, uidmap, comparisons).
deps:
	./tests/setup.sh packages

# deps, plus the unprivileged test user with /etc/subuid ranges.
test-setup: deps
	./tests/setup.sh user

# The cgroup v2 test guest (tests/cgroup_test.go boots it in QEMU): Debian
# 12's own kernel and a busybox initramfs, built by tests/vm/build.sh into
# $${XDG_CACHE_HOME:-~/.cache}/strata-vm (STRATA_VM_CACHE) and reused.
vm:
	./tests/vm/build.sh base

# The systemd guest (a debootstrap of Debian 12 with a lingering user), for
# the systemd way to delegation; cached beside the other.
vm-systemd:
	./tests/vm/build.sh systemd

test: test-setup vm build
	$(GO) test -count=1 -timeout 28m ./...

# Only the resource-limit tests: the guest, and this host's refusal.
test-cgroup: test-setup vm
	$(GO) test -count=1 -timeout 10m -run 'TestCgroup' -v ./tests/

# The same checks through systemd, on a guest that boots it: about two
# minutes on an idle machine, so not part of make test (CI runs both).
test-cgroup-systemd: test-setup vm-systemd
	$(GO) test -tags systemdguest -count=1 -timeout 12m -run 'TestCgroupV2GuestSystemd' -v ./tests/

# gofmt (any unformatted file fails), go vet, staticcheck, and go.mod/go.sum
# as go mod tidy would leave them.
lint: $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

$(STATICCHECK):
	mkdir -p $(TOOLS)
	GOBIN=$(CURDIR)/$(TOOLS)/.install $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/.install/staticcheck $@
	rmdir $(TOOLS)/.install

bench: deps build
	./$(BIN) bench --out bench/out

bench-quick: deps build
	./$(BIN) bench --quick

# iperf3 through each user-mode network driver (bench/net.sh), as the test
# user when run as root.
bench-net: test-setup build
	./bench/net.sh $(BIN)

# The main job: build the default image and run a container from it.
demo: deps build
	./tests/setup.sh user
	./tests/demo.sh

clean:
	rm -rf bin
