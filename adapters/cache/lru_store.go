package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	lru "github.com/hashicorp/golang-lru/v2"
)

// NoExpiry is the expiration that keeps an entry until it is evicted or deleted: pass it
// as store.WithExpiration(NoExpiry).
const NoExpiry time.Duration = -1

// lruStoreType is what LRUStore.GetType reports.
const lruStoreType = "lru"

// errUnsupportedKey is returned for a key that is not a string: gocache's typed caches
// always pass strings, so anything else is a programming error.
var errUnsupportedKey = errors.New("lru store keys must be strings")

// LRUStore is an in-process gocache store bounded in entries, where each entry expires
// after its own time to live. It is safe for concurrent use.
//
// It sits on the plain hashicorp LRU rather than on golang-lru's expirable LRU because
// that one has a single TTL for every entry (a completed movement must be able to stay
// without one) and starts a cleanup goroutine that never stops. Expiry here is checked on
// read: an expired entry is never returned, and until it is read or evicted it only takes
// one of the Size slots, which bounds memory all the same.
type LRUStore struct {
	entries *lru.Cache[string, lruEntry]
	ttl     time.Duration
	// evicted counts the entries pushed out to make room (the size bound), not those
	// deleted or expired.
	evicted atomic.Int64
}

// lruEntry is a stored value with its deadline; a zero deadline never expires.
type lruEntry struct {
	value   any
	expires time.Time
}

var _ store.StoreInterface = (*LRUStore)(nil)

// NewLRUStore returns a store holding at most size entries (at least one). An entry set
// without an expiration option lives for ttl; ttl <= 0 means such entries do not expire.
func NewLRUStore(size int, ttl time.Duration) *LRUStore {
	entries, _ := lru.New[string, lruEntry](max(size, 1)) // fails only for a size below one
	return &LRUStore{entries: entries, ttl: ttl}
}

// Get returns the value stored under key, or a store.NotFound error when there is none
// or it has expired.
func (s *LRUStore) Get(ctx context.Context, key any) (any, error) {
	v, _, err := s.GetWithTTL(ctx, key)
	return v, err
}

// GetWithTTL returns the value stored under key and the time it has left (0 when it
// never expires), or a store.NotFound error.
func (s *LRUStore) GetWithTTL(_ context.Context, key any) (any, time.Duration, error) {
	k, ok := key.(string)
	if !ok {
		return nil, 0, errUnsupportedKey
	}
	e, ok := s.entries.Get(k)
	if !ok {
		return nil, 0, store.NotFoundWithCause(errors.New("no entry"))
	}
	if e.expires.IsZero() {
		return e.value, 0, nil
	}
	left := time.Until(e.expires)
	if left <= 0 {
		s.entries.Remove(k)
		return nil, 0, store.NotFoundWithCause(errors.New("entry expired"))
	}
	return e.value, left, nil
}

// Set stores value under key, evicting the least recently used entry when full. The
// store.WithExpiration option overrides the default time to live; NoExpiry disables it.
// Other options are ignored.
func (s *LRUStore) Set(_ context.Context, key any, value any, options ...store.Option) error {
	k, ok := key.(string)
	if !ok {
		return errUnsupportedKey
	}
	ttl := s.ttl
	if o := store.ApplyOptions(options...); o.Expiration != 0 {
		ttl = o.Expiration
	}
	e := lruEntry{value: value}
	if ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	if s.entries.Add(k, e) {
		s.evicted.Add(1)
	}
	return nil
}

// Delete removes the entry stored under key, if any.
func (s *LRUStore) Delete(_ context.Context, key any) error {
	k, ok := key.(string)
	if !ok {
		return errUnsupportedKey
	}
	s.entries.Remove(k)
	return nil
}

// Invalidate is not supported: the store keeps no tags.
func (s *LRUStore) Invalidate(context.Context, ...store.InvalidateOption) error {
	return errors.New("lru store does not support tag invalidation")
}

// Clear removes every entry.
func (s *LRUStore) Clear(context.Context) error {
	s.entries.Purge()
	return nil
}

// GetType names the store kind.
func (s *LRUStore) GetType() string { return lruStoreType }

// Len returns the number of entries held, expired ones not yet dropped included.
func (s *LRUStore) Len() int { return s.entries.Len() }

// Evicted returns how many entries were pushed out to make room for others.
func (s *LRUStore) Evicted() int64 { return s.evicted.Load() }
