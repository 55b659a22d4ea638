# kommodity-autobootstrap-extension
#
#   make demo    simulated multi-node cluster on loopback (no root)
#   make test    the whole test suite (root-only tests run under CI=true)

BINARY      := kommodity-autobootstrap-extension
PKG         := github.com/kommodity-io/kommodity-autobootstrap-extension
OUT         := _out
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOARCH      ?= amd64
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell go env GOPATH)/bin

.PHONY: all build build-local test test-short lint fmt demo clean image container container-push

all: build

## build: static Linux binary in _out/ (GOARCH overridable, default amd64)
build:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags '$(LDFLAGS)' \
		-o $(OUT)/$(BINARY) ./cmd/$(BINARY)

## build-local: binary for this machine's OS and architecture
build-local:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/$(BINARY)-local ./cmd/$(BINARY)

## test: every test; root-only ones skip without root unless CI=true
test:
	go test -count=1 -timeout 20m ./...

## test-short: quick run for development
test-short:
	go test -short ./...

## lint: go vet plus a pinned staticcheck
lint:
	go vet ./...
	test -x $(GOBIN)/staticcheck || go install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## demo: 3 control-plane nodes + 1 worker on 127.0.0.0/8, one daemon each
demo: build-local
	go run ./cmd/demo -binary $(OUT)/$(BINARY)-local $(DEMO_FLAGS)

clean:
	rm -rf $(OUT)

## image, container, container-push: see deploy/ (packaging)
image:
	@echo "make image: the OCI image builder lands with the packaging work (deploy/)"; exit 1

container:
	@echo "make container needs a Docker engine and deploy/Dockerfile"; exit 1

container-push:
	@echo "make container-push needs IMAGE=registry/name VERSION=x.y.z and the image builder (deploy/)"; exit 1
