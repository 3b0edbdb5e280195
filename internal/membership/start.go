package membership

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// gossiper says how to start the memberlist of one member of a group.
type gossiper struct {
	// Config is the memberlist configuration; Start sets its Name,
	// Delegate, Events and, without a Transport, its bind address.
	Config *memberlist.Config
	// Name names the member; Addr (host:port, port 0 for a free one) is
	// where it gossips unless Config has a Transport.
	Name, Addr string
	// Seeds are gossip addresses to join; none starts a group.
	Seeds []string
	// Logger receives memberlist's own lines, at debug level, unless
	// Config has a logger or log output.
	Logger   *slog.Logger
	Delegate memberlist.Delegate
	Events   memberlist.EventDelegate
}

// startGossip creates the member's memberlist and joins the seeds.
func startGossip(m gossiper) (*memberlist.Memberlist, error) {
	mc := m.Config
	mc.Name = m.Name
	if mc.Transport == nil {
		host, port, err := net.SplitHostPort(m.Addr)
		if err != nil {
			return nil, fmt.Errorf("gossip address %q: %v", m.Addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("gossip address %q: %v", m.Addr, err)
		}
		mc.BindAddr, mc.BindPort = host, p
	}
	if mc.Logger == nil && mc.LogOutput == nil {
		mc.Logger = slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug)
	}
	mc.Delegate, mc.Events = m.Delegate, m.Events
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("starting memberlist: %w", err)
	}
	if len(m.Seeds) > 0 {
		if _, err := ml.Join(m.Seeds); err != nil {
			ml.Shutdown()
			return nil, fmt.Errorf("joining %v: %w", m.Seeds, err)
		}
	}
	return ml, nil
}
