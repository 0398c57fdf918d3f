# Developer entry points. `make run` and `make test` are the README's quick start.
GO      ?= go
BIN     ?= bin/warehouse
PKGS    ?= ./...

.PHONY: run build test test-short vet fmt

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
