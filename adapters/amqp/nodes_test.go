package amqp_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/ports"
)

func TestParseNodes(t *testing.T) {
	nodes, err := amqpadapter.ParseNodes(" amqp://u:s3cr3tPW@h1:5672/v , amqp://u:s3cr3tPW@h2:5673/v,amqps://u:s3cr3tPW@h3/v")
	if err != nil || len(nodes) != 3 || nodes[0] != "amqp://u:s3cr3tPW@h1:5672/v" || nodes[2] != "amqps://u:s3cr3tPW@h3/v" {
		t.Fatalf("ParseNodes = %q, %v", nodes, err)
	}
	for name, raw := range map[string]string{
		"empty node":        "amqp://u:s3cr3tPW@h1/v,,amqp://u:s3cr3tPW@h2/v",
		"trailing comma":    "amqp://u:s3cr3tPW@h1/v,",
		"other vhost":       "amqp://u:s3cr3tPW@h1/v,amqp://u:s3cr3tPW@h2/w",
		"other user":        "amqp://u:s3cr3tPW@h1/v,amqp://x:s3cr3tPW@h2/v",
		"other password":    "amqp://u:s3cr3tPW@h1/v,amqp://u:0th3rPW@h2/v",
		"not amqp":          "amqp://u:s3cr3tPW@h1/v,http://u:s3cr3tPW@h2/v",
		"not a URL":         "amqp://u:s3cr3tPW@h1/v,amqp://u:s3cr3tPW@h2:port/v",
		"one node, invalid": "amqp://u:s3cr3tPW@[::1/v",
	} {
		_, err := amqpadapter.ParseNodes(raw)
		if err == nil {
			t.Errorf("%s: ParseNodes(%q) accepted it", name, raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3tPW") || strings.Contains(err.Error(), "0th3rPW") {
			t.Errorf("%s: the error quotes a password: %v", name, err)
		}
	}
}

// TestDialMovesToTheNextNode lists a node that refuses connections before the real
// broker: the dial starts at the dead node, moves on, and names the node it reached;
// after the connection is lost, the next dial starts at the node after it.
func TestDialMovesToTheNextNode(t *testing.T) {
	live := mustBrokerURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: connections are refused
	u, _ := url.Parse(live)
	u.Host = deadAddr
	dead := u.String()
	raw := dead + "," + live

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	amqpadapter.StartClusterAt(raw, 0)
	conn, err := amqpadapter.Dial(ctx, raw, "nodes test")
	if err != nil {
		t.Fatalf("dial %s: %v", amqpadapter.CurrentNode(raw), err)
	}
	_ = conn.Close()
	lu, _ := url.Parse(live)
	if got, want := amqpadapter.CurrentNode(raw), lu.Redacted(); got != want {
		t.Errorf("connected to %q, want the live node %q", got, want)
	}
	if p, ok := lu.User.Password(); ok && strings.Contains(amqpadapter.CurrentNode(raw), ":"+p+"@") {
		t.Errorf("CurrentNode shows the password: %q", amqpadapter.CurrentNode(raw))
	}

	// The live node was lost: the next dial starts at the node after it (the dead one),
	// and still reaches the live one.
	amqpadapter.NodeLost(raw)
	conn, err = amqpadapter.Dial(ctx, raw, "nodes test")
	if err != nil {
		t.Fatalf("dial after a loss: %v", err)
	}
	_ = conn.Close()

	// No node answers: unavailable, naming how many were tried, no password.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	dead2 := strings.Replace(dead, deadAddr, ln2.Addr().String(), 1)
	_ = ln2.Close()
	none := dead + "," + dead2
	_, err = amqpadapter.Dial(ctx, none, "nodes test")
	if !errors.Is(err, ports.ErrUnavailable) || !strings.Contains(err.Error(), "tried 2 nodes") {
		t.Errorf("dial with no live node: %v, want unavailable after trying 2 nodes", err)
	}
	if p, ok := lu.User.Password(); ok && strings.Contains(err.Error(), ":"+p+"@") {
		t.Errorf("the error shows the password: %v", err)
	}
}
