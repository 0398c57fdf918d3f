# syntax=docker/dockerfile:1
# Multi-stage build of the warehouse binary: a static, stripped executable (migrations,
# OpenAPI document and Swagger UI are embedded) on a distroless base that runs as non-root.
#   docker build -t warehouse .
#   docker run --rm -p 8000:8000 --env-file .env warehouse          # `warehouse run`
#   docker run --rm warehouse migrate status                         # any subcommand

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/warehouse ./cmd/warehouse

# static-debian12 holds CA certificates (amqps://, sslmode=verify-full), tzdata and a
# nonroot user (65532), and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warehouse /warehouse
USER nonroot:nonroot
# HTTP_ADDR (API, health, metrics) and CONSUMER_HTTP_ADDR (health and metrics of `consume`).
EXPOSE 8000 8001
ENTRYPOINT ["/warehouse"]
CMD ["run"]
