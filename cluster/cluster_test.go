package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func newSessions(n int) []*session {
	out := make([]*session, n)
	for i := range out {
		out[i] = newSession(fmt.Sprintf("client-%d", i))
	}
	return out
}

// run makes every session take steps through the live nodes in turn,
// retrying each until acknowledged.
func run(t *testing.T, c *testCluster, sessions []*session, steps int) {
	t.Helper()
	for range steps {
		for _, s := range sessions {
			s.stepUntil(t, c, 10*time.Second)
		}
	}
}

func TestClusterServesAnyNode(t *testing.T) {
	c := newTestCluster(t, 4, 2, nil)
	sessions := newSessions(6)
	run(t, c, sessions, 5)
	for _, s := range sessions {
		if got := c.copies(s.client); got != 2 {
			t.Errorf("client %s: %d copies, want 2", s.client, got)
		}
	}
	c.verify(t, sessions)
	// What a node says it holds (scone node's /debug/scone/).
	key := headerKey(sessions[0].client)
	owners := Owners(key, c.live(), 2)
	info, ok := c.node(owners[0]).node.Describe(key)
	if !ok || info.RV != 5 || info.Copies != 2 || len(info.Owners) != 2 || len(info.SCONEs) != 1 ||
		info.SCONEs[0].Service != "sconetest.Counter" || info.Bytes == 0 {
		t.Fatalf("Describe on an owner: %+v, %v", info, ok)
	}
	if held := c.node(owners[0]).node.Held(100); !slices.ContainsFunc(held, func(r RecordInfo) bool { return r.Key == key }) {
		t.Fatalf("Held on an owner lacks the record: %+v", held)
	}
	// A call that names no client runs without state and keeps nothing.
	out, _, err := c.call("node-0", "", "Add", "anonymous")
	if err != nil || out != "anonymous," {
		t.Fatalf("anonymous call: %q, %v", out, err)
	}
	total := 0
	for _, name := range c.live() {
		total += c.node(name).node.Records()
	}
	if total != 2*len(sessions) {
		t.Fatalf("%d records kept, want %d", total, 2*len(sessions))
	}
}

func TestClusterKillOne(t *testing.T) {
	c := newTestCluster(t, 4, 2, nil)
	sessions := newSessions(8)
	run(t, c, sessions, 3)
	victim := c.ownerOf(sessions[0].client, 2)
	c.kill(victim)
	run(t, c, sessions, 3)
	c.verify(t, sessions)
}

func TestClusterTwoKillsWithRepair(t *testing.T) {
	c := newTestCluster(t, 4, 2, nil)
	sessions := newSessions(8)
	run(t, c, sessions, 3)
	first := c.ownerOf(sessions[0].client, 2)
	c.kill(first)
	waitCopies(t, c, sessions, 2)
	// The second victim owns the first client's record now too: without
	// repair, its only other copy died with the first victim.
	second := c.ownerOf(sessions[0].client, 2)
	c.kill(second)
	c.verify(t, sessions)
	run(t, c, sessions, 2)
	c.verify(t, sessions)
}

// waitCopies waits until every session's record is on want live nodes.
func waitCopies(t *testing.T, c *testCluster, sessions []*session, want int) {
	t.Helper()
	c.eventually(10*time.Second, func() error {
		for _, s := range sessions {
			if got := c.copies(s.client); got != want {
				return fmt.Errorf("client %s: %d copies, want %d", s.client, got, want)
			}
		}
		return nil
	})
}

func TestClusterRepairRestoresK(t *testing.T) {
	for _, k := range []int{2, 3} {
		t.Run(fmt.Sprint("k=", k), func(t *testing.T) {
			c := newTestCluster(t, 4, k, nil)
			sessions := newSessions(12)
			run(t, c, sessions, 2)
			waitCopies(t, c, sessions, k)
			c.kill("node-1")
			waitCopies(t, c, sessions, k)
			// A node joins: copies move to it, never fewer than k on the way.
			// The watch samples the copies every 5 ms from before the join
			// until every record is on its new owners. copies reads the
			// nodes one after the other, not at one instant; that cannot
			// undercount a hand-over (the new owner takes the copy before
			// the old one drops it, and is read after it, in start order),
			// provided the joining node is counted from the moment it can
			// receive one (see testCluster.start).
			stop, done := make(chan struct{}), make(chan struct{})
			low := make(chan string, 1)
			go func() {
				defer close(done)
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					for _, s := range sessions {
						if got := c.copies(s.client); got < k {
							select {
							case low <- fmt.Sprintf("client %s had %d copies during the join", s.client, got):
							default:
							}
						}
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()
			c.start("node-4")
			c.waitMembers(4)
			waitCopies(t, c, sessions, k)
			c.eventually(5*time.Second, func() error {
				for _, s := range sessions {
					for _, o := range Owners(headerKey(s.client), c.live(), k) {
						if !c.node(o).node.Holds(headerKey(s.client)) {
							return fmt.Errorf("client %s: owner %s holds no copy", s.client, o)
						}
					}
				}
				return nil
			})
			close(stop)
			<-done
			select {
			case msg := <-low:
				t.Fatal(msg)
			default:
			}
			c.verify(t, sessions)
		})
	}
}

func TestClusterUnreachableFails(t *testing.T) {
	c := newTestCluster(t, 4, 2, nil)
	s := newSession("client-0")
	run(t, c, []*session{s}, 3)
	before := strings.Join(s.acked, ",") + ","
	// node-0 is cut off from the rest: before and after it notices, its
	// calls fail with Unavailable and change nothing.
	c.net.Isolate("node-0")
	i := 0
	c.eventually(15*time.Second, func() error {
		_, _, err := c.call("node-0", s.client, "Add", fmt.Sprint("lost-", i))
		i++
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call on an isolated node: %v, want Unavailable", err)
		}
		if len(c.node("node-0").node.Members()) != 1 {
			return fmt.Errorf("the isolated node never noticed it was alone")
		}
		return nil // it noticed: later calls fail before any write
	})
	_, _, err := c.call("node-0", s.client, "Add", "alone")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "fewer than the 2 copies") {
		t.Fatalf("call on a node alone: %v, want Unavailable for too few members", err)
	}
	c.net.Heal("node-0")
	c.waitMembers(4)
	for _, name := range c.live() {
		var state string
		c.eventually(5*time.Second, func() error { // connections come back
			var err error
			state, _, err = c.call(name, s.client, "Get", "")
			return err
		})
		if state != before {
			t.Fatalf("state through %s is %q, want %q unchanged", name, state, before)
		}
	}
}

// TestClusterPartitionHeals cuts a node off until both sides have declared
// each other dead and stopped gossiping to the dead, heals the network, and
// checks that the cluster becomes whole again (the nodes rejoin the members
// they lost) with the state intact.
func TestClusterPartitionHeals(t *testing.T) {
	c := newTestCluster(t, 4, 2, func(cfg *Config) {
		cfg.Memberlist.GossipToTheDeadTime = time.Nanosecond
		cfg.RejoinInterval = 200 * time.Millisecond
	})
	sessions := newSessions(4)
	run(t, c, sessions, 2)
	c.net.Isolate("node-0")
	c.eventually(10*time.Second, func() error {
		if got := len(c.node("node-0").node.Members()); got != 1 {
			return fmt.Errorf("node-0 sees %d members, want 1", got)
		}
		for _, name := range c.live()[1:] {
			if got := len(c.node(name).node.Members()); got != 3 {
				return fmt.Errorf("%s sees %d members, want 3", name, got)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // long after the last gossip about the deaths
	c.net.Heal("node-0")
	c.waitMembers(4)
	run(t, c, sessions, 2)
	c.verify(t, sessions)
	joins := 0.0
	for _, name := range c.live() {
		m := c.node(name).node.m
		joins += testutil.ToFloat64(m.rejoins.WithLabelValues("joined"))
		if lost := testutil.ToFloat64(m.lost); lost != 0 {
			t.Errorf("%s: scone_cluster_lost_members is %v once whole, want 0", name, lost)
		}
	}
	if joins == 0 {
		t.Fatal("the cluster became whole with no rejoin counted")
	}
}

func TestClusterDegrade(t *testing.T) {
	c := newTestCluster(t, 3, 2, func(cfg *Config) { cfg.Degrade = true })
	s := newSession("client-0")
	run(t, c, []*session{s}, 1)
	for _, name := range []string{"node-1", "node-2"} {
		c.kill(name)
	}
	c.waitMembers(1)
	// Within the lease of the members that left, writes of the records
	// they owned are refused (they may only be cut off): retry.
	var out string
	var header metadata.MD
	c.eventually(5*time.Second, func() error {
		var err error
		out, header, err = c.call("node-0", s.client, "Add", "alone")
		if err != nil && !strings.Contains(err.Error(), "left the group a moment ago") {
			t.Fatalf("degraded call: %v", err)
		}
		return err
	})
	if got := header.Get(CopiesHeader); len(got) != 1 || got[0] != "1/2" {
		t.Fatalf("header %s = %v, want 1/2", CopiesHeader, got)
	}
	if !strings.HasSuffix(out, "alone,") {
		t.Fatalf("degraded call returned %q", out)
	}
}

func TestClusterPerServiceK(t *testing.T) {
	c := newTestCluster(t, 4, 1, func(cfg *Config) {
		cfg.KFor = func(service string) int {
			if service == "sconetest.Counter" {
				return 3
			}
			return 0 // Config.K
		}
	})
	const client = "client-0"
	if _, _, err := c.call("node-0", client, "sconetest.Other/Add", "a"); err != nil {
		t.Fatal(err)
	}
	if got := c.copies(client); got != 1 {
		t.Fatalf("after a service with k=1: %d copies, want 1", got)
	}
	s := newSession(client)
	run(t, c, []*session{s}, 2)
	if got := c.copies(client); got != 3 {
		t.Fatalf("after a service with k=3: %d copies, want 3", got)
	}
	// The record now holds the k=3 service's state: a write by the k=1
	// service keeps its three copies.
	if _, _, err := c.call("node-1", client, "sconetest.Other/Add", "b"); err != nil {
		t.Fatal(err)
	}
	if got := c.copies(client); got != 3 {
		t.Fatalf("after the k=1 service again: %d copies, want 3", got)
	}
	c.verify(t, []*session{s})
}

// TestClusterZombie holds a call on a node between reading the state and
// writing it, cuts the node off, lets the client go on elsewhere, heals the
// node and releases the call: its write, made from an old version, must
// fail and change nothing.
func TestClusterZombie(t *testing.T) {
	c := newTestCluster(t, 4, 2, nil)
	s := newSession("client-0")
	run(t, c, []*session{s}, 3)
	zombie := c.ownerOf(s.client, 2)
	held, release := make(chan struct{}), make(chan struct{})
	c.node(zombie).ctr.gate = func(op string) {
		if op == "zombie" {
			close(held)
			<-release
		}
	}
	result := make(chan error, 1)
	go func() {
		_, _, err := c.call(zombie, s.client, "Add", "zombie")
		result <- err
	}()
	<-held
	c.net.Isolate(zombie)
	var others []string
	for _, name := range c.live() {
		if name != zombie {
			others = append(others, name)
		}
	}
	// The client goes on through the other nodes (once they see the zombie
	// gone, the record has two copies without it).
	for range 3 {
		c.eventually(10*time.Second, func() error {
			if !s.step(t, c, others[s.next%len(others)]) {
				return fmt.Errorf("no other node served the client")
			}
			return nil
		})
	}
	c.net.Heal(zombie)
	c.waitMembers(4)
	close(release)
	err := <-result
	if code := status.Code(err); code != codes.Aborted && code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("the zombie's write: %v, want it refused", err)
	}
	s.maybe["zombie"] = true
	c.verify(t, []*session{s})
	for _, name := range c.live() {
		var state string
		c.eventually(5*time.Second, func() error { // connections come back
			var err error
			state, _, err = c.call(name, s.client, "Get", "")
			return err
		})
		if strings.Contains(state, "zombie") {
			t.Fatalf("the zombie's write is in the state through %s: %q", name, state)
		}
		s.check(t, state)
	}
}

// TestClusterConflict serves one client on two nodes at once: one write
// wins, the other fails with Aborted, and nothing acknowledged is lost.
//
// The peer timeout is not what it tests: with the harness's 500 ms, a
// loaded machine (two race-enabled suites on 2 CPUs) could make the
// loser's undo miss it, and the loser then rightly answered in_doubt (an
// owner did not confirm taking its write back), not Aborted. Timeouts
// have their own tests (TestWriteHeldInDoubt, the partition tests).
func TestClusterConflict(t *testing.T) {
	c := newTestCluster(t, 4, 2, func(cfg *Config) { cfg.Timeout = 5 * time.Second })
	s := newSession("client-0")
	run(t, c, []*session{s}, 1)
	held := make(chan struct{}, 2)
	release := make(chan struct{})
	for _, name := range []string{"node-0", "node-1"} {
		c.node(name).ctr.gate = func(op string) {
			if strings.HasPrefix(op, "race") {
				held <- struct{}{}
				<-release
			}
		}
	}
	errs := make(chan error, 2)
	for i, name := range []string{"node-0", "node-1"} {
		go func() {
			_, _, err := c.call(name, s.client, "Add", fmt.Sprint("race-", i))
			errs <- err
		}()
	}
	<-held
	<-held
	close(release)
	e1, e2 := <-errs, <-errs
	won := 0
	for _, err := range []error{e1, e2} {
		switch status.Code(err) {
		case codes.OK:
			won++
		case codes.Aborted:
		default:
			t.Fatalf("racing call: %v, want OK or Aborted", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racing calls won, want exactly 1 (%v, %v)", won, e1, e2)
	}
	state, _, err := c.call("node-2", s.client, "Get", "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(state, "race") != 1 {
		t.Fatalf("state %q, want exactly one racing write", state)
	}
}
