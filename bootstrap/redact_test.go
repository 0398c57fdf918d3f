package bootstrap

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestPasswordsNeverLogged: a cluster's AMQP_URL (every node with the password) and a
// multi-host DATABASE_URL are logged with every password hidden, in the start-up
// configuration and in any message that quotes them.
func TestPasswordsNeverLogged(t *testing.T) {
	const amqpList = "amqp://warehouse:s3cr3tA@rabbit1:5672/,amqp://warehouse:s3cr3tB@rabbit2:5672/,amqp://warehouse:s3cr3tC@rabbit3:5672/"
	const pgMulti = "postgres://warehouse:s3cr3tD@db1:5432,db2:5432/warehouse?target_session_attrs=read-write"
	var buf bytes.Buffer
	log := NewLogger(&buf, "text", slog.LevelInfo)
	log.Info("starting", Config{AMQPURL: amqpList, DatabaseURL: pgMulti}.Redacted()...)
	log.Warn("cannot connect", "err", "dial "+amqpList+": refused", "url", pgMulti)
	out := buf.String()
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("a password is in the log:\n%s", out)
	}
	for _, host := range []string{"rabbit1", "rabbit2", "rabbit3", "db1"} {
		if !strings.Contains(out, host) {
			t.Errorf("the log lost %s:\n%s", host, out)
		}
	}
}
