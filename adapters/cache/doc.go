// Package cache decorates ports.Queries with an in-process gocache cache of movement and
// stock point reads, bounded in entries and age, invalidated at once by ports.ChangeNotifier
// when the consumer runs in the same process. Lists are never cached.
package cache
