package scone

import (
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
)

// EpochSource gives the current revocation epoch of a service. A Sealer
// stamps it into every SCONE it seals and refuses (CodeRevoked) to open a
// SCONE stamped with an older epoch, so raising a service's epoch revokes
// every SCONE sealed before, with no per-session state. Implementations must
// be safe for concurrent use and fast: Epoch is called on every seal and
// open.
type EpochSource interface {
	Epoch(service string) uint64
}

// Epochs is an in-memory EpochSource. Every server of a service must see
// the same epochs; deployments distribute them by configuration (or a shared
// store implementing EpochSource).
type Epochs struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]uint64]
}

// NewEpochs returns an Epochs where every service is at epoch 0.
func NewEpochs() *Epochs { return &Epochs{} }

// Epoch returns the current epoch of service.
func (e *Epochs) Epoch(service string) uint64 {
	if m := e.m.Load(); m != nil {
		return (*m)[service]
	}
	return 0
}

// Set sets the epoch of service. Epochs only grow: lowering one would bring
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
