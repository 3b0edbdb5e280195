package gossip

import (
	"fmt"
	"io"
	"log"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// patience bounds every wait of these tests: far longer than any of them
// needs, so that only a transport that does not work runs out of it.
const patience = 30 * time.Second

func newBlocking(t *testing.T) *BlockingTransport {
	t.Helper()
	bt, err := NewBlockingTransport("127.0.0.1:0", log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bt.Shutdown() })
	return bt
}

// nextPacket returns the payload and sender of the next packet bt passes on.
func nextPacket(t *testing.T, bt *BlockingTransport) (string, string) {
	t.Helper()
	select {
	case p := <-bt.PacketCh():
		return string(p.Buf), p.From.String()
	case <-time.After(patience):
		t.Fatal("no packet passed on")
		return "", ""
	}
}

// nextStream returns the first bytes of the next stream bt passes on.
func nextStream(t *testing.T, bt *BlockingTransport, n int) string {
	t.Helper()
	select {
	case c := <-bt.StreamCh():
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(patience))
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("reading a stream passed on: %v", err)
		}
		return string(b)
	case <-time.After(patience):
		t.Fatal("no stream passed on")
		return ""
	}
}

func TestBlockingTransportAddresses(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"no-port", "localhost:0", "0.0.0.0:0", "[::]:0"} {
		if bt, err := NewBlockingTransport(addr, log.New(io.Discard, "", 0)); err == nil {
			bt.Shutdown()
			t.Errorf("NewBlockingTransport(%q) accepted", addr)
		}
	}
	bt := newBlocking(t)
	if err := bt.Block([]string{"127.0.0.1:2", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if got, want := bt.Blocked(), []string{"127.0.0.1:1", "127.0.0.1:2"}; !slices.Equal(got, want) {
		t.Fatalf("Blocked() = %v, want %v", got, want)
	}
	if err := bt.Block([]string{"127.0.0.1:3", "host:4"}); err == nil {
		t.Fatal("a host name was accepted")
	}
	if got := bt.Blocked(); len(got) != 2 {
		t.Fatalf("a refused Block changed the set to %v", got)
	}
	if err := bt.Block(nil); err != nil || len(bt.Blocked()) != 0 {
		t.Fatalf("healing: %v, %v blocked", err, bt.Blocked())
	}
}

func TestBlockingTransportPackets(t *testing.T) {
	t.Parallel()
	t.Run("out", func(t *testing.T) {
		t.Parallel()
		a, b := newBlocking(t), newBlocking(t)
		a.Block([]string{b.Addr()})
		if _, err := a.WriteTo([]byte("blocked"), b.Addr()); err != nil {
			t.Fatalf("a dropped packet is an error: %v", err)
		}
		a.Block(nil)
		if _, err := a.WriteToAddress([]byte("passed"), memberlist.Address{Addr: b.Addr(), Name: "b"}); err != nil {
			t.Fatal(err)
		}
		if got, from := nextPacket(t, b); got != "passed" || from != a.Addr() {
			t.Fatalf("b got %q from %s first, want %q from %s", got, from, "passed", a.Addr())
		}
	})
	t.Run("in", func(t *testing.T) {
		t.Parallel()
		a, b, c := newBlocking(t), newBlocking(t), newBlocking(t)
		b.Block([]string{a.Addr()})
		for range 3 {
			if _, err := a.WriteTo([]byte("blocked"), b.Addr()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.WriteTo([]byte("passed"), b.Addr()); err != nil {
			t.Fatal(err)
		}
		if got, from := nextPacket(t, b); got != "passed" || from != c.Addr() {
			t.Fatalf("b got %q from %s first, want %q from %s", got, from, "passed", c.Addr())
		}
	})
}

func TestBlockingTransportStreams(t *testing.T) {
	t.Parallel()
	a, b, c := newBlocking(t), newBlocking(t), newBlocking(t)

	a.Block([]string{b.Addr()})
	if conn, err := a.DialTimeout(b.Addr(), patience); err == nil {
		conn.Close()
		t.Fatal("a dialed b, which it blocks")
	}

	a.Block(nil)
	b.Block([]string{a.Addr()})
	conn, err := a.DialTimeout(b.Addr(), patience)
	if err != nil {
		t.Fatal(err) // TCP connects; b closes the stream once it reads who dialed
	}
	conn.SetReadDeadline(time.Now().Add(patience))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("b sent on a stream from a, which it blocks")
	} else if conn.Close(); isTimeout(err) {
		t.Fatal("b kept a stream from a, which it blocks")
	}
	conn, err = c.DialAddressTimeout(memberlist.Address{Addr: b.Addr(), Name: "b"}, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "from c")
	if got := nextStream(t, b, 6); got != "from c" {
		t.Fatalf("b passed on a stream that starts %q, want c's", got)
	}

	b.Block(nil)
	conn, err = a.DialTimeout(b.Addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "from a")
	if got := nextStream(t, b, 6); got != "from a" {
		t.Fatalf("b passed on a stream that starts %q, want a's", got)
	}
}

func isTimeout(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}

// member starts a memberlist member on a BlockingTransport, probing
// often so that the tests see failures soon.
func member(t *testing.T, name string, seeds ...string) (*memberlist.Memberlist, *BlockingTransport) {
	t.Helper()
	bt := newBlocking(t)
	mc := memberlist.DefaultLocalConfig()
	mc.Transport = bt
	mc.ProbeInterval, mc.ProbeTimeout = 100*time.Millisecond, 50*time.Millisecond
	mc.SuspicionMult, mc.GossipInterval, mc.PushPullInterval = 2, 50*time.Millisecond, time.Second
	mc.TCPTimeout, mc.DeadNodeReclaimTime = time.Second, time.Second
	mc.Name, mc.LogOutput = name, io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	if len(seeds) > 0 {
		if _, err := ml.Join(seeds); err != nil {
			t.Fatal(err)
		}
	}
	if got := ml.LocalNode().Address(); got != bt.Addr() {
		t.Fatalf("%s gossips at %s, its transport at %s", name, got, bt.Addr())
	}
	return ml, bt
}

// waitMembers waits until each of mls sees want live members (suspects
// included: a member is gone once declared dead).
func waitMembers(t *testing.T, want int, mls ...*memberlist.Memberlist) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for _, ml := range mls {
		for ml.NumMembers() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d members, want %d", ml.LocalNode().Name, ml.NumMembers(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestBlockingTransportPartitionsMemberlist cuts one of three members off
// from the other two, both ways: each side declares the other dead, the
// cut-off member cannot join again while cut off, and it can once healed.
func TestBlockingTransportPartitionsMemberlist(t *testing.T) {
	t.Parallel()
	a, ta := member(t, "a")
	b, tb := member(t, "b", a.LocalNode().Address())
	c, tc := member(t, "c", a.LocalNode().Address())
	waitMembers(t, 3, a, b, c)

	tc.Block([]string{ta.Addr(), tb.Addr()})
	ta.Block([]string{tc.Addr()})
	tb.Block([]string{tc.Addr()})
	waitMembers(t, 2, a, b)
	waitMembers(t, 1, c)
	if _, err := c.Join([]string{ta.Addr()}); err == nil {
		t.Fatal("c joined a while cut off")
	}

	for _, bt := range []*BlockingTransport{ta, tb, tc} {
		bt.Block(nil)
	}
	// Memberlist does not probe members it declared dead: c joins again,
	// as cluster and circulate do after losing members.
	if _, err := c.Join([]string{ta.Addr()}); err != nil {
		t.Fatalf("c could not join a once healed: %v", err)
	}
	waitMembers(t, 3, a, b, c)
}

// TestBlockingTransportOneSided has only a block b: a drops what b sends
// and sends b nothing, so each declares the other dead, and b cannot join
// a (a closes b's streams) until a heals.
func TestBlockingTransportOneSided(t *testing.T) {
	t.Parallel()
	a, ta := member(t, "a")
	b, tb := member(t, "b", a.LocalNode().Address())
	waitMembers(t, 2, a, b)

	ta.Block([]string{tb.Addr()})
	waitMembers(t, 1, a, b)
	if _, err := b.Join([]string{ta.Addr()}); err == nil {
		t.Fatal("b joined a, which blocks it")
	}

	ta.Block(nil)
	if _, err := b.Join([]string{ta.Addr()}); err != nil {
		t.Fatalf("b could not join a once healed: %v", err)
	}
	waitMembers(t, 2, a, b)
}
