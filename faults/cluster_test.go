//go:build faults

package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
)

// A RabbitMQ cluster of three private nodes on loopback, the quorum queue replicated on
// all of them, `warehouse run` and a second `warehouse consume` on a three-node AMQP_URL,
// `warehouse produce` publishing across the cluster, and the node that leads the input
// queue stopped mid-stream.

const (
	clusterEvents = 20000
	clusterRate   = 2000 // events/s: the stream lasts about 10 s
	// clusterFaultAt is how many events are stored when the leader's node is stopped:
	// early in the stream, so that produce is still publishing when its node goes, even
	// on a loaded machine where the consumers trail it by seconds.
	clusterFaultAt = clusterEvents / 10
	// clusterDownFor is how long the leader's node stays stopped.
	clusterDownFor = 5 * time.Second
	// clusterResumeWithin bounds the time from the node's loss to the next commit.
	clusterResumeWithin = 10 * time.Second
)

// rmqCluster is three private nodes joined in one cluster.
type rmqCluster struct {
	nodes []*rmqInstance
}

func startRabbitCluster(t *testing.T) *rmqCluster {
	t.Helper()
	e := mustEnv(t)
	cookie, err := newCookie()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.dir, "cluster-"+randHex(3))
	cl := &rmqCluster{}
	for i := 1; i <= 3; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		distPort, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		node := fmt.Sprintf("faultsc%d-%d@localhost", i, os.Getpid())
		r, err := newRabbit(filepath.Join(dir, fmt.Sprintf("node%d", i)), node, port, distPort, cookie)
		if err != nil {
			t.Fatal(err)
		}
		cl.nodes = append(cl.nodes, r)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, r := range cl.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.stop(); err != nil {
					t.Errorf("stop %s: %v", r.node, err)
				}
			}()
		}
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), rmqStartTimeout)
	defer cancel()
	errs := make([]error, len(cl.nodes))
	var wg sync.WaitGroup
	for i, r := range cl.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.boot(ctx) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range cl.nodes[1:] {
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", cl.nodes[0].node}, {"start_app"}} {
			if out, err := r.ctl(ctx, args...); err != nil {
				t.Fatalf("%s: %v\n%s", r.node, err, out)
			}
		}
	}
	out, err := cl.nodes[0].ctl(ctx, "cluster_status", "--formatter", "json")
	var status struct {
		RunningNodes []string `json:"running_nodes"`
	}
	if err != nil || json.Unmarshal([]byte(out), &status) != nil || len(status.RunningNodes) != 3 {
		t.Fatalf("the cluster did not form: %v\n%s", err, out)
	}
	return cl
}

// url lists every node, as AMQP_URL does for a cluster.
func (cl *rmqCluster) url() string {
	urls := make([]string, len(cl.nodes))
	for i, r := range cl.nodes {
		urls[i] = r.url()
	}
	return strings.Join(urls, ",")
}

// urlFrom lists every node, first the node first.
func (cl *rmqCluster) urlFrom(first *rmqInstance) string {
	urls := []string{first.url()}
	for _, r := range cl.nodes {
		if r != first {
			urls = append(urls, r.url())
		}
	}
	return strings.Join(urls, ",")
}

// ctl runs rabbitmqctl on the first node whose application runs.
func (cl *rmqCluster) ctl(ctx context.Context, args ...string) (string, error) {
	var out string
	var err error
	for _, r := range cl.nodes {
		if out, err = r.ctl(ctx, args...); err == nil {
			return out, nil
		}
	}
	return out, err
}

// queueInfo returns the leader of queue and the nodes that hold a replica of it.
func (cl *rmqCluster) queueInfo(ctx context.Context, queue string) (leader *rmqInstance, members []string, err error) {
	out, err := cl.ctl(ctx, "list_queues", "name", "leader", "members", "--formatter", "json")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", err, lastLines(out, 5))
	}
	var rows []struct {
		Name    string   `json:"name"`
		Leader  string   `json:"leader"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, nil, fmt.Errorf("list_queues: %w: %s", err, lastLines(out, 3))
	}
	for _, row := range rows {
		if row.Name != queue {
			continue
		}
		for _, r := range cl.nodes {
			if r.node == row.Leader {
				return r, row.Members, nil
			}
		}
		return nil, row.Members, fmt.Errorf("queue %s is led by %q, not a node of the cluster", queue, row.Leader)
	}
	return nil, nil, fmt.Errorf("queue %s not listed", queue)
}

// leaderOf returns the node that leads queue.
func (cl *rmqCluster) leaderOf(ctx context.Context, queue string) (*rmqInstance, error) {
	leader, _, err := cl.queueInfo(ctx, queue)
	return leader, err
}

// TestRabbitClusterNodeLoss stops the node that leads the input queue while `produce`
// publishes 20,000 events across the cluster and two service processes consume them,
// and starts it again 5 s later. Every event must be stored exactly once, with the stock
// the generator expects, no dead letter, and consumption resumed within 10 s.
func TestRabbitClusterNodeLoss(t *testing.T) {
	cl := startRabbitCluster(t)
	s := newScenarioOn(t, "cluster", scenarioOn{amqpURL: cl.url(), ctl: cl.ctl})
	// Every process starts on the node that leads the input queue (AMQP_NODE_ORDER=listed,
	// that node first), so that losing it makes each of them move to another node: the
	// consumers reconnect and produce publishes again what was not confirmed.
	leader, members, err := cl.queueInfo(s.ctx, s.topo.Queue)
	if err != nil {
		s.fatalf("%v", err)
	}
	if len(members) != len(cl.nodes) {
		s.fatalf("the input queue is replicated on %v, want every node of the cluster", members)
	}
	s.amqpURL = cl.urlFrom(leader)
	s.extraEnv = []string{"AMQP_NODE_ORDER=listed"}
	run := s.startProcess("run", "run", s.amqpURL)
	second := s.startProcess("consume", "consume", s.amqpURL)
	m := s.watch(run)

	// Checked before the stream starts, not at the fault: the CLI takes seconds on a loaded
	// machine, and the stream would be over before the node is stopped.
	if now, err := cl.leaderOf(s.ctx, s.topo.Queue); err != nil || now != leader {
		s.fatalf("the input queue's leader moved before the fault: %v, %v", now, err)
	}
	expectPath := filepath.Join(s.dir, "expected.json")
	seed := fmt.Sprint(time.Now().UnixNano() % 1_000_000_007)
	prodLog, err := os.Create(filepath.Join(s.dir, "produce.log"))
	if err != nil {
		s.fatalf("%v", err)
	}
	defer prodLog.Close()
	prod := exec.CommandContext(s.ctx, s.env.bin, "produce", "--count", fmt.Sprint(clusterEvents), "--seed", seed,
		"--warehouses", "3", "--products", "2", "--rate", fmt.Sprint(clusterRate), "--expect", expectPath)
	prod.Dir, prod.Env = s.dir, s.childEnv("127.0.0.1:0")
	prod.Stdout, prod.Stderr = prodLog, prodLog
	if err := prod.Start(); err != nil {
		s.fatalf("%v", err)
	}
	prodDone := make(chan error, 1)
	go func() { prodDone <- prod.Wait() }()

	s.waitUntil("a tenth of the stream stored", func() bool { return s.eventCount() >= clusterFaultAt })
	nodesBefore := []string{nodeOf(run), nodeOf(second)}
	before := s.eventCount()
	select {
	case err := <-prodDone:
		s.fatalf("produce ended (%v) before the fault, with %d events stored: the stream is too short for this machine\n%s",
			err, before, tail(prodLog.Name(), 20))
	default:
	}
	stopping := time.Now()
	if out, err := leader.ctl(s.ctx, "stop_app"); err != nil {
		s.fatalf("stop_app on %s: %v\n%s", leader.node, err, out)
	}
	stopped := time.Now()
	s.sleep(clusterDownFor)
	newLeader, _ := cl.leaderOf(s.ctx, s.topo.Queue)
	if out, err := leader.ctl(s.ctx, "start_app"); err != nil {
		s.fatalf("start_app on %s: %v\n%s", leader.node, err, out)
	}
	select {
	case err := <-prodDone:
		if err != nil {
			s.fatalf("produce: %v\n%s", err, tail(prodLog.Name(), 20))
		}
	case <-s.ctx.Done():
		s.fatalf("produce did not finish\n%s", tail(prodLog.Name(), 20))
	}
	tt := s.settle(want{stored: clusterEvents, stock: readExpected(t, expectPath)})

	rec, ok := longestStall(m.snapshot(), stopping, clusterEvents)
	nodesAfter := []string{nodeOf(run), nodeOf(second)}
	republished := "?"
	if _, line := grepFile(prodLog.Name(), "republished"); line != "" {
		republished = line
	}
	newLeaderName := "?"
	if newLeader != nil {
		newLeaderName = newLeader.node
	}
	t.Logf("FAULT cluster: stopped %s (leader of the input queue; stop_app took %.2fs) with %d events stored, started it again %s later; "+
		"new leader %s; longest pause in commits from the loss to the last event: %s; nodes of run and consume before %v, after %v; produce: %s; %s",
		leader.node, stopped.Sub(stopping).Seconds(), before, clusterDownFor, newLeaderName, secs(rec, ok), nodesBefore, nodesAfter,
		strings.TrimSpace(republished), tt)
	if !ok || rec > clusterResumeWithin {
		s.errorf("commits paused for %s after the node loss, want consumption resumed within %s", secs(rec, ok), clusterResumeWithin)
	}
	if !run.alive() || !second.alive() || run.starts != 1 || second.starts != 1 {
		s.errorf("a service process exited during the node loss")
	}
	lost := leader.url()
	lost = lost[strings.Index(lost, "@"):]
	for i, n := range nodesBefore {
		if !strings.HasSuffix(n, lost) {
			s.errorf("process %d was on %s before the fault, want the leader's node (…%s)", i, n, lost)
		}
	}
	for i, n := range nodesAfter {
		if n == "?" || strings.HasSuffix(n, lost) {
			s.errorf("process %d is on %s after the fault, want another node than the one lost", i, n)
		}
	}
	if n, _ := grepFile(prodLog.Name(), "publishing again"); n == 0 {
		s.errorf("produce never connected again: it did not lose its node")
	}
}

// longestStall is the longest time without a commit from t0 until the ledger holds all
// events: how long after the fault consumption resumed, at worst. ok is false when the
// samples never show all events.
func longestStall(samples []sample, t0 time.Time, all int64) (time.Duration, bool) {
	var longest time.Duration
	last, lastCount := t0, int64(-1)
	for _, smp := range samples {
		if smp.at.Before(t0) {
			if smp.countOK {
				lastCount = smp.count
			}
			continue
		}
		if !smp.countOK {
			continue
		}
		if smp.count > lastCount {
			longest = max(longest, smp.at.Sub(last))
			last, lastCount = smp.at, smp.count
		}
		if smp.count >= all {
			return longest, true
		}
	}
	return longest, false
}

// nodeOf is the broker node a process's /readyz names, "?" when five tries 200 ms apart
// get no answer that names one (a /readyz that times out once is not a wrong node).
func nodeOf(c *consumer) string {
	for try := 0; try < 5; try++ {
		var body struct {
			Node string `json:"consumer_node"`
		}
		if json.Unmarshal([]byte(c.readyBody()), &body) == nil && body.Node != "" {
			return body.Node
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "?"
}

// readExpected reads the stock that produce --expect wrote.
func readExpected(t *testing.T, path string) map[domain.StockKey]int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("produce wrote no expected stock: %v", err)
	}
	var rows []struct {
		WarehouseID uuid.UUID `json:"warehouse_id"`
		ProductID   uuid.UUID `json:"product_id"`
		Quantity    int64     `json:"quantity"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	stock := make(map[domain.StockKey]int64, len(rows))
	for _, r := range rows {
		stock[domain.StockKey{Warehouse: domain.WarehouseID(r.WarehouseID), Product: domain.ProductID(r.ProductID)}] = r.Quantity
	}
	return stock
}

// grepFile returns how many lines of the file contain word, and the last of them.
func grepFile(path, word string) (n int, last string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, word) {
			n, last = n+1, line
		}
	}
	return n, last
}
