package sse_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"warehouse/adapters/http/sse"
)

func TestReader(t *testing.T) {
	in := "retry: 2000\n\n: heartbeat\n\nid: 1\nevent: movement\ndata: {\"a\":1}\n\n" +
		"data: line one\ndata: line two\n\nid: 3\nevent: stock\ndata:x\n\n"
	r := sse.NewReader(strings.NewReader(in))
	want := []sse.Event{
		{ID: "1", Type: "movement", Data: `{"a":1}`, Lines: 1},
		{ID: "1", Type: "message", Data: "line one\nline two"},
		{ID: "3", Type: "stock", Data: "x"},
	}
	for i, w := range want {
		e, err := r.Next()
		if err != nil || e != w {
			t.Fatalf("event %d = %+v, %v; want %+v", i, e, err, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: err = %v, want io.EOF", err)
	}
	if r.LastID() != "3" {
		t.Errorf("LastID = %q, want 3", r.LastID())
	}
	if _, err := sse.NewReader(strings.NewReader("data: cut")).Next(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("a stream cut inside an event: err = %v, want an error", err)
	}
}
