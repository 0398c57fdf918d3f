package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"warehouse/adapters/postgres"
)

const auditUsage = `Usage: warehouse audit [--json]

Recomputes every stock row and movement from the stored events, in one consistent
snapshot, and prints the totals and every difference: stock rows that their events do
not add up to, negative stock rows, and movements that disagree with their events.
--json prints the report as one JSON object.

Exit status:
  0  the ledger is sound
  1  the audit found differences: the ledger disagrees with its events
  2  usage error (a bad flag or an argument)
  3  the audit could not check: bad configuration, database missing or unreachable,
     a query that failed, or a report it could not write

`

// auditListed is how many mismatches of each kind postgres.Store.Audit reports at most.
const auditListed = 1000

// ErrAuditFailed means the audit found stock or movements that disagree with the events;
// main exits with status 1 on it.
var ErrAuditFailed = errors.New("audit failed")

// Audit runs `warehouse audit`: it recomputes the ledger from the stored events, prints
// what it found and returns an error wrapping ErrAuditFailed when the ledger is not sound.
// Every other error but a usage error exits with status 3: the audit could not check.
func Audit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if help, err := parseFlags(fs, args, stdout, auditUsage); help || err != nil {
		return err
	}
	r, err := auditLedger(ctx)
	if err != nil {
		return withExitCode(exitUnchecked, err)
	}
	if *asJSON {
		err = writeAuditJSON(stdout, r)
	} else {
		err = writeAuditText(stdout, r)
	}
	if err != nil {
		return withExitCode(exitUnchecked, fmt.Errorf("write report: %w", err))
	}
	if !r.Sound() {
		return withExitCode(exitFailure, fmt.Errorf("%w: %s stock mismatches, %d negative stock rows, %s movement mismatches",
			ErrAuditFailed, auditCount(len(r.Mismatches)), r.NegativeRows, auditCount(len(r.MovementMismatches))))
	}
	return nil
}

// auditLedger loads the configuration, opens the existing database and audits it.
func auditLedger(ctx context.Context) (postgres.AuditReport, error) {
	cfg, log, err := setup()
	if err != nil {
		return postgres.AuditReport{}, err
	}
	db, err := openExistingDatabase(ctx, cfg)
	if err != nil {
		return postgres.AuditReport{}, err
	}
	defer db.Close()
	r, err := postgres.NewStore(db).Audit(ctx)
	if err != nil {
		return r, err
	}
	log.InfoContext(ctx, "audit done", "sound", r.Sound(), "events", r.Events,
		"stock_mismatches", len(r.Mismatches), "negative_rows", r.NegativeRows, "movement_mismatches", len(r.MovementMismatches))
	return r, nil
}

// auditCount prints a count of listed mismatches, which the audit caps.
func auditCount(n int) string {
	if n >= auditListed {
		return "at least " + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

func writeAuditText(w io.Writer, r postgres.AuditReport) error {
	ew := &auditWriter{w: w}
	ew.field("events", "%d\n", r.Events)
	ew.field("movements", "%d\n", r.Movements)
	ew.field("stock rows", "%d\n", r.StockRows)
	ew.field("total quantity", "%d\n", r.StockQuantity)
	ew.field("stock mismatches", "%s\n", auditCount(len(r.Mismatches)))
	for _, m := range r.Mismatches {
		ew.printf("  warehouse %s product %s: stored %s, events add up to %s\n",
			m.WarehouseID, m.ProductID, auditQuantity(m.Stored, "no row"), auditQuantity(m.Computed, "no event"))
	}
	ew.field("negative stock rows", "%d\n", r.NegativeRows)
	ew.field("movement mismatches", "%s\n", auditCount(len(r.MovementMismatches)))
	for _, id := range r.MovementMismatches {
		ew.printf("  movement %s disagrees with its events\n", id)
	}
	ew.field("checkpoints", "%d\n", r.Checkpoints)
	ew.field("checkpoint mismatches", "%s\n", auditCount(len(r.CheckpointMismatches)))
	for _, c := range r.CheckpointMismatches {
		ew.printf("  warehouse %s product %s at %s #%d: balance %d of %d events, events add up to %s of %s\n",
			c.WarehouseID, c.ProductID, c.At.UTC().Format(time.RFC3339Nano), c.Seq, c.StoredBalance, c.StoredEvents,
			auditQuantity(c.ComputedBalance, "nothing"), auditQuantity(c.ComputedEvents, "none"))
	}
	ew.field("event count mismatches", "%s\n", auditCount(len(r.EventCountMismatches)))
	for _, m := range r.EventCountMismatches {
		ew.printf("  warehouse %s product %s: counts %s events, holds %s\n",
			m.WarehouseID, m.ProductID, auditQuantity(m.Stored, "none"), auditQuantity(m.Computed, "none"))
	}
	ew.field("stale checkpoint rows", "%d\n", r.StaleCheckpointRows)
	if r.Sound() {
		ew.field("result", "OK: stock, movements and checkpoints match the events\n")
	} else {
		ew.field("result", "FAILED\n")
	}
	return ew.err
}

func auditQuantity(q *int64, none string) string {
	if q == nil {
		return none
	}
	return strconv.FormatInt(*q, 10)
}

// auditJSON is the report of `audit --json`. A null stored means no stock row where the
// events imply one; a null computed, a stock row that no event explains.
type auditJSON struct {
	Sound              bool            `json:"sound"`
	Events             int64           `json:"events"`
	Movements          int64           `json:"movements"`
	StockRows          int64           `json:"stock_rows"`
	StockQuantity      int64           `json:"stock_quantity"`
	NegativeRows       int64           `json:"negative_rows"`
	StockMismatches    []stockMismatch `json:"stock_mismatches"`
	MovementMismatches []string        `json:"movement_mismatches"`
	// Checkpoints of the ledger's past, and the stock rows' event counts and checkpoint times.
	Checkpoints          int64                `json:"checkpoints"`
	CheckpointMismatches []checkpointMismatch `json:"checkpoint_mismatches"`
	EventCountMismatches []stockMismatch      `json:"event_count_mismatches"`
	StaleCheckpointRows  int64                `json:"stale_checkpoint_rows"`
	// Truncated is set when a list holds as many entries as the audit reports at most.
	Truncated bool `json:"truncated"`
}

type checkpointMismatch struct {
	WarehouseID     string    `json:"warehouse_id"`
	ProductID       string    `json:"product_id"`
	At              time.Time `json:"at"`
	Seq             int64     `json:"seq"`
	StoredBalance   int64     `json:"stored_balance"`
	StoredEvents    int64     `json:"stored_events"`
	ComputedBalance *int64    `json:"computed_balance"`
	ComputedEvents  *int64    `json:"computed_events"`
}

type stockMismatch struct {
	WarehouseID string `json:"warehouse_id"`
	ProductID   string `json:"product_id"`
	Stored      *int64 `json:"stored"`
	Computed    *int64 `json:"computed"`
}

func writeAuditJSON(w io.Writer, r postgres.AuditReport) error {
	out := auditJSON{
		Sound: r.Sound(), Events: r.Events, Movements: r.Movements, StockRows: r.StockRows,
		StockQuantity: r.StockQuantity, NegativeRows: r.NegativeRows,
		StockMismatches:    make([]stockMismatch, 0, len(r.Mismatches)),
		MovementMismatches: make([]string, 0, len(r.MovementMismatches)),
		Checkpoints:        r.Checkpoints, StaleCheckpointRows: r.StaleCheckpointRows,
		CheckpointMismatches: make([]checkpointMismatch, 0, len(r.CheckpointMismatches)),
		EventCountMismatches: make([]stockMismatch, 0, len(r.EventCountMismatches)),
		Truncated: len(r.Mismatches) >= auditListed || len(r.MovementMismatches) >= auditListed ||
			len(r.CheckpointMismatches) >= auditListed || len(r.EventCountMismatches) >= auditListed,
	}
	for _, c := range r.CheckpointMismatches {
		out.CheckpointMismatches = append(out.CheckpointMismatches, checkpointMismatch{
			WarehouseID: c.WarehouseID.String(), ProductID: c.ProductID.String(), At: c.At.UTC(), Seq: c.Seq,
			StoredBalance: c.StoredBalance, StoredEvents: c.StoredEvents,
			ComputedBalance: c.ComputedBalance, ComputedEvents: c.ComputedEvents,
		})
	}
	for _, m := range r.EventCountMismatches {
		out.EventCountMismatches = append(out.EventCountMismatches, stockMismatch{
			WarehouseID: m.WarehouseID.String(), ProductID: m.ProductID.String(), Stored: m.Stored, Computed: m.Computed,
		})
	}
	for _, m := range r.Mismatches {
		out.StockMismatches = append(out.StockMismatches, stockMismatch{
			WarehouseID: m.WarehouseID.String(), ProductID: m.ProductID.String(), Stored: m.Stored, Computed: m.Computed,
		})
	}
	for _, id := range r.MovementMismatches {
		out.MovementMismatches = append(out.MovementMismatches, id.String())
	}
	return json.NewEncoder(w).Encode(out)
}

// auditWriter keeps the first write error, so a report is written without a check per line.
type auditWriter struct {
	w   io.Writer
	err error
}

// field prints one line of the summary: a label, padded so that the values align, and
// the value formatted by format.
func (e *auditWriter) field(label, format string, args ...any) {
	e.printf("%-*s %s", auditLabelWidth, label, fmt.Sprintf(format, args...))
}

// auditLabelWidth is the width of the longest label of the summary.
const auditLabelWidth = len("event count mismatches")

func (e *auditWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
