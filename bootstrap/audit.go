package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

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
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if help, err := parseFlags(fs, args); help || err != nil {
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
	ew.printf("events               %d\n", r.Events)
	ew.printf("movements            %d\n", r.Movements)
	ew.printf("stock rows           %d\n", r.StockRows)
	ew.printf("total quantity       %d\n", r.StockQuantity)
	ew.printf("stock mismatches     %s\n", auditCount(len(r.Mismatches)))
	for _, m := range r.Mismatches {
		ew.printf("  warehouse %s product %s: stored %s, events add up to %s\n",
			m.WarehouseID, m.ProductID, auditQuantity(m.Stored, "no row"), auditQuantity(m.Computed, "no event"))
	}
	ew.printf("negative stock rows  %d\n", r.NegativeRows)
	ew.printf("movement mismatches  %s\n", auditCount(len(r.MovementMismatches)))
	for _, id := range r.MovementMismatches {
		ew.printf("  movement %s disagrees with its events\n", id)
	}
	if r.Sound() {
		ew.printf("result               OK: stock and movements match the events\n")
	} else {
		ew.printf("result               FAILED\n")
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
	// Truncated is set when a list holds as many entries as the audit reports at most.
	Truncated bool `json:"truncated"`
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
		Truncated:          len(r.Mismatches) >= auditListed || len(r.MovementMismatches) >= auditListed,
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

func (e *auditWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
