// Package sse reads a text/event-stream as the HTML standard's EventSource does, for the
// service's own clients: the tests, the benchmark and anyone following the change
// stream from Go. It keeps the id, event and data fields and skips comments and retry.
package sse

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// Event is one dispatched server-sent event.
type Event struct {
	// ID is the last event id seen so far on the stream (the field persists, as in
	// EventSource): send it as Last-Event-ID to resume.
	ID    string
	Type  string // "message" when the event names none
	Data  string
	Lines int // comment lines (such as heartbeats) read since the previous event
}

// MaxLine bounds one line of the stream.
const MaxLine = 1 << 20

// Reader reads events from a stream.
type Reader struct {
	sc     *bufio.Scanner
	lastID string
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return &Reader{sc: sc}
}

// Next returns the next event; io.EOF when the stream ended cleanly between events.
func (r *Reader) Next() (Event, error) {
	var (
		e       Event
		data    []string
		hasData bool
	)
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if !hasData {
				continue // nothing to dispatch (a retry or an id alone)
			}
			e.ID = r.lastID
			if e.Type == "" {
				e.Type = "message"
			}
			e.Data = strings.Join(data, "\n")
			return e, nil
		}
		if strings.HasPrefix(line, ":") {
			e.Lines++
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		case "event":
			e.Type = value
		case "data":
			data, hasData = append(data, value), true
		}
	}
	if err := r.sc.Err(); err != nil {
		return e, err
	}
	if hasData {
		return e, errors.New("sse: stream ended inside an event")
	}
	return e, io.EOF
}

// LastID is the id to resume after: that of the last event read.
func (r *Reader) LastID() string { return r.lastID }
