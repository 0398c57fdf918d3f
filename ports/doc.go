// Package ports declares the interfaces between the use cases and the adapters: what the
// application needs from storage and notification (Store, ChangeNotifier, Pinger) and what it
// offers to the inbound adapters (Recorder, Queries). Each interface comment is its contract.
package ports
