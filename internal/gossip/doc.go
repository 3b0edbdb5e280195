// Package gossip cuts a member's gossip off from chosen peers, as a network
// partition would (BlockingTransport), for tests and scone chaos. Members
// themselves are started by package internal/membership.
package gossip
