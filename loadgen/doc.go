// Package loadgen generates realistic, consistent streams of movement events for load
// tests and demos: `warehouse produce` publishes them and the benchmark
// (cmd/warehouse-bench) measures the service with them. It is tooling, not a use case:
// it imports only domain, and the service's layers never import it.
package loadgen
