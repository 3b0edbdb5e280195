// Package cli holds what SCONE's commands share: the subcommand dispatch of
// cmd/scone and cmd/sconelab, flags that the environment can set, the
// admin endpoints of a daemon, TLS from flags, and key-file reloading on
// SIGHUP. Only commands import it; libraries take a Config instead.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

var (
	// ErrUsage is returned by a command whose flags are wrong, after it
	// printed why: the process exits with status 2.
	ErrUsage = errors.New("usage")
	// ErrHelp is returned by a command that printed its help: the process
	// exits with status 0.
	ErrHelp = errors.New("help shown")
)

// Command is one subcommand: it parses its own flags from args and writes
// to stdout; its error, if any, ends the process with a non-zero status.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, stdout io.Writer) error
}

// Usage prints the commands of prog.
func Usage(w io.Writer, prog string, commands []Command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", prog)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(w, "\nRun \"%s <command> --help\" for the flags of a command.\n", prog)
}

// Run runs the command args[0] of prog with the rest of args, until it
// returns or SIGINT or SIGTERM cancels its context, and returns the exit
// status.
func Run(prog string, commands []Command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		Usage(stdout, prog, commands)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.Name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := c.Run(ctx, args[1:], stdout); err != nil {
			switch err {
			case ErrHelp:
				return 0
			case ErrUsage:
				return 2
			}
			fmt.Fprintf(stderr, "%s %s: %v\n", prog, c.Name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	Usage(stderr, prog, commands)
	return 2
}
