package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/scone-project/scone/circulate"
)

// circulateRelays is the shape of the circulation contender: three relays
// (as in sconelab demo --mode=circulate), two copies of each session's SCONE.
const circulateRelays = 3

// startCirculateRelays serves the Sessions service with the SCONE hook
// behind three relays that pass the SCONEs among them (package circulate);
// callers spread over the relays and name themselves in the identity
// header.
func startCirculateRelays(ctx context.Context) (*running, error) {
	r := &running{session: identitySession}
	upstream, err := startSconeServer(r, true)
	if err != nil {
		return fail(r, err)
	}
	var stores []*circulate.Store
	var seeds []string
	for i := range circulateRelays {
		peerLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(r, err)
		}
		cfg := circulate.DefaultConfig()
		cfg.Name = fmt.Sprintf("relay-%d", i+1)
		cfg.GossipAddr, cfg.PeerAddr, cfg.Seeds = "127.0.0.1:0", peerLis.Addr().String(), seeds
		st, err := circulate.New(cfg)
		if err != nil {
			peerLis.Close()
			return fail(r, fmt.Errorf("relay %s: %w", cfg.Name, err))
		}
		r.onClose(func() { st.Close() })
		go st.ServePeer(peerLis)
		stores = append(stores, st)
		seeds = append(seeds, st.GossipAddr())
		if err := serveRelay(r, upstream, st); err != nil {
			return fail(r, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, st := range stores {
		for len(st.Members()) != circulateRelays {
			if ctx.Err() != nil {
				return fail(r, ctx.Err())
			}
			if time.Now().After(deadline) {
				return fail(r, fmt.Errorf("relay %s sees %d of %d relays after 30s", st.Name(), len(st.Members()), circulateRelays))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r, nil
}
