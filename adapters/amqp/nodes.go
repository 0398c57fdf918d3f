package amqp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// A RabbitMQ URL may name every node of one cluster, comma-separated:
//
//	amqp://user:pass@rabbit1:5672/vhost,amqp://user:pass@rabbit2:5672/vhost,amqp://user:pass@rabbit3:5672/vhost
//
// Every connection of a process to that cluster starts at one node, chosen at random once
// per process so that processes spread over the nodes, and moves on to the next node of
// the list when that one does not answer or the connection to it is lost.

// listedOrder makes the first dial to a cluster start at its first node (see
// PreferListedOrder).
var listedOrder atomic.Bool

// PreferListedOrder sets where a process's first connection to a cluster starts: at a
// random node (false, the default: processes spread over the nodes) or at the first node
// of the list (true: for a process placed next to one node, the others its fallbacks).
// Either way a lost or silent node makes the connection move on to the next one. Call it
// before the first dial.
func PreferListedOrder(on bool) { listedOrder.Store(on) }

// ParseNodes splits an AMQP URL into the URLs of its nodes. Every node must be a valid
// amqp or amqps URL, and all of them must name the same vhost and credentials (they are
// one cluster). Its errors never quote a URL, which may hold a password.
func ParseNodes(raw string) ([]string, error) {
	var nodes []string
	var first amqp091.URI
	for i, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("AMQP URL: node %d of the list is empty", i+1)
		}
		if _, err := url.Parse(part); err != nil {
			return nil, fmt.Errorf("AMQP URL: node %d is not a valid URL", i+1)
		}
		uri, err := amqp091.ParseURI(part)
		if err != nil {
			return nil, fmt.Errorf("AMQP URL: node %d is not a valid AMQP URL", i+1)
		}
		if i == 0 {
			first = uri
		} else if uri.Vhost != first.Vhost || uri.Username != first.Username || uri.Password != first.Password {
			return nil, fmt.Errorf("AMQP URL: node %d names another vhost or other credentials than node 1 (the nodes must be one cluster)", i+1)
		}
		nodes = append(nodes, part)
	}
	return nodes, nil
}

// cluster is the nodes of one AMQP URL and the one this process connects to first.
type cluster struct {
	nodes []string

	mu      sync.Mutex
	next    int // the node the next dial starts at
	current int // the node of the newest connection; -1 before the first
}

// clusters holds one cluster per AMQP URL, so that every connection of the process to it
// shares the starting node and moves on together.
var clusters sync.Map // raw URL → *cluster

// clusterOf returns the cluster of raw, parsing it the first time.
func clusterOf(raw string) (*cluster, error) {
	if c, ok := clusters.Load(raw); ok {
		return c.(*cluster), nil
	}
	nodes, err := ParseNodes(raw)
	if err != nil {
		return nil, err
	}
	first := 0
	if !listedOrder.Load() {
		first = rand.IntN(len(nodes))
	}
	c, _ := clusters.LoadOrStore(raw, &cluster{nodes: nodes, next: first, current: -1})
	return c.(*cluster), nil
}

// order returns the nodes to try, starting at the next one.
func (c *cluster) order() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for i := range c.nodes {
		out = append(out, c.nodes[(c.next+i)%len(c.nodes)])
	}
	return out
}

// connected records that node answered: later dials start there.
func (c *cluster) connected(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n == node {
			c.next, c.current = i, i
		}
	}
}

// lostCurrent records that a connection to the node connected to last was lost: the next
// dial starts at the node after it, unless another connection has moved on already.
func (c *cluster) lostCurrent() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.nodes) > 1 && c.current >= 0 && c.next == c.current {
		c.next = (c.next + 1) % len(c.nodes)
	}
}

// CurrentNode returns the node of raw (an AMQP URL, possibly a list) that this process
// connected to last, with its password hidden; "" before the first connection.
func CurrentNode(raw string) string {
	c, err := clusterOf(raw)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current < 0 {
		return ""
	}
	return redactURL(c.nodes[c.current])
}

// PickNode returns the node of raw that the next connection would try first: for a
// client that dials by itself (the benchmark's bare consumer).
func PickNode(raw string) (string, error) {
	c, err := clusterOf(raw)
	if err != nil {
		return "", err
	}
	return c.order()[0], nil
}

// errNoNode wraps the last error when no node of the list answered.
var errNoNode = errors.New("no node of the AMQP URL answered")
