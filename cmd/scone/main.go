// Command scone runs SCONE's tools and daemons. Subcommands:
//
//	scone bench   compare SCONE with plain gRPC, a map in the server, Redis
//	              and nginx, side by side on 127.0.0.1 (BENCHMARKS.md)
//	scone chaos   run a mode's processes under a seeded schedule of faults,
//	              and check every session's history for linearizability
//	scone demo    run the bookstore example on 127.0.0.1, kill and restart
//	              servers under load, and verify that no session lost state
//	scone inspect print a SCONE's header, or open it with a key file
//	scone keygen  write a new key file
//	scone keys    rotate keys in a key file (add, promote, retire, prune)
//	scone node    run a node of a cluster that keeps SCONEs on k of its nodes
//	scone relay   run a relay that holds the SCONEs of clients without SCONE
//	              code (in memory, or in a NATS JetStream bucket)
//
// Run "scone <command> --help" for a command's flags.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: it parses its own flags from args and writes
// to stdout; its error, if any, ends the process with a non-zero status.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = []command{
	{"bench", "compare SCONE with plain gRPC, in-memory sessions, Redis and nginx, side by side", runBench},
	{"chaos", "run a mode's processes under seeded faults and check every session's history", runChaos},
	{"demo", "run the bookstore on 127.0.0.1 with servers killed under load, and verify nothing was lost", runDemo},
	{"inspect", "print a SCONE's header, and with its key file its content or why it does not open", runInspect},
	{"keygen", "write a new key file", runKeygen},
	{"keys", "rotate keys in a key file: list, add, promote, retire, prune", runKeys},
	{"node", "run a node of a cluster that keeps the clients' SCONEs on k nodes", runNode},
	{"relay", "run a relay that holds SCONEs in the network for clients without SCONE code", runRelay},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: scone <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "scone <command> --help" for the flags of a command.`)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := c.run(ctx, args[1:], stdout); err != nil {
			switch err {
			case errHelp:
				return 0
			case errUsage:
				return 2
			}
			fmt.Fprintf(stderr, "scone %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "scone: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
