package gossip

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. A
// probe memberlist sent just before Shutdown is waited for by its own
// timer (the probe interval, scaled up by memberlist's awareness of a
// troubled network), which Shutdown does not stop: it ends by itself,
// later than goleak's retries on a loaded machine. Every other goroutine
// of a memberlist left running would still be caught.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
