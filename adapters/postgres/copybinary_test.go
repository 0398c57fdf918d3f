package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
)

// TestCopyBinaryMatchesPgx copies the same rows into two tables, one by the write path's
// hand-written binary COPY and one by pgx's CopyFrom, and requires the tables to hold
// the same values: every type the write path copies, NULLs, and the edges of each
// (timestamps before PostgreSQL's epoch of 2000, at microsecond and nanosecond
// precision, in the years 1 and 9999; negative and extreme integers; non-ASCII text).
func TestCopyBinaryMatchesPgx(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.MustDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"ours", "pgx"} {
		if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (n int, u uuid, s text, q bigint, at timestamptz, j jsonb)"); err != nil {
			t.Fatal(err)
		}
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	type row struct {
		u  any
		s  any
		q  any
		at any
		j  []byte
	}
	rows := []row{
		{[16]byte{0: 0xb3, 15: 0x99}, "WH-3423", int64(100), utc("2025-02-18T14:34:56Z"), []byte(`{"subject":"WH-3423:ARRIVAL","b":[1,2]}`)},
		{[16]byte{}, "", int64(-1), utc("1999-12-31T23:59:59.999999Z"), []byte(`{}`)},
		{[16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "склад №7 ✓", int64(9223372036854775807), utc("0001-01-01T00:00:00Z"), []byte(`{"x":"\u00e9"}`)},
		{nil, nil, int64(-9223372036854775808), utc("9999-12-31T23:59:59.999999999Z"), nil},
		{[16]byte{1}, "a\tb", nil, utc("1970-01-01T00:00:00.000001+03:00"), []byte(`{"n":1e3}`)},
		{[16]byte{2}, "x", int64(0), nil, nil},
		{[16]byte{3}, "y", int64(1), utc("1969-07-20T20:17:40.123456789-05:30"), nil},
	}
	cols := []string{"n", "u", "s", "q", "at", "j"}
	ours := make([][]any, len(rows))
	theirs := make([][]any, len(rows))
	for i, r := range rows {
		var j, pj any
		if r.j != nil {
			j, pj = postgres.JSONB(r.j), r.j
		}
		ours[i] = []any{nil, r.u, r.s, r.q, r.at, j}
		theirs[i] = []any{int32(i), r.u, r.s, r.q, r.at, pj}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := postgres.CopyBinary(ctx, tx, "ours", cols[1:], dropFirst(ours)); err != nil {
		t.Fatalf("CopyBinary: %v", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pgx"}, cols, pgx.CopyFromRows(theirs)); err != nil {
		t.Fatalf("pgx CopyFrom: %v", err)
	}
	// Number our rows in the order they were copied (a fresh table returns them so).
	if _, err := tx.Exec(ctx, `UPDATE ours o SET n = r.n FROM (SELECT ctid, row_number() OVER (ORDER BY ctid) - 1 AS n FROM ours) r WHERE o.ctid = r.ctid`); err != nil {
		t.Fatal(err)
	}
	var total, differ int
	if err := tx.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE (o.u, o.s, o.q, o.at, o.j) IS DISTINCT FROM (p.u, p.s, p.q, p.at, p.j))
		FROM ours o FULL JOIN pgx p USING (n)`).Scan(&total, &differ); err != nil {
		t.Fatal(err)
	}
	if total != len(rows) || differ != 0 {
		t.Fatalf("%d rows joined (want %d), %d differ", total, len(rows), differ)
	}
	var at time.Time
	if err := tx.QueryRow(ctx, `SELECT at FROM ours WHERE n = 1`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if want := utc("1999-12-31T23:59:59.999999Z"); !at.Equal(want) {
		t.Errorf("timestamp before 2000 read back as %v, want %v", at, want)
	}
}

// dropFirst returns rows without their first field.
func dropFirst(rows [][]any) [][]any {
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = r[1:]
	}
	return out
}
