package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/cli"
)

// runKeygen writes a new key file holding one new key, its primary.
func runKeygen(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scone keygen", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("out", "", "key file to write (mode 0600); required")
	id := fs.Uint("id", 0, "ID of the new key (default: random, so that two key files never share an ID)")
	force := fs.Bool("force", false, "overwrite an existing file")
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: scone keygen --out FILE [--id N] [--force]")
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "Writes a key file (format scone-keys-v1, see docs/security.md) with one new")
		fmt.Fprintln(stdout, "256-bit key from crypto/rand, which is the primary. Every server of a service")
		fmt.Fprintln(stdout, "reads the same key file. The key's ID is random unless --id is given: a SCONE")
		fmt.Fprintln(stdout, "that meets a key file it was not sealed with then fails as unknown_key, not")
		fmt.Fprintln(stdout, "as tampered.")
		fmt.Fprintln(stdout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ErrHelp
		}
		return cli.ErrUsage
	}
	if *out == "" {
		fs.Usage()
		return errors.New("--out is required")
	}
	if *id > 1<<32-1 {
		return fmt.Errorf("--id=%d: key IDs are 32-bit", *id)
	}
	if *id == 0 {
		*id = uint(randomKeyID())
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return fmt.Errorf("--out=%s exists; use --force to replace it (the keys in it stop working)", *out)
	}
	ring, err := scone.NewKeyRing(uint32(*id), scone.GenerateKey(uint32(*id), time.Now()))
	if err != nil {
		return err
	}
	if err := scone.WriteKeyFile(*out, ring); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: key %d, primary\n", *out, *id)
	return nil
}

// randomKeyID returns a random key ID in [1, 2^31): key files made apart
// then share no ID, and "scone keys add" still has room to count up.
func randomKeyID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])>>1 | 1
}
