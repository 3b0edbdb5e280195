// Package chaosctl lets "sconelab chaos" inject faults into a running
// process: skew the clock its SCONE code reads, and cut its gossip off from
// chosen members. It exists only in binaries built with the sconechaos
// build tag, which sconelab chaos uses for the binaries it runs. In every
// other build, the product's included, Start ignores the environment, the
// clock is time.Now and gossip runs on memberlist's own transport.
//
// In a sconechaos build, with Env set to a loopback address
// (127.0.0.1:PORT), the process serves there
//
//   - "PUT /skew?d=DURATION": every time its SCONE code reads (sealing,
//     expiry, cluster records) is off by that duration from then on;
//   - "PUT /gossip-block?addrs=HOST:PORT,...", in a process that gossips
//     (a cluster node, scone relay --circulate): its gossip to and from
//     those members' gossip addresses is dropped from then on (none:
//     healed).
package chaosctl

// Env names the environment variable that sconelab chaos sets to the
// address a sconechaos build serves its fault control on.
const Env = "SCONE_CHAOS_CLOCK"
