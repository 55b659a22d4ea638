# kommodity-autobootstrap-extension
#
#   make demo    simulated multi-node cluster on loopback (no root)
#   make test    the whole test suite (root-only tests run under CI=true)

BINARY      := kommodity-autobootstrap-extension
PKG         := github.com/kommodity-io/kommodity-autobootstrap-extension
OUT         := _out
GOARCH      ?= amd64
# The version is semver, derived from the commit (cmd/build-image
# -print-version: vX.Y.Z on a tag, vX.Y.(Z+1)-0.<time>-<hash> after one,
# v0.0.0-<time>-<hash> without, -dirty for a changed tree). VERSION=... given
# by hand is checked, and a malformed one fails the build. $(version) is shell
# text for a recipe: the same value for the binary, the manifest and the tag.
version      = $$(go run ./cmd/build-image -print-version $(if $(VERSION),-version '$(VERSION)'))
ldflags      = -s -w -X main.version=$(1)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell go env GOPATH)/bin

.PHONY: all build build-local test test-short simulate lint fmt demo clean image container container-push

all: build

## build: static Linux binary in _out/ (GOARCH overridable, default amd64)
build:
	v=$(version) && CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags "$(call ldflags,$$v)" \
		-o $(OUT)/$(BINARY) ./cmd/$(BINARY)

## build-local: binary for this machine's OS and architecture
build-local:
	v=$(version) && CGO_ENABLED=0 go build -trimpath -ldflags "$(call ldflags,$$v)" -o $(OUT)/$(BINARY)-local ./cmd/$(BINARY)

## test: every test; root-only ones skip without root unless CI=true
test:
	go test -count=1 -timeout 20m ./...

## simulate: the long simulator run (the daemon's own code, 100,000 seeds by
## default, one worker per core); FIRST resumes from a seed, WORKERS=0 is one per core
SEEDS ?= 100000
FIRST ?= 1
WORKERS ?= 0
simulate:
	go test -count=1 -timeout 0 -run '^TestSimulation$$' -v ./cmd/internal/simulation -sim.seeds=$(SEEDS) -sim.seed=$(FIRST) -sim.workers=$(WORKERS)

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

PLATFORMS         ?= linux/amd64,linux/arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# build-image runs natively; it sets GOOS/GOARCH itself for each daemon build.
# SIGNING_KEY: a cosign key pair's private key (password in COSIGN_PASSWORD)
# or a PKCS#8 PEM key, ECDSA P-256; when set, the index is signed as cosign
# does (_out/image-signature; pushed as sha256-<digest>.sig).
SIGNING_KEY       ?=
BUILD_IMAGE        = env -u GOOS -u GOARCH SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
	go run ./cmd/build-image $(if $(VERSION),-version '$(VERSION)') -platforms '$(PLATFORMS)' \
	-out $(OUT)/image -archive $(OUT)/image.tar \
	$(if $(SIGNING_KEY),-sign-key '$(SIGNING_KEY)' -signature-out $(OUT)/image-signature)

## image: extension image without Docker: OCI layout _out/image (linux/amd64 + linux/arm64) and _out/image.tar; signed with SIGNING_KEY
image:
	$(BUILD_IMAGE)

## container: the same image with Docker BuildKit (deploy/Dockerfile), as an OCI archive _out/container.tar
container:
	v=$(version) && docker buildx build --platform '$(PLATFORMS)' -f deploy/Dockerfile \
		--build-arg VERSION="$$v" --build-arg REVISION="$$(git rev-parse HEAD)" --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
		--output type=oci,dest=$(OUT)/container.tar .

## container-push: build and push IMAGE:<version>, and its signature with SIGNING_KEY (credentials from docker login / crane auth login)
container-push:
	@test -n "$(IMAGE)" || { echo "usage: make container-push IMAGE=registry/name [VERSION=vX.Y.Z]"; exit 2; }
	$(BUILD_IMAGE) -push '$(IMAGE)'
