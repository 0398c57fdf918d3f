package amqp_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	amqpadapter "warehouse/adapters/amqp"
)

// frame returns one AMQP frame.
func frame(typ byte, channel uint16, payload []byte) []byte {
	f := []byte{typ}
	f = binary.BigEndian.AppendUint16(f, channel)
	f = binary.BigEndian.AppendUint32(f, uint32(len(payload)))
	f = append(f, payload...)
	return append(f, 0xCE)
}

// tune is connection.tune with the broker's frame_max.
func tune(frameMax uint32) []byte {
	p := binary.BigEndian.AppendUint16(nil, 10)
	p = binary.BigEndian.AppendUint16(p, 30)
	p = binary.BigEndian.AppendUint16(p, 2047)
	p = binary.BigEndian.AppendUint32(p, frameMax)
	p = binary.BigEndian.AppendUint16(p, 60)
	return frame(1, 0, p)
}

func shortstr(s string) []byte { return append([]byte{byte(len(s))}, s...) }

// contentHeader is a basic content header with every property set, and a headers table
// holding one string of pad bytes.
func contentHeader(bodySize uint64, pad int) []byte {
	p := binary.BigEndian.AppendUint16(nil, 60) // class basic
	p = binary.BigEndian.AppendUint16(p, 0)     // weight
	p = binary.BigEndian.AppendUint64(p, bodySize)
	p = binary.BigEndian.AppendUint16(p, 0xFFFC) // every property
	p = append(p, shortstr("application/json")...)
	p = append(p, shortstr("gzip")...)
	table := append(shortstr("x-pad"), 'S')
	table = binary.BigEndian.AppendUint32(table, uint32(pad))
	table = append(table, bytes.Repeat([]byte("p"), pad)...)
	p = binary.BigEndian.AppendUint32(p, uint32(len(table)))
	p = append(p, table...)
	p = append(p, 2, 5) // delivery mode, priority
	for _, s := range []string{"corr", "reply", "60000", "msg-1"} {
		p = append(p, shortstr(s)...)
	}
	p = binary.BigEndian.AppendUint64(p, 1700000000)
	for _, s := range []string{"type", "user", "app", "cluster"} {
		p = append(p, shortstr(s)...)
	}
	return p
}

// TestFrameGuardPassesFramesThrough: a stream with no frame over frame_max comes out
// byte for byte as it went in.
func TestFrameGuardPassesFramesThrough(t *testing.T) {
	var in []byte
	in = append(in, frame(1, 0, bytes.Repeat([]byte{1}, 300))...) // connection.start-like
	in = append(in, tune(4096)...)
	in = append(in, frame(1, 1, []byte{0, 60, 0, 60, 1, 2, 3})...)
	in = append(in, frame(2, 1, contentHeader(5, 4096-8-150))...)
	in = append(in, frame(3, 1, []byte("hello"))...)
	in = append(in, frame(8, 0, nil)...) // heartbeat
	out, _, err := amqpadapter.GuardStream(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("the stream changed: %d bytes in, %d out", len(in), len(out))
	}
}

// TestFrameGuardRewritesOversizedContentHeader: a content header larger than the
// negotiated frame_max comes out with every property but the headers, whose table is
// replaced by the guard's entry holding the dropped table's size; the frames around it
// are untouched.
func TestFrameGuardRewritesOversizedContentHeader(t *testing.T) {
	const pad = 5000
	before := append(tune(4096), frame(1, 1, []byte{0, 60, 0, 60, 9})...)
	after := frame(3, 1, []byte("hello"))
	big := contentHeader(5, pad)
	in := append(append(append([]byte{}, before...), frame(2, 1, big)...), after...)

	out, key, err := amqpadapter.GuardStream(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, before) || !bytes.HasSuffix(out, after) {
		t.Fatal("frames around the rewritten one changed")
	}
	got := out[len(before) : len(out)-len(after)]
	// The expected rewrite: the same properties, the table replaced.
	tableStart := 14 + len(shortstr("application/json")) + len(shortstr("gzip"))
	tableLen := int(binary.BigEndian.Uint32(big[tableStart:]))
	entry := append(shortstr(key), 'l')
	entry = binary.BigEndian.AppendUint64(entry, uint64(tableLen))
	want := append([]byte{}, big[:tableStart]...)
	want = binary.BigEndian.AppendUint32(want, uint32(len(entry)))
	want = append(want, entry...)
	want = append(want, big[tableStart+4+tableLen:]...)
	if !bytes.Equal(got, frame(2, 1, want)) {
		t.Fatalf("rewritten frame\n got %x\nwant %x", got, frame(2, 1, want))
	}
	if len(got) > 4096 {
		t.Errorf("rewritten frame is %d bytes, over frame_max", len(got))
	}
}

// TestFrameGuardRefusesMalformedHeader: an oversized content header whose table length
// runs past the frame is an error, not a read past the frame.
func TestFrameGuardRefusesMalformedHeader(t *testing.T) {
	big := contentHeader(5, 5000)
	tableStart := 14 + len(shortstr("application/json")) + len(shortstr("gzip"))
	binary.BigEndian.PutUint32(big[tableStart:], 1<<30)
	_, _, err := amqpadapter.GuardStream(append(tune(4096), frame(2, 1, big)...))
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want a malformed-frame error", err)
	}
}

// FuzzFrameGuard: whatever the broker sends, the guard neither panics nor hangs, and a
// stream it does not rewrite comes out unchanged.
func FuzzFrameGuard(f *testing.F) {
	f.Add(append(tune(4096), frame(2, 1, contentHeader(5, 5000))...))
	f.Add(append(tune(4096), frame(3, 1, []byte("x"))...))
	f.Add([]byte("AMQP\x00\x00\x09\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := amqpadapter.GuardStream(in)
		if err == nil && len(in) <= 4096 && !bytes.Equal(in, out) {
			t.Fatalf("a stream without oversized frames changed")
		}
	})
}

// BenchmarkFrameGuard reads a stream of deliveries (method, content header and body
// frames, as the broker sends them) through a buffered reader like the client's, with
// and without the guard between it and the socket.
func BenchmarkFrameGuard(b *testing.B) {
	var stream []byte
	stream = append(stream, tune(131072)...)
	deliver := frame(1, 1, append([]byte{0, 60, 0, 60}, bytes.Repeat([]byte{7}, 60)...))
	header := frame(2, 1, contentHeader(420, 40))
	body := frame(3, 1, bytes.Repeat([]byte{'x'}, 420))
	const deliveries = 10000
	for range deliveries {
		stream = append(append(append(stream, deliver...), header...), body...)
	}
	for _, guarded := range []bool{false, true} {
		name := "bare"
		if guarded {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(stream)))
			for range b.N {
				var r io.Reader = bytes.NewReader(stream)
				if guarded {
					r = amqpadapter.GuardReader(r)
				}
				br := bufio.NewReaderSize(r, 4096)
				for {
					if _, err := br.Read(buf); err != nil {
						break
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*deliveries), "ns/delivery")
		})
	}
}

// TestFrameGuardDoesNotHoldBytes: the guard hands out every byte the broker has sent,
// without waiting for more; a frame held back (a heartbeat, say) would stall the client.
func TestFrameGuardDoesNotHoldBytes(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	sent := append(tune(131072), frame(8, 0, nil)...)
	sent = append(sent, frame(3, 1, []byte("half a body"))...)
	go func() { _, _ = pw.Write(sent) }()
	g := amqpadapter.GuardReader(pr)
	got := make([]byte, 0, len(sent))
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for len(got) < len(sent) {
			n, err := g.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(got, sent) {
			t.Fatalf("read %d of %d bytes: %v", len(got), len(sent), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the guard held bytes back while the broker sent nothing more")
	}
}
