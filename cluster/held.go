package cluster

import (
	"slices"

	"github.com/scone-project/scone"
)

// RecordInfo describes a record a node holds, without its SCONEs' content.
type RecordInfo struct {
	// Key names the client (a hash of its identity, see KeyOf).
	Key string
	// RV is the record's version; Copies how many owners keep it.
	RV     uint64
	Copies int
	// Owners are the record's owners among the live members, as this node
	// sees them.
	Owners []string
	// SCONEs are the cleartext headers of the record's SCONEs.
	SCONEs []scone.Header
	// Bytes is the size of the record's SCONEs.
	Bytes int
}

// Held describes up to max of the records the node holds, by key, for
// debugging views (scone node's /debug/scone).
func (n *Node) Held(max int) []RecordInfo {
	keys := n.store.keys()
	slices.Sort(keys)
	members := n.members.View().Members
	var out []RecordInfo
	for _, key := range keys {
		if len(out) == max {
			break
		}
		rec := n.store.get(key)
		if rec == nil {
			continue
		}
		info := n.describe(key, rec, members)
		out = append(out, info)
	}
	return out
}

// Describe describes the record the node holds for key, if any.
func (n *Node) Describe(key string) (RecordInfo, bool) {
	rec := n.store.get(key)
	if rec == nil {
		return RecordInfo{}, false
	}
	return n.describe(key, rec, n.members.View().Members), true
}

func (n *Node) describe(key string, rec *Record, members []string) RecordInfo {
	info := RecordInfo{Key: key, RV: rec.RV, Copies: rec.Copies, Owners: Owners(key, members, rec.Copies)}
	for _, tok := range rec.SCONEs {
		info.Bytes += len(tok)
		if h, err := scone.ParseHeader(tok); err == nil {
			info.SCONEs = append(info.SCONEs, h)
		}
	}
	return info
}
