package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"warehouse/domain"
	"warehouse/ports"
)

// changesChannel is the NOTIFY channel of the change log: the payload is the batch's last
// position.
const changesChannel = "warehouse_changes"

// logChanges appends the changes of the stored events to the change log, as the batch's
// last statement (see the change_log migration): it takes the positions from the head
// row, whose lock it then holds until commit, inserts the batch's row, and notifies the
// followers, which hear of it at commit.
func logChanges(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger) error {
	changes := domain.ChangesOf(stored, l, 0, time.Time{})
	n := int64(len(changes)) * domain.ChangesPerEvent
	// WHERE only_row: the write path forbids sequential scans (see writeTx), and the
	// disabled scan's cost of a bare UPDATE made PostgreSQL JIT-compile it (200 ms).
	_, err := exec(ctx, tx, `WITH h AS (UPDATE change_log_head SET position = position + $1 WHERE only_row RETURNING position)
		INSERT INTO change_log (first_position, last_position, changes)
		SELECT position - $1 + 1, position, $2 FROM h
		RETURNING pg_notify('`+changesChannel+`', last_position::text)`, n, encodeChanges(changes))
	if err != nil {
		return fmt.Errorf("log changes: %w", err)
	}
	return nil
}

// ChangesAfter implements ports.ChangeLog.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]domain.Change, error) {
	out, err := s.readChanges(ctx, after, limit)
	if err != nil || len(out) > 0 {
		return out, err
	}
	head, err := s.Head(ctx)
	switch {
	case err != nil:
		return nil, err
	case after > head:
		return nil, fmt.Errorf("%w: position %d is ahead of the change log's head %d", domain.ErrInvalid, after, head)
	case after == head:
		return nil, nil
	}
	// The head is past after: a batch committed between the two reads, or the rows after
	// after were pruned.
	if out, err = s.readChanges(ctx, after, limit); err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: changes after position %d were pruned", ports.ErrGone, after)
	}
	return out, err
}

// readChanges reads the rows of the change log after position after, until it holds
// limit changes; ErrGone when the first row starts past after+1 (the rows between were
// pruned: the log has no gaps otherwise).
func (s *Store) readChanges(ctx context.Context, after int64, limit int) ([]domain.Change, error) {
	var out []domain.Change
	err := s.withPgx(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT first_position, updated_at, changes FROM change_log
			WHERE last_position > $1 ORDER BY last_position LIMIT $2`, after, max(limit/64, 4))
		if err != nil {
			return err
		}
		defer rows.Close()
		first := true
		for len(out) < limit && rows.Next() {
			var (
				pos     int64
				updated time.Time
				data    []byte
			)
			if err := rows.Scan(&pos, &updated, &data); err != nil {
				return err
			}
			if first && pos > after+1 {
				return fmt.Errorf("%w: changes after position %d were pruned; the oldest kept is %d", ports.ErrGone, after, pos)
			}
			first = false
			batch, err := decodeChanges(data, pos, updated)
			if err != nil {
				return fmt.Errorf("change log row at %d: %w", pos, err)
			}
			for _, ch := range batch {
				if ch.StockPosition() > after {
					out = append(out, ch)
				}
			}
		}
		return rows.Err()
	})
	if errors.Is(err, ports.ErrGone) {
		return nil, err
	}
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}

// Head implements ports.ChangeLog.
func (s *Store) Head(ctx context.Context) (int64, error) {
	var head int64
	err := s.withPgx(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT position FROM change_log_head WHERE only_row`).Scan(&head)
	})
	if err != nil {
		return 0, translate(err)
	}
	return head, nil
}

// PruneChanges implements ports.ChangeLog.
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.withPgx(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `WITH d AS (DELETE FROM change_log WHERE committed_at < $1
			RETURNING last_position - first_position + 1 AS n) SELECT coalesce(sum(n), 0) FROM d`, before).Scan(&n)
	})
	if err != nil {
		return 0, translate(err)
	}
	return n, nil
}

// followRetry is the pause before a lost LISTEN connection is opened again.
const followRetry = time.Second

// Follow implements ports.ChangeLog with LISTEN on a connection of the pool, held for as
// long as ctx lives. After a lost connection it listens again, and sends the head it
// reads then, so that a follower reads what it may have missed.
func (s *Store) Follow(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		defer close(ch)
		for ctx.Err() == nil {
			err := s.withPgx(ctx, func(c *pgx.Conn) error {
				if _, err := c.Exec(ctx, "LISTEN "+changesChannel); err != nil {
					return err
				}
				defer func() { _, _ = c.Exec(context.WithoutCancel(ctx), "UNLISTEN "+changesChannel) }()
				var head int64
				if err := c.QueryRow(ctx, `SELECT position FROM change_log_head WHERE only_row`).Scan(&head); err != nil {
					return err
				}
				offerHint(ch, head)
				for {
					n, err := c.WaitForNotification(ctx)
					if err != nil {
						return err
					}
					if h, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
						offerHint(ch, h)
					}
				}
			})
			if ctx.Err() != nil || err == nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(followRetry):
			}
		}
	}()
	return ch
}

// offerHint sends h on ch, replacing a hint not yet taken, without blocking. The caller
// is ch's only sender.
func offerHint(ch chan int64, h int64) {
	for {
		select {
		case ch <- h:
			return
		default:
		}
		select {
		case old := <-ch:
			h = max(h, old)
		default:
		}
	}
}

// The changes of one batch are encoded in one bytea, in the batch's order (positions and
// the commit time are the row's). Per change:
//
//	flags byte: 1 = departure (else arrival), 2 = the movement's other leg is known
//	source, id: uvarint length + bytes
//	movement, product, warehouse: 16 bytes each
//	event timestamp: varint Unix nanoseconds; event quantity, stock after: uvarint
//	other leg (flag 2): warehouse 16 bytes, source, varint timestamp, uvarint quantity
//
// A few dozen bytes an event beside the event's own row.
const (
	flagDeparture = 1
	flagOtherLeg  = 2
)

func encodeChanges(changes []domain.Change) []byte {
	b := make([]byte, 0, len(changes)*128)
	for _, c := range changes {
		own, other := c.Movement.Arrival, c.Movement.Departure
		var flags byte
		if c.Kind == domain.Departure {
			flags, own, other = flagDeparture, c.Movement.Departure, c.Movement.Arrival
		}
		if other != nil {
			flags |= flagOtherLeg
		}
		b = append(b, flags)
		b = appendString(b, c.Event.Source)
		b = appendString(b, c.Event.ID)
		b = append(b, c.Movement.ID[:]...)
		b = append(b, c.Movement.ProductID[:]...)
		b = append(b, own.WarehouseID[:]...)
		b = binary.AppendVarint(b, own.Timestamp.UnixNano())
		b = binary.AppendUvarint(b, uint64(own.Quantity))
		b = binary.AppendUvarint(b, uint64(c.Stock.Quantity))
		if other != nil {
			b = append(b, other.WarehouseID[:]...)
			b = appendString(b, other.Source)
			b = binary.AppendVarint(b, other.Timestamp.UnixNano())
			b = binary.AppendUvarint(b, uint64(other.Quantity))
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// changeDecoder reads what encodeChanges wrote; the first error sticks.
type changeDecoder struct {
	b   []byte
	err error
}

func (d *changeDecoder) fail() {
	if d.err == nil {
		d.err = errors.New("truncated or corrupt change record")
	}
	d.b = nil
}

func (d *changeDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *changeDecoder) id() (id [16]byte) {
	if len(d.b) < 16 {
		d.fail()
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[16:]
	return id
}

func (d *changeDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *changeDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *changeDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// leg reads a leg; the source of the event's own leg is the event's, the other leg's
// is read (readSource).
func (d *changeDecoder) leg(source string, readSource bool) *domain.Leg {
	l := &domain.Leg{WarehouseID: domain.WarehouseID(d.id()), Source: source}
	if readSource {
		l.Source = d.string()
	}
	l.Timestamp = time.Unix(0, d.varint()).UTC()
	l.Quantity = int64(d.uvarint())
	return l
}

func decodeChanges(b []byte, first int64, updated time.Time) ([]domain.Change, error) {
	d := changeDecoder{b: b}
	var out []domain.Change
	for pos := first; len(d.b) > 0 && d.err == nil; pos += domain.ChangesPerEvent {
		flags := d.byte()
		c := domain.Change{Position: pos, Kind: domain.Arrival}
		c.Event.Source = d.string()
		c.Event.ID = d.string()
		c.Movement.ID = domain.MovementID(d.id())
		c.Movement.ProductID = domain.ProductID(d.id())
		own := d.leg(c.Event.Source, false)
		c.Stock = domain.Stock{WarehouseID: own.WarehouseID, ProductID: c.Movement.ProductID,
			Quantity: int64(d.uvarint()), UpdatedAt: updated}
		var other *domain.Leg
		if flags&flagOtherLeg != 0 {
			other = d.leg("", true)
		}
		if flags&flagDeparture != 0 {
			c.Kind, c.Movement.Departure, c.Movement.Arrival = domain.Departure, own, other
		} else {
			c.Movement.Arrival, c.Movement.Departure = own, other
		}
		out = append(out, c)
	}
	return out, d.err
}
