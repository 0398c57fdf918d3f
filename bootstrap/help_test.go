package bootstrap

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// commandLines lists every command and sub-command of the binary, as a user types them.
var commandLines = [][]string{
	{}, // the binary itself
	{"dev"}, {"run"}, {"serve"}, {"consume"},
	{"migrate"}, {"migrate", "up"}, {"migrate", "down"}, {"migrate", "status"},
	{"produce"},
	{"dead-letters"}, {"dead-letters", "list"}, {"dead-letters", "replay"},
	{"audit"}, {"version"}, {"--version"}, {"bench"},
}

// TestEveryHelpExitsZero walks every command and sub-command with -h, -help and --help:
// usage on stdout, nothing on stderr, exit status 0, and nothing else done (run would
// otherwise start serving).
func TestEveryHelpExitsZero(t *testing.T) {
	for _, line := range commandLines {
		for _, flag := range []string{"-h", "-help", "--help"} {
			args := append(append([]string{}, line...), flag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := Main(context.Background(), args, &stdout, &stderr)
				if code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage") {
					t.Errorf("exit %d, stdout %q, stderr %q; want 0, the usage on stdout, nothing on stderr",
						code, clipString(stdout.String()), stderr.String())
				}
			})
		}
	}
	// the help command itself
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"help"}, &stdout, &stderr); code != 0 || stdout.String() != Usage {
		t.Errorf("warehouse help: exit %d, stdout %q", code, clipString(stdout.String()))
	}
}

// TestBadCommandLinesExitTwo: an unknown command, sub-command, flag or argument exits 2
// with one line on stderr that names the command and where its help is, and nothing on
// stdout.
func TestBadCommandLinesExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"nosuch"}, {"dev", "extra"}, {"dev", "--count", "-1"}, {"run", "extra"}, {"serve", "--port", "1"}, {"consume", "x"},
		{"migrate"}, {"migrate", "sideways"}, {"migrate", "up", "--nosuch"}, {"migrate", "status", "extra"},
		{"produce", "--nosuch"}, {"produce", "--count", "-1"}, {"produce", "extra"},
		{"dead-letters"}, {"dead-letters", "burn"}, {"dead-letters", "list", "--nosuch"}, {"dead-letters", "replay"},
		{"audit", "--nosuch"}, {"audit", "extra"}, {"version", "x"}, {"bench"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), args, &stdout, &stderr)
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if code != 2 || stdout.Len() != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "warehouse") || !strings.Contains(lines[0], "--help") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and one line on stderr pointing at --help", code, stdout.String(), stderr.String())
			}
		})
	}
	// no command at all: the usage, on stderr, exit 2
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), nil, &stdout, &stderr); code != 2 || stderr.String() != Usage || stdout.Len() != 0 {
		t.Errorf("no command: exit %d, stdout %q, stderr %q", code, stdout.String(), clipString(stderr.String()))
	}
}

func clipString(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
