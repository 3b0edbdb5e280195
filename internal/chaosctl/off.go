//go:build !sconechaos

package chaosctl

import (
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// Enabled reports whether this build has the fault hooks: false, as in
// every build without the sconechaos tag.
const Enabled = false

// Control is what sconelab chaos can change in a running process: nothing,
// in this build.
type Control struct{}

// Start returns nil: this build serves no fault control, whatever Env says.
func Start(*slog.Logger) (*Control, error) { return nil, nil }

// Now returns time.Now.
func (*Control) Now() func() time.Time { return time.Now }

// Memberlist returns nil: the member's default memberlist configuration.
func (*Control) Memberlist(string) (*memberlist.Config, error) { return nil, nil }
