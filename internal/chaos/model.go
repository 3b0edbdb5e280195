package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// cartState is the model's state: a session's cart and its count of
// changes. Items is canonical ("isbn=q,isbn=q", sorted), so states compare
// with ==.
type cartState struct {
	Items   string
	Changes uint64
}

func encodeItems(m map[string]int32) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	return strings.Join(parts, ",")
}

func decodeItems(s string) map[string]int32 {
	m := map[string]int32{}
	if s == "" {
		return m
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, _ := strconv.Atoi(v)
		m[k] = int32(n)
	}
	return m
}

// Cart is the sequential specification of one session's cart in the
// bookstore: what every operation must return from a given state.
type Cart struct {
	// MaxPerTitle is the shop's limit of copies of one title in a cart.
	MaxPerTitle int32
}

// refused reports whether the shop must refuse in to a cart holding items.
func (c Cart) refused(items map[string]int32, in Input) bool {
	switch in.Kind {
	case Add:
		return items[in.ISBN]+in.Qty > c.MaxPerTitle
	case Remove:
		return items[in.ISBN] < in.Qty
	case Checkout:
		return len(items) == 0
	}
	return false
}

// apply returns the state after in (not refused).
func apply(s cartState, in Input) cartState {
	items := decodeItems(s.Items)
	switch in.Kind {
	case Add:
		items[in.ISBN] += in.Qty
	case Remove:
		if items[in.ISBN] -= in.Qty; items[in.ISBN] == 0 {
			delete(items, in.ISBN)
		}
	case Checkout:
		clear(items)
	case Get:
		return s
	}
	return cartState{encodeItems(items), s.Changes + 1}
}

// step is the model's step function: the states a session's cart may be
// in after an operation with its recorded outcome, none if the outcome is
// impossible. A change of unknown outcome may or may not have taken effect.
func (c Cart) step(state, input, output any) []any {
	s, in, out := state.(cartState), input.(Input), output.(Op)
	items := decodeItems(s.Items)
	refused := c.refused(items, in)
	switch out.Outcome {
	case Unknown:
		if refused || in.Kind == Get {
			return []any{s}
		}
		return []any{s, apply(s, in)}
	case Refused:
		if refused {
			return []any{s}
		}
		return nil
	case Failed:
		return []any{s}
	}
	if refused {
		return nil
	}
	next := apply(s, in)
	if in.Kind == Checkout {
		if encodeItems(out.Items) == s.Items && out.Changes == next.Changes {
			return []any{next}
		}
		return nil
	}
	var units int32
	for _, q := range out.Items {
		units += q
	}
	if encodeItems(out.Items) == next.Items && out.Changes == next.Changes && out.Reserved == units {
		return []any{next}
	}
	return nil
}

// Model returns the porcupine model of a session's cart. Histories are
// partitioned by session: each session's cart is its own object.
func (c Cart) Model() porcupine.Model { return c.from(cartState{}) }

// from returns the model of a cart that starts in state init.
func (c Cart) from(init cartState) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: bySession,
		Init:      func() []any { return []any{init} },
		Step:      c.step,
		DescribeOperation: func(input, output any) string {
			in, out := input.(Input), output.(Op)
			var b strings.Builder
			b.WriteString(in.Kind.String())
			if in.Kind == Add || in.Kind == Remove {
				fmt.Fprintf(&b, "(%s×%d)", in.ISBN, in.Qty)
			}
			switch out.Outcome {
			case OK:
				fmt.Fprintf(&b, " → {%s} changes=%d reserved=%d", encodeItems(out.Items), out.Changes, out.Reserved)
			default:
				fmt.Fprintf(&b, " → %s %s", out.Outcome, out.Err)
			}
			if out.Served != "" {
				b.WriteString(" via " + out.Served)
			}
			return b.String()
		},
		DescribeState: func(state any) string {
			s := state.(cartState)
			return fmt.Sprintf("{%s} changes=%d", s.Items, s.Changes)
		},
	}
	return nm.ToModel()
}

func bySession(h []porcupine.Operation) [][]porcupine.Operation {
	var ids []int
	by := map[int][]porcupine.Operation{}
	for _, op := range h {
		if _, ok := by[op.ClientId]; !ok {
			ids = append(ids, op.ClientId)
		}
		by[op.ClientId] = append(by[op.ClientId], op)
	}
	var out [][]porcupine.Operation
	for _, id := range ids {
		out = append(out, by[id])
	}
	return out
}

// Operations turns recorded ops into porcupine's. Failed operations
// promise no effect and are left out, and so are reads of unknown
// outcome, which constrain nothing.
//
// A change of unknown outcome may take effect at any time after its
// invocation, or never, but not later than settle after it: settle bounds
// how long a request can be held on its way (a partition, a paused
// process) plus how long a server may then work on it (its deadline). Its
// return is therefore its invocation plus settle; porcupine may place it
// anywhere in between, or not at all (as a change that did not happen,
// since the model lets it have no effect).
func Operations(ops []Op, settle time.Duration) []porcupine.Operation {
	sorted := slices.Clone(ops)
	slices.SortStableFunc(sorted, func(a, b Op) int {
		if a.Session != b.Session {
			return a.Session - b.Session
		}
		return cmp.Compare(a.Invoke, b.Invoke)
	})
	var out []porcupine.Operation
	for _, op := range sorted {
		if op.Outcome == Failed || op.Outcome == Unknown && op.Input.Kind == Get {
			continue
		}
		ret := int64(op.Return)
		if op.Outcome == Unknown {
			ret = int64(max(op.Return, op.Invoke+settle))
		}
		out = append(out, porcupine.Operation{ClientId: op.Session, Input: op.Input, Call: int64(op.Invoke), Output: op, Return: ret})
	}
	return out
}

// segments cuts one session's operations (sorted by invocation, as
// Operations returns them) at every acknowledged operation that overlaps no
// other: every linearization puts it after all that came before and before
// all that came after, and its reply shows the whole state (the cart and
// the count of changes), so the history is linearizable if and only if each
// segment is, from the state the previous segment's last operation showed.
// This keeps the search small over long histories; a segment is cut only
// once it holds minSegment operations, so that the checker is called a few
// hundred times, not once per operation. It returns the segments and their
// initial states.
func segments(ops []porcupine.Operation, minSegment int) ([][]porcupine.Operation, []cartState) {
	var segs [][]porcupine.Operation
	inits := []cartState{{}}
	start := 0
	maxReturn := int64(math.MinInt64)
	for i, op := range ops {
		pin := op.Output.(Op).Outcome == OK && maxReturn < op.Call && (i+1 == len(ops) || ops[i+1].Call > op.Return)
		maxReturn = max(maxReturn, op.Return)
		if !pin || i+1 == len(ops) || i+1-start < minSegment {
			continue
		}
		segs = append(segs, ops[start:i+1])
		out := op.Output.(Op)
		next := cartState{encodeItems(out.Items), out.Changes}
		if op.Input.(Input).Kind == Checkout {
			next.Items = ""
		}
		inits = append(inits, next)
		start = i + 1
	}
	segs = append(segs, ops[start:])
	return segs, inits
}
