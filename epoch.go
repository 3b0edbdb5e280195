package scone

import (
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
		return errorf(CodeInternal, "epoch of "+strconv.Quote(service)+" is "+
			strconv.FormatUint(cur, 10)+": epochs only grow")
	}
	m := make(map[string]uint64, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[service] = epoch
	e.m.Store(&m)
	return nil
}

// Revoke raises the epoch of service by one, revoking every SCONE of the
// service sealed so far, and returns the new epoch.
func (e *Epochs) Revoke(service string) uint64 {
	for {
		next := e.Epoch(service) + 1
		if e.Set(service, next) == nil {
			return next
		}
	}
}
