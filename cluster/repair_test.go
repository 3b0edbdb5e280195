package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func TestPlanRepair(t *testing.T) {
	all := names(4)
	var keys []string
	for i := range 200 {
		keys = append(keys, KeyOf(fmt.Sprint(i)))
	}
	// node-3 died: every record node-0 holds is pushed to its other owners
	// among the survivors, and dropped only if node-0 no longer owns it.
	alive := all[:3]
	plan := PlanRepair("node-0", keys, alive, 2)
	for _, a := range plan {
		owners := Owners(a.Key, alive, 2)
		if slices.Contains(a.PushTo, "node-0") || slices.Contains(a.PushTo, "node-3") {
			t.Fatalf("key %s: push to %v", a.Key, a.PushTo)
		}
		for _, o := range owners {
			if o != "node-0" && !slices.Contains(a.PushTo, o) {
				t.Fatalf("key %s: owner %s left out of %v", a.Key, o, a.PushTo)
			}
		}
		if a.DropAfter == slices.Contains(owners, "node-0") {
			t.Fatalf("key %s: DropAfter=%v with owners %v", a.Key, a.DropAfter, owners)
		}
	}
	if len(plan) != len(keys) {
		t.Fatalf("with k=2 every key has another owner to push to: %d actions for %d keys", len(plan), len(keys))
	}
}

func TestPlanRepairAlone(t *testing.T) {
	// A node alone that owns everything, with k=1, has nothing to do.
	if plan := PlanRepair("node-0", []string{"a", "b"}, []string{"node-0"}, 1); len(plan) != 0 {
		t.Fatalf("plan for a lone owner: %+v", plan)
	}
	// A node that is not an owner hands over even with k=1.
	plan := PlanRepair("old", []string{"a"}, []string{"node-0"}, 1)
	if len(plan) != 1 || !plan[0].DropAfter || !slices.Equal(plan[0].PushTo, []string{"node-0"}) {
		t.Fatalf("plan for a node that left the owners: %+v", plan)
	}
}
