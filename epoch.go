package scone

import (
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
)

// Epochs are the revocation epochs of services. A Sealer given them
// (WithEpochs) stamps a service's current epoch into every SCONE it seals
// and refuses (CodeRevoked) to open a SCONE stamped with an older one, so
// raising a service's epoch (Revoke) revokes every SCONE sealed before,
// with no per-session state. Every server of a service must see the same
// epochs: deployments distribute them by configuration (Set). Reading them
// is lock-free; all methods are safe for concurrent use. The zero value
// holds every service at epoch 0.
type Epochs struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]uint64]
}

// epoch returns the current epoch of service.
func (e *Epochs) epoch(service string) uint64 {
	if m := e.m.Load(); m != nil {
		return (*m)[service]
	}
	return 0
}

// Set sets the epoch of service, for example to the value in the
// deployment's configuration. Epochs only grow: lowering one would bring
// revoked SCONEs back, so it is refused.
func (e *Epochs) Set(service string, epoch uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.Load()
	var cur uint64
	if old != nil {
		cur = (*old)[service]
	}
	if epoch < cur {
		return errCode(CodeInternal, "epoch of "+strconv.Quote(service)+" is "+
			strconv.FormatUint(cur, 10)+": epochs only grow")
	}
	e.setLocked(service, epoch)
	return nil
}

// setLocked installs a copy of the epochs with service at epoch; e.mu is held.
func (e *Epochs) setLocked(service string, epoch uint64) {
	old := e.m.Load()
	m := make(map[string]uint64, 1)
	if old != nil {
		maps.Copy(m, *old)
	}
	m[service] = epoch
	e.m.Store(&m)
}

// Revoke raises the epoch of service by one, revoking every SCONE of the
// service sealed so far, and returns the new epoch.
func (e *Epochs) Revoke(service string) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var cur uint64
	if m := e.m.Load(); m != nil {
		cur = (*m)[service]
	}
	if cur == math.MaxUint64 {
		return cur, errCode(CodeInternal, "epoch of "+strconv.Quote(service)+" is at its maximum")
	}
	e.setLocked(service, cur+1)
	return cur + 1, nil
}
