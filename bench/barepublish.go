package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqpadapter "warehouse/adapters/amqp"
)

// The publishers of the pipeline phase are processes of their own, as a real producer
// is: `warehouse produce --file` for the service, and this program's --bare-publish mode
// for the ceiling. Both read the run's stream from one JSON-lines file, written once per
// run by streamFile.

// Lines the bare publisher writes to stdout: the benchmark starts its clock at the first;
// the others say how many messages the broker has confirmed, every bareProgressEvery
// and at the end.
const (
	barePublishing    = "bare publisher: publishing"
	bareConfirmed     = "bare publisher: confirmed"
	bareDone          = "bare publisher: done,"
	bareProgressEvery = 100 * time.Millisecond
)

// streamFile returns the run's stream as a JSON-lines file (one structured event per line,
// in the stream's order: what `warehouse produce --file` publishes), writing it into the
// run's working directory on first use.
func (r *runner) streamFile() (string, error) {
	if r.streamPath != "" {
		return r.streamPath, nil
	}
	name := filepath.Join(r.work, "stream.jsonl")
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, m := range r.stream.msgs {
		_, _ = w.Write(m.body)
		_ = w.WriteByte('\n')
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	r.streamPath = name
	return name, nil
}

// readStreamFile reads a file written by streamFile back into messages, each with its
// routing key and id as generate made them.
func readStreamFile(name string) ([]message, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var msgs []message
	for n := 1; len(b) > 0; n++ {
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		b = rest
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		e, err := amqpadapter.DecodeEvent(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		msgs = append(msgs, message{key: "movement." + string(e.Kind), id: e.ID, body: line})
	}
	return msgs, nil
}

// BarePublish is the --bare-publish mode: the ceiling's publisher as a process of its
// own. It reads the JSON-lines file (see streamFile) and connects to amqpURL first, then
// writes barePublishing to stdout and publishes every event to exchange as one message,
// in order, on one confirm-mode channel of plain amqp091 with window confirms in flight.
// It writes bareConfirmed with the count so far every bareProgressEvery, and bareDone
// with the count and the seconds once all are confirmed. ctx bounds it.
func BarePublish(ctx context.Context, amqpURL, file, exchange string, window int, stdout io.Writer) error {
	if exchange == "" || window < 1 {
		return fmt.Errorf("%w: --bare-publish needs --bare-exchange and a window of at least 1", ErrUsage)
	}
	msgs, err := readStreamFile(file)
	if err != nil {
		return err
	}
	conn, err := dialBroker(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	var (
		confirmed atomic.Int64
		start     time.Time
		mu        sync.Mutex // one line at a time
		wg        sync.WaitGroup
	)
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format, args...)
	}
	quit := make(chan struct{})
	started := func() {
		start = time.Now()
		say("%s %d messages to %s, %d confirms in flight\n", barePublishing, len(msgs), exchange, window)
		wg.Go(func() {
			t := time.NewTicker(bareProgressEvery)
			defer t.Stop()
			for {
				select {
				case <-quit:
					return
				case <-t.C:
					say("%s %d\n", bareConfirmed, confirmed.Load())
				}
			}
		})
	}
	err = publishWindowed(ctx, conn, exchange, msgs, window, started, &confirmed)
	close(quit)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("after %d confirms: %w", confirmed.Load(), err)
	}
	say("%s confirmed %d in %s s\n", bareDone, confirmed.Load(), strconv.FormatFloat(time.Since(start).Seconds(), 'f', 3, 64))
	return nil
}
