// Package liveview is the live web view of SCONE's processes: the page a
// daemon serves at /debug/scone/ (a relay, a cluster node) and the demo at
// its root, fed twice a second with a Snapshot of the members and of where
// each session's state lives.
package liveview

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"time"
)

//go:embed ui
var files embed.FS

// Snapshot is what the view shows, pushed to it twice a second.
type Snapshot struct {
	Mode     string           `json:"mode"`
	Where    string           `json:"where"`
	Elapsed  float64          `json:"elapsed"`
	Calls    int64            `json:"calls"`
	Rate     float64          `json:"rate"`
	Errors   map[string]int64 `json:"errors"`
	Lost     int64            `json:"lost"`
	Kills    int64            `json:"kills"`
	Restarts int64            `json:"restarts"`
	Groups   []Group          `json:"groups"`
	Sessions []Session        `json:"sessions"`
	Done     bool             `json:"done"`
	// Actions is set when the page may kill and restart members.
	Actions bool `json:"actions"`
	// Clients, if set, describes the clients' column.
	Clients string `json:"clients,omitempty"`
}

// Group is one row of members: a tier of servers, the relays, the nodes.
type Group struct {
	Name    string   `json:"name"`
	Members []Member `json:"members"`
}

// Member is one server, relay or node.
type Member struct {
	Name   string  `json:"name"`
	Addr   string  `json:"addr"`
	Up     bool    `json:"up"`
	Rate   float64 `json:"rate"`   // calls served per second
	Detail string  `json:"detail"` // e.g. what the member holds
}

// Session is one client session (or, on a node, one client's record).
type Session struct {
	ID      string   `json:"id"`
	Holders []string `json:"holders"` // where its state lives now
	SCONEs  []SCONE  `json:"scones"`
	Bytes   int      `json:"bytes"`
	Calls   int64    `json:"calls"`
	Lost    int64    `json:"lost"`
}

// SCONE is one SCONE of a session: the service that sealed it, and its
// version.
type SCONE struct {
	Service string `json:"service"`
	Version uint64 `json:"version"`
	// Endpoint and Status are what the SCONE records, sealed, of the call
	// that sealed it (the endpoint that served it, the operation and its
	// outcome), where the view's owner can open it; empty otherwise.
	Endpoint string `json:"endpoint,omitempty"`
	Status   string `json:"status,omitempty"`
}

// MaxSessions bounds the sessions a Snapshot lists.
const MaxSessions = 48

// Mount serves the view's page under prefix (ending in "/"), with
// prefix+"events" pushing snapshot() twice a second (server-sent events)
// and prefix+"snapshot" returning one.
func Mount(mux *http.ServeMux, prefix string, snapshot func() Snapshot) {
	static, err := fs.Sub(files, "ui")
	if err != nil {
		panic(err) // the embedded directory is there at build time
	}
	mux.Handle("GET "+prefix, http.StripPrefix(prefix, http.FileServerFS(static)))
	mux.HandleFunc("GET "+prefix+"events", func(w http.ResponseWriter, r *http.Request) { stream(w, r, snapshot) })
	mux.HandleFunc("GET "+prefix+"snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(snapshot())
	})
}

// stream pushes a snapshot every half second until the page goes away.
func stream(w http.ResponseWriter, r *http.Request, snapshot func() Snapshot) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := json.Marshal(snapshot())
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
