# Developer entry points. `make run` and `make test` are the README's quick start.
GO      ?= go
BIN     ?= bin/warehouse
PKGS    ?= ./...

LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint

.PHONY: run build test test-short test-faults vet fmt lint docker bench bench-smoke

build:
	$(GO) build -o $(BIN) ./cmd/warehouse

## run: migrate, then serve the API and consume events (Ctrl-C stops it)
run: build
	./$(BIN) run

## test: the whole suite, integration tests included (needs PostgreSQL and RabbitMQ)
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)

## test-short: unit tests only
test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## lint: golangci-lint (pinned LINT_VERSION, installed on first use) with .golangci.yml
lint:
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(LINT_VERSION:v%=%) " || \
		GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VERSION)
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

## docker: the container image (needs a Docker engine)
docker:
	docker build -t warehouse:local .

## bench: the benchmark of docs/benchmarks (about 5 minutes; needs a quiet machine)
bench: build
	./$(BIN) bench

## bench-smoke: the benchmark at toy sizes, to check that it works
bench-smoke: build
	./$(BIN) bench --smoke
