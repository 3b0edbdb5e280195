// Package upgradepb holds two versions of a server's state message, for the
// rolling-upgrade test of the hook, generated from upgrade.proto.
package upgradepb

// Regenerate with protoc 3.21+ and protoc-gen-go v1.36.12 on the PATH:
//go:generate protoc --go_out=. --go_opt=paths=source_relative upgrade.proto
