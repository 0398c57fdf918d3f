package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// binaryCopy builds the data of a COPY … FROM STDIN (FORMAT binary): a header, rows of
// length-prefixed fields in each column's binary send format, and a trailer. The write
// path copies its events and new movements this way rather than through pgx's CopyFrom,
// which looks up an encode plan for every value by its Go type: a third of the write
// path's own CPU for a batch (pprof of the store replaying the benchmark's stream). The
// types are few and fixed (uuid, text, bigint, timestamptz, jsonb); a column whose type
// changed would fail the COPY, and every store test with it.
type binaryCopy struct{ b []byte }

// pgEpoch is PostgreSQL's timestamp origin, 2000-01-01 00:00:00 UTC, in Unix microseconds.
const pgEpoch = 946_684_800_000_000

// copyBuffers keeps the data buffers of finished copies for the next batch's: a batch of
// 1000 events fills about 300 KiB, which the garbage collector would otherwise have to
// find again for every batch.
var copyBuffers = sync.Pool{New: func() any { return new(binaryCopy) }}

// maxPooledCopy bounds the buffers copyBuffers keeps.
const maxPooledCopy = 4 << 20

// newBinaryCopy starts the data of a copy, with room for about sizeHint bytes; copyIn
// gives its buffer back.
func newBinaryCopy(sizeHint int) *binaryCopy {
	c := copyBuffers.Get().(*binaryCopy)
	c.b = slices.Grow(c.b[:0], sizeHint)
	c.b = append(c.b, "PGCOPY\n\xff\r\n\x00"...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags: no OIDs
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // no header extension
	return c
}

// row starts a row of n fields.
func (c *binaryCopy) row(n int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(n)) }

func (c *binaryCopy) null() { c.b = binary.BigEndian.AppendUint32(c.b, 0xffff_ffff) }

func (c *binaryCopy) uuid(u [16]byte) {
	c.b = append(binary.BigEndian.AppendUint32(c.b, 16), u[:]...)
}

// text writes s as it is: the server checks that it is valid in its encoding.
func (c *binaryCopy) text(s string) {
	c.b = append(binary.BigEndian.AppendUint32(c.b, uint32(len(s))), s...)
}

func (c *binaryCopy) int8(v int64) {
	c.b = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(c.b, 8), uint64(v))
}

// timestamptz writes t's microseconds since PostgreSQL's epoch, truncated as pgx does.
func (c *binaryCopy) timestamptz(t time.Time) {
	us := t.Unix()*1_000_000 + int64(t.Nanosecond())/1000 - pgEpoch
	c.b = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(c.b, 8), uint64(us))
}

// jsonb writes JSON text in jsonb's binary format: version 1, then the text, which the
// server parses.
func (c *binaryCopy) jsonb(j []byte) {
	c.b = append(append(binary.BigEndian.AppendUint32(c.b, uint32(len(j)+1)), 1), j...)
}

// copyIn ends the data of c and copies it into columns of table in tx; c must not be used
// after it. A unique violation is a lost race, as for every insert of the write path.
func copyIn(ctx context.Context, tx pgx.Tx, table string, columns []string, c *binaryCopy) error {
	c.b = binary.BigEndian.AppendUint16(c.b, 0xffff) // trailer
	sql := "COPY " + table + " (" + strings.Join(columns, ", ") + ") FROM STDIN (FORMAT binary)"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.b), sql)
	if cap(c.b) <= maxPooledCopy {
		copyBuffers.Put(c) // CopyFrom has sent all of it
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return errLostRace
	}
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}
