package amqp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
)

// AMQP 0-9-1 framing, as far as frameGuard needs it.
const (
	frameMethod    = 1
	frameHeader    = 2
	frameEnd       = 0xCE
	frameOverhead  = 8 // type, channel, size, frame end
	clientFrameMax = 131072

	classConnection = 10
	methodTune      = 30

	// Property flags of the basic class, in wire order.
	propContentType     = 0x8000
	propContentEncoding = 0x4000
	propHeaders         = 0x2000
	propDeliveryMode    = 0x1000
	propPriority        = 0x0800
	propTimestamp       = 0x0040
	propLast            = 0x0004 // reserved (cluster-id), the last property
)

// frameGuard sits between the broker's socket and amqp091-go, and makes every message
// the broker sends readable. amqp091-go closes the whole connection when a frame is
// larger than the negotiated frame_max, and the broker does send such frames: it checks
// a publisher's frames against frame_max, but not the headers it adds itself when it
// redelivers a message (x-delivery-count) or dead-letters one (x-death). A publisher
// that fills a message's properties to the limit makes it unreadable for ever after: the
// consumer's connection drops on every redelivery until the delivery limit dead-letters
// it, and then every reader of the dead-letter queue drops on it.
//
// frameGuard passes every byte through untouched except the content header frames that
// amqp091-go would refuse. In those it keeps every property but the headers table, which
// it replaces by a table of one entry: key (a name random to this connection, so that no
// publisher can forge it) → the size in bytes of the table it dropped. It skips the table
// as it reads it, so memory stays bounded whatever the frame size.
type frameGuard struct {
	net.Conn
	r         *bufio.Reader // over Conn: a frame boundary must not cost a system call
	key       string
	clientMax int // the frame_max the client proposes

	frameMax  int    // negotiated as amqp091-go does; 0 until the broker's tune
	remaining int    // bytes of the current frame still to pass through, frame end included
	pending   []byte // bytes to hand out before reading on
}

// guardBuffer is the guard's read buffer: reading the broker's bytes in chunks of this
// size keeps frame boundaries (7-byte headers) from costing a system call each.
const guardBuffer = 64 << 10

// newFrameGuard wraps conn, under a client that proposes clientMax as frame_max.
func newFrameGuard(conn net.Conn, clientMax int) *frameGuard {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &frameGuard{
		Conn: conn, r: bufio.NewReaderSize(conn, guardBuffer), clientMax: clientMax,
		key: "x-headers-dropped-" + hex.EncodeToString(b[:]),
	}
}

// Read hands out the broker's bytes, with oversized content headers rewritten. It fills
// p with as many frames as its buffer holds, so that the client's own buffered reader
// calls it about once per chunk rather than once or twice per frame; it blocks only when
// it has nothing yet to hand out.
func (g *frameGuard) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(g.pending) > 0:
			c := copy(p[n:], g.pending)
			g.pending = g.pending[c:]
			n += c
		case g.remaining > 0:
			if n > 0 && g.r.Buffered() == 0 {
				return n, nil
			}
			c, err := g.r.Read(p[n : n+min(len(p)-n, g.remaining)])
			g.remaining -= c
			n += c
			if err != nil {
				return n, err
			}
		default: // a frame boundary
			if n > 0 && !g.passesThrough() {
				return n, nil // the next frame may block or needs rewriting: later
			}
			if err := g.nextFrame(); err != nil {
				if n > 0 {
					return n, nil // the error comes again on the next call
				}
				return 0, err
			}
		}
	}
	return n, nil
}

// passesThrough reports whether the next frame's header is buffered and its frame goes
// through unchanged, so that starting it cannot block or rewrite.
func (g *frameGuard) passesThrough() bool {
	if g.r.Buffered() < 7 || g.frameMax == 0 {
		return false
	}
	h, _ := g.r.Peek(7)
	size := int(binary.BigEndian.Uint32(h[3:7]))
	return h[0] != frameHeader || size <= g.frameMax-frameOverhead
}

// nextFrame reads the start of the next frame and decides what to do with it.
func (g *frameGuard) nextFrame() error {
	var h [7]byte
	if _, err := io.ReadFull(g.r, h[:]); err != nil {
		return err
	}
	typ, channel, size := h[0], binary.BigEndian.Uint16(h[1:3]), int(binary.BigEndian.Uint32(h[3:7]))
	switch {
	case typ == frameMethod && g.frameMax == 0 && size >= 4 && size <= 64:
		// Before the tune, only small connection methods come: read them whole.
		frame := make([]byte, 7+size+1)
		copy(frame, h[:])
		if _, err := io.ReadFull(g.r, frame[7:]); err != nil {
			return noEOF(err)
		}
		g.readTune(frame[7 : 7+size])
		g.pending = frame
	case typ == frameHeader && g.frameMax > 0 && size > g.frameMax-frameOverhead:
		frame, err := g.rewriteHeader(channel, size)
		if err != nil {
			return err
		}
		g.pending = frame
	default:
		g.pending = append(g.pending[:0], h[:]...)
		g.remaining = size + 1
	}
	return nil
}

// readTune learns the frame_max the client will negotiate from connection.tune: the
// smaller of the broker's and the client's, or the client's when the broker sets none.
func (g *frameGuard) readTune(payload []byte) {
	if len(payload) < 10 || binary.BigEndian.Uint16(payload[0:2]) != classConnection ||
		binary.BigEndian.Uint16(payload[2:4]) != methodTune {
		return
	}
	server := int(binary.BigEndian.Uint32(payload[6:10]))
	g.frameMax = g.clientMax
	if server > 0 && server < g.clientMax {
		g.frameMax = server
	}
}

var errMalformedHeader = errors.New("malformed content header frame from the broker")

// rewriteHeader reads a content header frame of size bytes whose start has been read and
// returns it with its headers table replaced.
func (g *frameGuard) rewriteHeader(channel uint16, size int) ([]byte, error) {
	r := &io.LimitedReader{R: g.r, N: int64(size)}
	out := bytes.NewBuffer(make([]byte, 7, 7+512))
	// class, weight, body size, property flags
	if _, err := io.CopyN(out, r, 14); err != nil {
		return nil, noEOF(err)
	}
	flags := binary.BigEndian.Uint16(out.Bytes()[7+12:])
	if flags&0x0001 != 0 { // a second flags word: the basic class has no such properties
		return nil, errMalformedHeader
	}
	dropped := -1
	for bit := uint16(propContentType); bit >= propLast; bit >>= 1 {
		if flags&bit == 0 {
			continue
		}
		var err error
		switch bit {
		case propHeaders:
			dropped, err = g.skipTable(r, out)
		case propDeliveryMode, propPriority:
			_, err = io.CopyN(out, r, 1)
		case propTimestamp:
			_, err = io.CopyN(out, r, 8)
		default: // a short string
			err = copyShortString(r, out)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errMalformedHeader, err)
		}
	}
	if r.N != 0 || dropped < 0 {
		// Only a headers table can make the properties outgrow a frame.
		return nil, errMalformedHeader
	}
	var end [1]byte
	if _, err := io.ReadFull(g.r, end[:]); err != nil {
		return nil, noEOF(err)
	}
	if end[0] != frameEnd {
		return nil, errMalformedHeader
	}
	out.WriteByte(frameEnd)
	frame := out.Bytes()
	frame[0] = frameHeader
	binary.BigEndian.PutUint16(frame[1:3], channel)
	binary.BigEndian.PutUint32(frame[3:7], uint32(len(frame)-frameOverhead))
	return frame, nil
}

// skipTable discards the headers table at r and writes instead a table of one entry,
// g.key → the table's size as a long integer. It returns that size.
func (g *frameGuard) skipTable(r *io.LimitedReader, out *bytes.Buffer) (int, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return 0, err
	}
	size := int64(binary.BigEndian.Uint32(n[:]))
	if size > r.N {
		return 0, io.ErrUnexpectedEOF
	}
	if _, err := io.CopyN(io.Discard, r, size); err != nil {
		return 0, err
	}
	entry := make([]byte, 0, 1+len(g.key)+9)
	entry = append(entry, byte(len(g.key)))
	entry = append(entry, g.key...)
	entry = append(entry, 'l')
	entry = binary.BigEndian.AppendUint64(entry, uint64(size))
	out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(entry))))
	out.Write(entry)
	return int(size), nil
}

// noEOF turns the end of the stream inside a frame into io.ErrUnexpectedEOF: only the
// end between frames is a clean one.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func copyShortString(r io.Reader, out *bytes.Buffer) error {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	out.WriteByte(n[0])
	_, err := io.CopyN(out, r, int64(n[0]))
	return err
}

// droppedHeaders reports whether the guard of conn replaced the headers table of a
// delivery read on it, and the size of the table it dropped.
func droppedHeaders(key string, h map[string]any) (int, bool) {
	if key == "" {
		return 0, false
	}
	n, ok := h[key].(int64)
	return int(n), ok
}
