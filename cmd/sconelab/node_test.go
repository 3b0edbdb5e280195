package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/daemontest"
	"github.com/scone-project/scone/internal/liveview"
)

// nodeProc is one "bookstore node" process of TestNodeProcesses.
type nodeProc struct {
	name, listen, admin, gossip string
	cmd                         *exec.Cmd
	log                         *os.File
}

// metric returns the value of a metric (its first sample) on the node's
// /metrics, or -1.
func (p *nodeProc) metric(name string) float64 {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestNodeProcesses runs four "bookstore node" processes (the cluster
// example's daemon, built as a user would) with k=2 on
// 127.0.0.1, and shopper sessions without SCONE code against them while one
// node is killed (SIGKILL), and later another is paused (SIGSTOP) and
// resumed, and the key is rotated (scone keys, SIGHUP): every reply and
// every final cart must agree with the sessions' models.
func TestNodeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	sconeBin, bin := buildDefault(t)
	keys := filepath.Join(dir, "keys.json")
	if out, err := exec.Command(sconeBin, "keygen", "--out", keys, "--id", "1").CombinedOutput(); err != nil {
		t.Fatalf("scone keygen: %v\n%s", err, out)
	}
	var procs []*nodeProc
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Kill()
			p.cmd.Wait()
			p.log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(p.log.Name())
				t.Logf("log of %s:\n%s", p.name, b)
			}
		}
	})
	for i := range 4 {
		p := &nodeProc{name: fmt.Sprintf("node-%d", i+1), listen: daemontest.Addr(t), admin: daemontest.Addr(t), gossip: daemontest.Addr(t)}
		args := []string{"node", "--name=" + p.name, "--listen=" + p.listen, "--peer-listen=127.0.0.1:0",
			"--gossip=" + p.gossip, "--admin=" + p.admin, "--keys=" + keys, "--k=2", "--log-level=debug",
			"--identity-header=scone-client"} // sessions name themselves on 127.0.0.1
		if i > 0 {
			args = append(args, "--join="+procs[0].gossip)
		}
		p.cmd = exec.Command(bin, args...)
		var err error
		if p.log, err = os.Create(filepath.Join(dir, p.name+".log")); err != nil {
			t.Fatal(err)
		}
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		daemontest.WaitFor(t, "http://"+p.admin+"/metrics")
	}
	waitMembers := func(live []*nodeProc) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, p := range live {
			for p.metric("scone_cluster_members") != float64(len(live)) || p.metric("scone_cluster_repair_backlog") > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s sees %v members, want %d", p.name, p.metric("scone_cluster_members"), len(live))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	waitMembers(procs)

	var addrs []string
	names := map[string]string{}
	for _, p := range procs {
		addrs = append(addrs, p.listen)
		names[p.listen] = p.name
	}
	conn, err := shop.DialReplicas(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := &grpcShopper{gw: pb.NewGatewayClient(conn), names: names}
	sessions := make([]*session, 6)
	for i := range sessions {
		sessions[i] = &session{id: i + 1, rng: rand.New(rand.NewPCG(7, uint64(i+1))), model: newCartModel(), dict: scone.NewDict(), timeout: time.Second}
	}
	ctxOf := func(s *session) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "scone-client", fmt.Sprintf("shopper-%d", s.id))
	}
	steps := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Go(func() {
				for range n {
					if s.pending != nil && !s.resolve(ctxOf(s), gw) {
						return
					}
					s.do(ctxOf(s), gw, s.model.nextOp(s.rng))
				}
			})
		}
		wg.Wait()
	}
	steps(10)

	// SIGKILL: the node's copies are gone; the others serve its sessions
	// from their copies once they notice, and repair copies them again.
	procs[1].cmd.Process.Kill()
	procs[1].cmd.Wait()
	steps(10)
	live := []*nodeProc{procs[0], procs[2], procs[3]}
	waitMembers(live)
	// Repair: every session's record is on k=2 of the three live nodes.
	copies := func() float64 {
		var n float64
		for _, p := range live {
			n += p.metric("scone_cluster_records")
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); copies() != float64(2*len(sessions)); {
		if time.Now().After(deadline) {
			t.Fatalf("the live nodes hold %v copies of %d sessions' records, want %d", copies(), len(sessions), 2*len(sessions))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// SIGSTOP: calls through the paused node hang until the client gives
	// up; the others go on without it; when it resumes, its late writes
	// must not overwrite what the others wrote meanwhile.
	//
	// The node resumes after 3 s (long enough to be declared dead), while
	// the sessions go on, not after them: a stopped process's connections
	// stay ready, so the client's round robin keeps sending it a share of
	// the calls for as long as it is stopped. Were it stopped until the
	// sessions' steps ended, a session could spend its whole 10 s budget
	// for reading its cart on calls that happened to go to the stopped
	// node, which measures the client's balancing, not the cluster. Any
	// call the live nodes fail is still a failure.
	procs[2].cmd.Process.Signal(syscall.SIGSTOP)
	resumed := make(chan struct{})
	time.AfterFunc(3*time.Second, func() {
		procs[2].cmd.Process.Signal(syscall.SIGCONT)
		close(resumed)
	})
	steps(8)
	<-resumed
	waitMembers(live)
	steps(5)

	// A key rotation while the sessions go on: add, SIGHUP, promote,
	// SIGHUP. Records sealed with the first key are re-sealed with the new
	// one as they are served.
	var promoted uint32
	for _, step := range [][]string{{"add"}, {"promote", "--id", ""}} {
		if step[0] == "promote" { // the key just added: keygen picks random IDs
			ring, err := scone.ReadKeyFile(keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ring.Keys() {
				promoted = max(promoted, k.ID)
			}
			step[2] = fmt.Sprint(promoted)
		}
		if out, err := exec.Command(sconeBin, append(append([]string{"keys"}, step...), "--file", keys)...).CombinedOutput(); err != nil {
			t.Fatalf("scone keys %v: %v\n%s", step, err, out)
		}
		for _, p := range live {
			p.cmd.Process.Signal(syscall.SIGHUP)
		}
		steps(5)
	}
	for _, s := range sessions {
		s.finalCheck(ctxOf(s), gw)
	}
	for _, p := range live {
		reloaded := regexp.MustCompile(fmt.Sprintf(`key file reloaded.* primary=%d\b`, promoted))
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if b, _ := os.ReadFile(p.log.Name()); reloaded.Match(b) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s did not log reloading the key file with primary %d", p.name, promoted)
				break
			}
		}
	}
	var calls, unknown int64
	for _, s := range sessions {
		calls += s.calls.Load()
		unknown += s.unknown
		for _, p := range s.problems {
			t.Errorf("session %d: %s", s.id, p)
		}
	}
	t.Logf("%d calls, %d of unknown outcome (through the killed or paused node)", calls, unknown)
	daemontest.Scrape(t, procs[0].admin, "scone_cluster_members", "scone_cluster_replication_seconds",
		"scone_cluster_repair_backlog", "scone_cluster_records", "scone_cluster_writes_total",
		"scone_hook_requests_total", "scone_hook_seconds", "process_cpu_seconds_total")
	// The live view of a node: the members it sees and the records it holds.
	var snap liveview.Snapshot
	resp, err := http.Get("http://" + procs[0].admin + "/debug/scone/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil || len(snap.Groups) != 1 || len(snap.Groups[0].Members) != len(live) || len(snap.Sessions) == 0 {
		t.Errorf("/debug/scone/snapshot of node-1: %+v, %v", snap, err)
	}
	for _, r := range snap.Sessions {
		if len(r.Holders) != 2 || len(r.SCONEs) == 0 {
			t.Errorf("/debug/scone/ shows record %s on %v with %v", r.ID, r.Holders, r.SCONEs)
		}
	}
	if page := daemontest.Get(t, "http://"+procs[0].admin+"/debug/scone/"); !strings.Contains(page, "<title>SCONE") {
		t.Errorf("/debug/scone/ does not serve the page:\n%.300s", page)
	}
}
