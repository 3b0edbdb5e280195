// Command scone is SCONE's operator binary: the relay daemon and the key
// and SCONE tools. Subcommands:
//
//	scone inspect print a SCONE's header, or open it with a key file
//	scone keygen  write a new key file
//	scone keys    rotate keys in a key file (add, promote, retire, prune)
//	scone relay   run a relay that holds the SCONEs of clients without SCONE
//	              code (in memory, in a NATS JetStream bucket, or
//	              circulating among the relays)
//
// Run "scone <command> --help" for a command's flags. The demo, the
// benchmarks and the fault-injection tests are in cmd/sconelab; the
// cluster example's node daemon is "go run ./examples/bookstore node".
package main

import (
	"io"
	"os"

	"github.com/scone-project/scone/internal/cli"
)

var commands = []cli.Command{
	{Name: "inspect", Summary: "print a SCONE's header, and with its key file its content or why it does not open", Run: runInspect},
	{Name: "keygen", Summary: "write a new key file", Run: runKeygen},
	{Name: "keys", Summary: "rotate keys in a key file: list, add, promote, retire, prune", Run: runKeys},
	{Name: "relay", Summary: "run a relay that holds SCONEs in the network for clients without SCONE code", Run: runRelay},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run("scone", commands, args, stdout, stderr)
}
