// Package application holds the use cases: Recorder applies batches of events and
// announces what changed; Queries answers reads. It depends only on ports and domain.
package application
