package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/cli"
)

const keysUsage = `usage: scone keys <list|add|promote|retire|prune> --file FILE [flags]

Edits a key file (scone-keys-v1) for a staged rotation. Every server of a
service reads the same file; after each step, copy the file to every server
and reload it there (SIGHUP to scone node and scone relay), and wait until
all have it before the next step:

  scone keys add --file F              a new key that opens, but does not seal yet
  scone keys promote --file F --id N   the new key seals from now on
  scone keys retire --file F --id M    the old key stops opening after --after
                                       (default 24h: the longest SCONE lifetime)
  scone keys prune --file F            remove keys past their retirement

Between promote and the retirement, every SCONE a server sees is re-sealed
with the new key, so sessions carry on. See docs/operations.md.

flags:`

func runKeys(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, keysUsage)
		keysFlags("", stdout).PrintDefaults()
		if len(args) == 0 {
			return cli.ErrUsage
		}
		return cli.ErrHelp
	}
	verb := args[0]
	fs := keysFlags(verb, stdout)
	file, id := fs.Lookup("file"), fs.Lookup("id")
	after := fs.Lookup("after")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ErrHelp
		}
		return cli.ErrUsage
	}
	path := file.Value.String()
	if path == "" {
		return errors.New("--file is required")
	}
	ring, err := scone.ReadKeyFile(path)
	if err != nil {
		return fmt.Errorf("--file=%s: %w", path, cli.WithCause(err))
	}
	keyID := func() (uint32, error) {
		v := id.Value.(flag.Getter).Get().(uint)
		if v == 0 || v > 1<<32-1 {
			return 0, fmt.Errorf("--id=%d: give the key's ID (1 to 2^32-1)", v)
		}
		return uint32(v), nil
	}
	now := time.Now()
	var done string
	switch verb {
	case "list":
		return listKeys(stdout, ring, now)
	case "add":
		next := uint32(1)
		for _, k := range ring.Keys() {
			next = max(next, k.ID+1)
		}
		if v := id.Value.(flag.Getter).Get().(uint); v != 0 {
			if next, err = keyID(); err != nil {
				return err
			}
		}
		if err = ring.Add(scone.GenerateKey(next, now)); err == nil {
			done = fmt.Sprintf("added key %d: it opens SCONEs now; promote it once every server has this file", next)
		}
	case "promote":
		var n uint32
		if n, err = keyID(); err == nil {
			if err = ring.Promote(n); err == nil {
				done = fmt.Sprintf("key %d is the primary: it seals from the reload on", n)
			}
		}
	case "retire":
		var n uint32
		if n, err = keyID(); err == nil {
			if n == ring.Primary() {
				return fmt.Errorf("--id=%d is the primary key: promote another first", n)
			}
			d := after.Value.(flag.Getter).Get().(time.Duration)
			if d < 0 {
				return fmt.Errorf("--after=%v: must not be negative", d)
			}
			at := now.Add(d).UTC().Truncate(time.Second)
			if err = ring.Retire(n, at); err == nil {
				done = fmt.Sprintf("key %d stops opening SCONEs at %s", n, at.Format(time.RFC3339))
			}
		}
	case "prune":
		n := ring.Prune(now)
		done = fmt.Sprintf("removed %d retired key(s)", n)
	default:
		fmt.Fprintln(stdout, keysUsage)
		return fmt.Errorf("unknown keys command %q: want list, add, promote, retire or prune", verb)
	}
	if err != nil {
		return err
	}
	if err := scone.WriteKeyFile(path, ring); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", path, done)
	return listKeys(stdout, ring, now)
}

func keysFlags(verb string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("scone keys "+verb, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("file", "", "the key file to read and rewrite (mode 0600, atomically); required")
	fs.Uint("id", 0, "add: the new key's ID (default: one more than the highest); promote, retire: the key")
	fs.Duration("after", 24*time.Hour, "retire: how long the key still opens SCONEs (at least the longest SCONE lifetime)")
	return fs
}

func listKeys(w io.Writer, ring *scone.KeyRing, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tCREATED\tRETIRES")
	for _, k := range ring.Keys() {
		role := "opens"
		if k.Primary {
			role = "seals, opens"
		}
		retires := "-"
		if !k.RetireAt.IsZero() {
			retires = k.RetireAt.UTC().Format(time.RFC3339)
			if !now.Before(k.RetireAt) {
				role, retires = "retired", retires+" (prune it)"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", k.ID, role, k.Created.UTC().Format(time.RFC3339), retires)
	}
	return tw.Flush()
}
