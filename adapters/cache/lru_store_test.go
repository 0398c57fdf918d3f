package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"

	"warehouse/adapters/cache"
)

func TestLRUStore(t *testing.T) {
	ctx := context.Background()
	s := cache.NewLRUStore(2, time.Hour)
	if _, err := s.Get(ctx, "a"); !errors.Is(err, store.NotFound{}) {
		t.Fatalf("Get on empty store: %v, want NotFound", err)
	}
	if err := s.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "forever", 2, store.WithExpiration(cache.NoExpiry)); err != nil {
		t.Fatal(err)
	}
	if v, ttl, err := s.GetWithTTL(ctx, "a"); err != nil || v != 1 || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("GetWithTTL(a) = %v, %v, %v", v, ttl, err)
	}
	if v, ttl, err := s.GetWithTTL(ctx, "forever"); err != nil || v != 2 || ttl != 0 {
		t.Fatalf("GetWithTTL(forever) = %v, %v, %v", v, ttl, err)
	}
	if err := s.Set(ctx, "short", 3, store.WithExpiration(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a"); err == nil {
		t.Fatal("a not evicted by the third entry in a store of two")
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Get(ctx, "short"); err == nil {
		t.Fatal("expired entry returned")
	}
	if err := s.Delete(ctx, "forever"); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d after delete and expiry, want 0", s.Len())
	}
	if err := s.Set(ctx, 42, 1); err == nil {
		t.Fatal("non-string key accepted")
	}
	if err := s.Invalidate(ctx); err == nil {
		t.Fatal("Invalidate pretended to support tags")
	}
	if err := s.Clear(ctx); err != nil || s.GetType() != "lru" {
		t.Fatal("Clear or GetType")
	}
}
