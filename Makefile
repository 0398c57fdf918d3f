# Developer entry points. `make run` and `make test` are the README's quick start.
GO      ?= go
BIN     ?= bin/warehouse
BENCH_BIN ?= bin/warehouse-bench
PKGS    ?= ./...

# `warehouse version` prints what the build stamps: the VCS revision, which needs
# -buildvcs (GOFLAGS on our machines and in CI say -buildvcs=false; the flag given here
# wins; auto stamps when git and the repository are there, and builds without them
# otherwise), and the build time, which Go does not record by itself.
BUILD_TIME = $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION_FLAGS = -buildvcs=auto -ldflags "-X warehouse/bootstrap.buildTime=$(BUILD_TIME)"

LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint

.PHONY: dev run build build-bench test test-short test-faults vet fmt lint docker bench bench-smoke produce

## build: the service binary (the benchmark is not in it)
build:
	$(GO) build $(VERSION_FLAGS) -o $(BIN) ./cmd/warehouse

## build-bench: the benchmark binary (cmd/warehouse-bench, with its plotting library)
build-bench:
	$(GO) build -o $(BENCH_BIN) ./cmd/warehouse-bench

## dev: the whole API in memory with 10,000 generated events, no PostgreSQL or RabbitMQ
## (nothing is persisted; Ctrl-C stops it)
dev: build
	./$(BIN) dev --count 10000

## run: migrate, then serve the API and consume events (Ctrl-C stops it)
run: build
	./$(BIN) run

## test: the whole suite (needs PostgreSQL and RabbitMQ): unit, contract, integration,
## end-to-end and browser tests, then the fault-injection tests on private instances
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(MAKE) test-faults

## test-faults: kill -9, broker and database outages, racing consumers (about 3 minutes);
## they start their own PostgreSQL and RabbitMQ, so they run one package at a time
test-faults:
	$(GO) vet -tags faults ./faults/
	$(GO) test -tags faults -p 1 -count=1 -timeout 20m -v ./faults/

## test-short: unit tests only
test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## lint: go.mod and go.sum tidy (go mod tidy -diff prints nothing), golangci-lint
## (pinned LINT_VERSION, installed on first use) with .golangci.yml, then govulncheck
## (pinned, see .ci/vulncheck)
lint:
	$(GO) mod tidy -diff
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(LINT_VERSION:v%=%) " || \
		GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VERSION)
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...
	GO=$(GO) ./.ci/vulncheck

## docker: the container image (needs a Docker engine)
docker:
	docker build -t warehouse:local .

## produce: publish realistic traffic to a running service (PRODUCE_FLAGS="--count 1000 --rate 100")
PRODUCE_FLAGS ?= --count 100000
produce: build
	./$(BIN) produce $(PRODUCE_FLAGS)

## bench: the benchmark of docs/benchmarks (about 10–11 minutes; needs a quiet machine); it
## measures the consume and serve commands of $(BIN). BENCH_FLAGS: see bin/warehouse-bench --help
bench: build build-bench
	./$(BENCH_BIN) --warehouse $(BIN) $(BENCH_FLAGS)

## bench-smoke: the benchmark at toy sizes, to check that it works
bench-smoke: build build-bench
	./$(BENCH_BIN) --warehouse $(BIN) --smoke $(BENCH_FLAGS)
