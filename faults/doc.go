//go:build faults

// Package faults holds the fault-injection tests of the promise that nothing is lost and
// nothing counts twice under failures, with one consumer or several (docs/contract.md,
// "Processing"): the consumer is killed, its broker connections are closed, its queue is
// deleted, RabbitMQ and PostgreSQL go away for a while, its database sessions are
// terminated, three consumers race on the same stock rows, and it is stopped under load.
// After each fault the ledger must hold exactly the events published, once each, with
// exact stock and a sound audit.
//
// The tests never touch the shared PostgreSQL and RabbitMQ (stopping or breaking them
// would break every other test and user of the machine): they start a private PostgreSQL (initdb + pg_ctl, port 5433 when free) and a
// private RabbitMQ node (faults@localhost, port 5673 when free) in a temporary directory,
// build the warehouse binary, run it as child processes and tear everything down at the
// end, also on failure, interrupt or an approaching -timeout. They run as root (PostgreSQL
// and RabbitMQ are started as the postgres and rabbitmq users) or as a user that may run
// initdb and rabbitmq-server itself. Without them the tests skip, or fail under CI=true.
//
// Every file carries the faults build tag, so `go test ./...` leaves them out. Run them
// alone, one package at a time, with -v to see each scenario's FAULT line:
//
//	go test -tags faults -p 1 -count=1 -timeout 20m -v ./faults/
//
// The consumers' logs go to per-test files whose last lines a failing test prints;
// FAULTS_KEEP=1 keeps the temporary directory (logs, server logs) after the run.
package faults
