package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/internal/inspect"
)

const inspectUsage = `usage: scone inspect [flags] [SCONE | FILE | -]

Prints the cleartext header of a SCONE: its format, key ID, service, scope,
version and expiry, which anyone can read. With --keys it also opens the
SCONE and prints its content, or the error code that made it fail (tampered,
expired, unknown_key, wrong_client, ...); the exit status is then 1.

The SCONE is the argument (its text form, base64url as in headers and
cookies), or a file holding it (text or binary), or standard input ("-" or no
argument).

flags:`

func runInspect(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scone inspect", flag.ContinueOnError)
	fs.SetOutput(stdout)
	keys := fs.String("keys", "", "key file: also open the SCONE and print its content")
	client := fs.String("client", "", "with --keys: the client identity a client-bound SCONE must match")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprintln(stdout, inspectUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ErrHelp
		}
		return cli.ErrUsage
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return cli.ErrUsage
	}
	raw, err := inspect.Read(fs.Arg(0), os.Stdin)
	if err != nil {
		return err
	}
	var ring *scone.KeyRing
	if *keys != "" {
		if ring, err = scone.ReadKeyFile(*keys); err != nil {
			return fmt.Errorf("--keys=%s: %w", *keys, cli.WithCause(err))
		}
	}
	in, err := inspect.Inspect(raw, ring, *client, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(in); err != nil {
			return err
		}
	} else {
		in.Print(stdout)
	}
	if in.Code != "" {
		return errInspectFailed
	}
	return nil
}

// errInspectFailed ends scone inspect with status 1 once it has printed why
// the SCONE did not open.
var errInspectFailed = errors.New("the SCONE did not open")
