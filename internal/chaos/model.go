package chaos

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

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

// step is the model's step function.
func (c Cart) step(state, input, output any) (bool, any) {
	s, in, out := state.(cartState), input.(Input), output.(Op)
	items := decodeItems(s.Items)
	refused := c.refused(items, in)
	switch out.Outcome {
	case Unknown:
		if refused {
			return true, s
		}
		return true, apply(s, in)
	case Refused:
		return refused, s
	case Failed:
		return true, s
	}
	if refused {
		return false, s
	}
	next := apply(s, in)
	if in.Kind == Checkout {
		return encodeItems(out.Items) == s.Items && out.Changes == next.Changes, next
	}
	var units int32
	for _, q := range out.Items {
		units += q
	}
	return encodeItems(out.Items) == next.Items && out.Changes == next.Changes && out.Reserved == units, next
}

// Model returns the porcupine model of a session's cart. Histories are
// partitioned by session: each session's cart is its own object.
func (c Cart) Model() porcupine.Model {
	return porcupine.Model{
		Partition: bySession,
		Init:      func() any { return cartState{} },
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

// Operations turns recorded ops into porcupine's. An operation of unknown
// outcome returns at infinity: it may take effect at any time after its
// invocation, or never (porcupine may then place it after every other).
// Failed operations promise no effect and are left out.
func Operations(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Failed {
			continue
		}
		ret := int64(op.Return)
		if op.Outcome == Unknown {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: op.Session, Input: op.Input, Call: int64(op.Invoke), Output: op, Return: ret})
	}
	return out
}
