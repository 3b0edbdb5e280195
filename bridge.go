package scone

import (
	"context"
	"time"

	"github.com/scone-project/scone/internal/bridge"
)

// The operations the module's hooks need and users do not (see
// internal/bridge).
func init() {
	bridge.Peek = peek
	bridge.Seal = func(s *Sealer, dst []byte, sc *SCONE) ([]byte, error) { return s.seal(dst, sc) }
	bridge.Open = func(s *Sealer, ctx context.Context, sc *SCONE, token []byte, want Expect) (uint32, bool, error) {
		o, err := s.open(ctx, sc, token, want)
		return o.keyID, o.stale, err
	}
	bridge.Now = func(s *Sealer) time.Time { return s.cfg.clock() }
	bridge.TTL = func(s *Sealer) time.Duration { return s.cfg.ttl }
	bridge.StateFlags = (*State).flags
	bridge.Freeze = (*State).freeze
	bridge.DictApply = (*Dict).apply
	bridge.DictApplyIfBase = (*Dict).applyIfBase
}
