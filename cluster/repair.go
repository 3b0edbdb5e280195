package cluster

import "slices"

// Action is what repair does for one record a node holds.
type Action struct {
	// Key names the record.
	Key string
	// PushTo are the owners the record is copied to (those not known to
	// hold it: all other owners, since the node cannot know).
	PushTo []string
	// DropAfter is set when the node is no longer an owner: it drops its
	// copy once every owner has acknowledged it, so there is never a window
	// with fewer than k copies.
	DropAfter bool
}

// PlanRepair returns what node self does for the records it holds, given
// the live members and k: for each record, copy it to its other owners, and
// if self is not one of them any more, hand it over and drop it. It is pure:
// the node runs the plan, and runs it again at every change of membership
// until nothing is left to do.
func PlanRepair(self string, keys []string, members []string, k int) []Action {
	var out []Action
	for _, key := range keys {
		owners := Owners(key, members, k)
		a := Action{Key: key, DropAfter: !slices.Contains(owners, self)}
		for _, o := range owners {
			if o != self {
				a.PushTo = append(a.PushTo, o)
			}
		}
		if len(a.PushTo) > 0 || a.DropAfter {
			out = append(out, a)
		}
	}
	return out
}

// pushed decides an Action once its pushes answered, failed of them with
// no answer (or a refusal): the node drops its copy only if it is to and
// every owner took the record or holds a newer one, and the record stays in
// the backlog, to be pushed again at the next pass, if a push failed.
func (a Action) pushed(failed int) (drop, backlog bool) {
	return a.DropAfter && failed == 0, failed > 0
}
