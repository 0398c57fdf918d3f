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
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	amqpadapter "warehouse/adapters/amqp"
)

const deadLettersUsage = `Usage:
  warehouse dead-letters list   [--reason R] [--id ID] [--limit N] [--json]
  warehouse dead-letters replay (--reason R | --id ID | --all) [--limit N] [--yes]

list shows the dead letters of AMQP_DEAD_LETTER_QUEUE, oldest first, without consuming
any: id, reason, age, routing key and detail as a table, or one JSON object per line
with --json (body included). Reasons: invalid, conflict, insufficient_stock, internal,
or the broker's own (delivery_limit) for messages redelivered too often.

replay sends the chosen dead letters back to AMQP_EXCHANGE with their original routing
key and without the rejection headers, so the consumer tries them again; the others stay
where they are. Without --yes it only shows what it would replay.

`

// Widths of the table's columns, in characters: the fields come from publishers, and a
// 1 MiB id must not make every row 1 MiB wide (--json keeps them whole).
const (
	idWidth     = 40
	reasonWidth = 24
	keyWidth    = 40
	detailWidth = 60
)

// DeadLetters runs `warehouse dead-letters list|replay`: it inspects the dead-letter
// queue without consuming it and sends chosen dead letters back to the main exchange.
func DeadLetters(ctx context.Context, args []string, stdout io.Writer) error {
	return deadLetters(ctx, args, stdout, os.Stderr, time.Now)
}

// deadLettersOptions are the flags of both subcommands.
type deadLettersOptions struct {
	filter   amqpadapter.DeadLetterFilter
	json     bool // list
	all, yes bool // replay
}

func parseDeadLettersFlags(cmd string, args []string, stdout io.Writer) (deadLettersOptions, error) {
	var o deadLettersOptions
	fs := flag.NewFlagSet("dead-letters "+cmd, flag.ContinueOnError)
	fs.StringVar(&o.filter.Reason, "reason", "", "only dead letters with this reason")
	fs.StringVar(&o.filter.ID, "id", "", "only the dead letter with this event id (or AMQP message id)")
	fs.IntVar(&o.filter.Limit, "limit", 0, "at most this many (0: no limit)")
	if cmd == "list" {
		fs.BoolVar(&o.json, "json", false, "one JSON object per line, body included")
	} else {
		fs.BoolVar(&o.all, "all", false, "replay every dead letter")
		fs.BoolVar(&o.yes, "yes", false, "replay for real (without it, only show what would be replayed)")
	}
	if help, err := parseFlags(fs, args, stdout, deadLettersUsage); help || err != nil {
		if help {
			return o, flag.ErrHelp
		}
		return o, err
	}
	if o.filter.Limit < 0 {
		return o, errors.New("--limit must not be negative")
	}
	if cmd == "replay" {
		chosen := o.filter.Reason != "" || o.filter.ID != ""
		switch {
		case !chosen && !o.all:
			return o, errors.New("replay needs --reason, --id or --all")
		case chosen && o.all:
			return o, errors.New("--all does not go with --reason or --id")
		}
	}
	return o, nil
}

// deadLetters is DeadLetters with its surroundings injected.
func deadLetters(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		if helpRequested(args) {
			_, err := io.WriteString(stdout, deadLettersUsage)
			return err
		}
		return usageError(errors.New("want list or replay"))
	}
	cmd := args[0]
	o, err := parseDeadLettersFlags(cmd, args[1:], stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err // already a usage error
		}
		return usageError(err)
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	log = log.With("component", "dead-letters")
	topo := topologyOf(cfg)

	if cmd == "list" || !o.yes {
		dls, err := amqpadapter.ListDeadLetters(ctx, cfg.AMQPURL, topo.DeadLetterQueue, o.filter)
		if err != nil {
			return err
		}
		if o.json {
			return writeDeadLetterLines(stdout, dls, now())
		}
		if err := writeDeadLetterTable(stdout, dls, now()); err != nil {
			return err
		}
		if cmd == "list" {
			_, err = fmt.Fprintf(stdout, "%s listed from %s\n", deadLetterCount(len(dls)), topo.DeadLetterQueue)
		} else {
			_, err = fmt.Fprintf(stdout, "would replay %s to exchange %s; run again with --yes to replay\n",
				deadLetterCount(len(dls)), topo.Exchange)
		}
		return err
	}

	n, err := amqpadapter.ReplayDeadLetters(ctx, cfg.AMQPURL, topo, o.filter)
	log.InfoContext(ctx, "dead letters replayed", "count", n, "reason", o.filter.Reason, "event_id", o.filter.ID,
		"queue", topo.DeadLetterQueue, "exchange", topo.Exchange)
	if _, werr := fmt.Fprintf(stdout, "replayed %s from %s to exchange %s\n", deadLetterCount(n), topo.DeadLetterQueue, topo.Exchange); werr != nil && err == nil {
		err = werr
	}
	return err
}

// writeDeadLetterTable prints dls as an aligned table.
func writeDeadLetterTable(w io.Writer, dls []amqpadapter.DeadLetter, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREASON\tAGE\tROUTING KEY\tDETAIL")
	for _, d := range dls {
		id := d.ID
		if id == "" {
			id = d.MessageID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dashIfEmpty(terminalSafe(id, idWidth)), dashIfEmpty(terminalSafe(d.Reason, reasonWidth)),
			deadLetterAge(d.DeadLetteredAt, now), dashIfEmpty(terminalSafe(d.RoutingKey, keyWidth)), dashIfEmpty(terminalSafe(d.Detail, detailWidth)))
	}
	return tw.Flush()
}

// deadLetterLine is one dead letter of `list --json`.
type deadLetterLine struct {
	ID             string     `json:"id"`
	MessageID      string     `json:"message_id,omitempty"`
	RoutingKey     string     `json:"routing_key"`
	Reason         string     `json:"reason"`
	Detail         string     `json:"detail"`
	DeadLetteredAt *time.Time `json:"dead_lettered_at"`
	AgeSeconds     *int64     `json:"age_seconds"`
	Attempts       int        `json:"attempts"`
	BodySize       int        `json:"body_size"`
	// Body is the body as text; bytes that are not UTF-8 become U+FFFD.
	Body string `json:"body"`
}

// writeDeadLetterLines prints dls as JSON lines.
func writeDeadLetterLines(w io.Writer, dls []amqpadapter.DeadLetter, now time.Time) error {
	enc := json.NewEncoder(w)
	for _, d := range dls {
		line := deadLetterLine{
			ID: d.ID, MessageID: d.MessageID, RoutingKey: d.RoutingKey, Reason: d.Reason, Detail: d.Detail,
			Attempts: d.Attempts, BodySize: d.BodySize, Body: string(d.Body),
		}
		if !d.DeadLetteredAt.IsZero() {
			at := d.DeadLetteredAt.UTC()
			age := int64(now.Sub(at) / time.Second)
			line.DeadLetteredAt, line.AgeSeconds = &at, &age
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// deadLetterAge prints how long ago t was, coarsely: 42s, 12m, 5h12m, 3d4h; "-" when unknown.
func deadLetterAge(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0).Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// terminalSafe makes s safe for a terminal (a dead letter's body comes from anyone): tabs
// and line breaks become spaces, other control characters and invalid UTF-8 '?', and s is
// clipped to width characters, "…" included, when width > 0.
func terminalSafe(s string, width int) string {
	if width > 0 && utf8.RuneCountInString(s) > width {
		cut, n := 0, 0
		for i := range s {
			if n == width-1 {
				cut = i
				break
			}
			n++
		}
		s = s[:cut] + "…"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t', r == '\n', r == '\r':
			return ' '
		case r == utf8.RuneError, unicode.IsControl(r):
			return '?'
		}
		return r
	}, s)
}

func deadLetterCount(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return strconv.Itoa(n) + " dead letters"
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
