# strata: build, test and benchmark. Every target installs what it needs.
GO        ?= go
BIN       := bin/strata
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build deps test-setup test bench bench-quick bench-net demo clean

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

test: test-setup build
	$(GO) test -count=1 -timeout 28m ./...

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
