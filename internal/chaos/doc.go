// Package chaos is the pure core of "sconelab chaos": the history of the
// operations client sessions made, the sequential model of a session's
// cart that porcupine checks the history against, SCONE's own invariants
// (versions never go back, no SCONE opened after its expiry), and the
// seeded nemesis schedule. It starts no process and opens no socket: the
// command in cmd/sconelab does that, and records what happened here.
package chaos
