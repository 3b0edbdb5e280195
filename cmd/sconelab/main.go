// Command sconelab is for evaluating and testing SCONE: it runs the
// bookstore example under load and faults, and measures it. Subcommands:
//
//	sconelab demo   run the bookstore example on 127.0.0.1, kill and restart
//	                servers under load, and verify that no session lost
//	                state (--ui serves a live web view of it)
//	sconelab bench  compare SCONE with plain gRPC, a map in the server,
//	                Redis and nginx, side by side on 127.0.0.1
//	                (BENCHMARKS.md)
//	sconelab chaos  run a mode's processes under a seeded schedule of
//	                faults, and check every session's history for
//	                linearizability (RELIABILITY.md)
//
// Run "sconelab <command> --help" for a command's flags. What an operator
// installs is cmd/scone; sconelab links what a lab needs besides (an
// embedded NATS server, plotting, Redis, a linearizability checker).
package main

import (
	"io"
	"os"

	"github.com/scone-project/scone/internal/cli"
)

var commands = []cli.Command{
	{Name: "bench", Summary: "compare SCONE with plain gRPC, in-memory sessions, Redis and nginx, side by side", Run: runBench},
	{Name: "chaos", Summary: "run a mode's processes under seeded faults and check every session's history", Run: runChaos},
	{Name: "demo", Summary: "run the bookstore on 127.0.0.1 with servers killed under load, and verify nothing was lost", Run: runDemo},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run("sconelab", commands, args, stdout, stderr)
}
