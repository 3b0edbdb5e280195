package chaos

import (
	"sync"
	"time"
)

// Kind is the kind of a session's operation on its cart.
type Kind int

// The kinds of operations, those of the bookstore gateway.
const (
	Add Kind = iota
	Remove
	Get
	Checkout
)

var kindNames = [...]string{"add", "remove", "get", "checkout"}

// String returns the kind's name.
func (k Kind) String() string { return kindNames[k] }

// Input is one operation a session asks for.
type Input struct {
	Kind Kind
	ISBN string // Add, Remove
	Qty  int32  // Add, Remove
}

// Outcome is what a session learnt of an operation.
type Outcome int

// The outcomes.
const (
	// OK: acknowledged; the reply is in the Op.
	OK Outcome = iota
	// Refused: failed with the shop's own refusal (FailedPrecondition
	// without a SCONE code): the model must predict it, and nothing changed.
	Refused
	// Failed: failed in a way that promises nothing changed (a SCONE that
	// did not open, a conflict, or in client mode any failure, since the
	// client kept its SCONEs).
	Failed
	// Unknown: the call timed out or its connection died; it may or may
	// not have taken effect, at any time after its invocation.
	Unknown
)

var outcomeNames = [...]string{"ok", "refused", "failed", "unknown"}

// String returns the outcome's name.
func (o Outcome) String() string { return outcomeNames[o] }

// Op is one recorded operation.
type Op struct {
	Session int
	Input   Input
	// Invoke and Return are offsets from the History's start, on the
	// monotonic clock.
	Invoke, Return time.Duration
	Outcome        Outcome
	// Items is the cart the reply shows (for Checkout, the order's lines),
	// Reserved the copies the inventory holds for it, Changes the
	// gateway's count of changes; all for OK only.
	Items    map[string]int32
	Reserved int32
	Changes  uint64
	// Err is the error of a failed call, for the report.
	Err string
	// NoReply is set when the call timed out or its connection died: the
	// client saw no reply. Its Outcome says what the mode promises of it
	// (Unknown, or Failed where the client holds the state).
	NoReply bool
	// Served names the process that served the call, if known.
	Served string
	// Versions are the versions of the SCONEs the session holds after an
	// OK call, by service (client mode only: other holders are not seen).
	Versions map[string]uint64
	// Expires is the expiry of the SCONE the serving process had to open,
	// as an offset from the History's start (History.Offset), if
	// HasExpiry; Skew is that process's clock skew, the same all through
	// the call (SkewKnown).
	Expires   time.Duration
	HasExpiry bool
	// KeyID is the key that sealed that SCONE (if HasExpiry).
	KeyID     uint32
	Skew      time.Duration
	SkewKnown bool
}

// History records the operations of concurrent sessions. It is safe for
// concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts a history now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns the offset of now from the start, for Op.Invoke and Return.
func (h *History) Now() time.Duration { return time.Since(h.start) }

// Offset returns the offset of a wall-clock time from the start.
func (h *History) Offset(t time.Time) time.Duration { return t.Round(0).Sub(h.start.Round(0)) }

// Add records an operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Start returns when the history started.
func (h *History) Start() time.Time { return h.start }
