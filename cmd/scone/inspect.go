package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scone-project/scone"
)

// inspection is what scone inspect reports of one SCONE.
type inspection struct {
	Format  uint8    `json:"format"`
	KeyID   uint32   `json:"key_id"`
	Service string   `json:"service"`
	Scope   string   `json:"scope"`
	Version uint64   `json:"version"`
	Expires jsonTime `json:"expires"`
	Expired bool     `json:"expired"`
	Size    int      `json:"size"`
	// With --keys: the content, or why it did not open.
	Opened *openedContent `json:"opened,omitempty"`
	Error  string         `json:"error,omitempty"`
	Code   string         `json:"code,omitempty"`
}

type openedContent struct {
	KeyID    uint32   `json:"key_id"`
	Stale    bool     `json:"stale_key"`
	Session  string   `json:"session"`
	IssuedAt jsonTime `json:"issued_at"`
	Epoch    uint64   `json:"epoch"`
	Client   string   `json:"client,omitempty"`
	Endpoint string   `json:"endpoint,omitempty"`
	Object   string   `json:"object,omitempty"`
	Status   string   `json:"status,omitempty"`
	Data     []byte   `json:"data"`
}

// jsonTime is a time that encodes in JSON as RFC 3339 whatever its year: a
// SCONE's times may be as late as 2^62 ms, past the year 9999 that
// time.Time's own MarshalJSON refuses.
type jsonTime struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t jsonTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.Format(time.RFC3339Nano))
}

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
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	raw, err := readInspectInput(fs.Arg(0), os.Stdin)
	if err != nil {
		return err
	}
	var ring *scone.KeyRing
	if *keys != "" {
		if ring, err = scone.ReadKeyFile(*keys); err != nil {
			return fmt.Errorf("--keys=%s: %w", *keys, withCause(err))
		}
	}
	in, err := inspect(raw, ring, *client, time.Now())
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
		printInspection(stdout, in)
	}
	if in.Code != "" {
		return errInspectFailed
	}
	return nil
}

// errInspectFailed ends scone inspect with status 1 once it has printed why
// the SCONE did not open.
var errInspectFailed = errors.New("the SCONE did not open")

// readInspectInput reads a SCONE from arg: standard input for "" or "-", a
// file if one exists by that name, else arg itself as text.
func readInspectInput(arg string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case arg == "" || arg == "-":
		b, err = io.ReadAll(io.LimitReader(stdin, 4*scone.MaxEnvelopeSize))
	default:
		if _, statErr := os.Stat(arg); statErr == nil {
			b, err = os.ReadFile(arg)
		} else {
			b = []byte(arg)
		}
	}
	if err != nil {
		return nil, err
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		if tok, err := scone.DecodeText(t); err == nil {
			return tok, nil
		}
	}
	if len(b) == 0 {
		return nil, errors.New("no SCONE given")
	}
	return b, nil // binary
}

// inspect reads the header of token and, with a ring, opens it.
func inspect(token []byte, ring *scone.KeyRing, client string, now time.Time) (*inspection, error) {
	h, err := scone.ParseHeader(token)
	if err != nil {
		return nil, fmt.Errorf("not a SCONE (%s): %w", scone.CodeOf(err), err)
	}
	in := &inspection{
		Format: h.Format, KeyID: h.KeyID, Service: h.Service, Scope: h.Scope,
		Version: h.Version, Expires: jsonTime{h.Expires}, Expired: h.Expired(now), Size: len(token),
	}
	if ring == nil {
		return in, nil
	}
	s, err := scone.NewSealer(ring, scone.WithMaxSize(scone.MaxEnvelopeSize), scone.WithClock(func() time.Time { return now }))
	if err != nil {
		return nil, err
	}
	var sc scone.SCONE
	o, err := s.Open(context.Background(), &sc, token, scone.Expect{Service: h.Service, Client: client})
	if err != nil {
		in.Code, in.Error = scone.CodeOf(err).String(), err.Error()
		return in, nil
	}
	in.Opened = &openedContent{
		KeyID: o.KeyID, Stale: o.Stale, Session: sc.Session.String(), IssuedAt: jsonTime{sc.IssuedAt},
		Epoch: sc.Epoch, Client: sc.Client, Endpoint: sc.Endpoint, Object: sc.Object,
		Status: sc.Status, Data: bytes.Clone(sc.Data),
	}
	return in, nil
}

func printInspection(w io.Writer, in *inspection) {
	expiry := "in " + time.Until(in.Expires.Time).Round(time.Second).String()
	if in.Expired {
		expiry = "expired " + time.Since(in.Expires.Time).Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(w, "format    %d\n", in.Format)
	fmt.Fprintf(w, "key       %d\n", in.KeyID)
	fmt.Fprintf(w, "service   %s\n", in.Service)
	fmt.Fprintf(w, "scope     %s\n", in.Scope)
	fmt.Fprintf(w, "version   %d\n", in.Version)
	fmt.Fprintf(w, "expires   %s (%s)\n", in.Expires.UTC().Format(time.RFC3339Nano), expiry)
	fmt.Fprintf(w, "size      %d bytes\n", in.Size)
	switch {
	case in.Code != "":
		fmt.Fprintf(w, "open      FAILED: %s (%s)\n", in.Code, in.Error)
	case in.Opened != nil:
		o := in.Opened
		stale := ""
		if o.Stale {
			stale = " (not the primary key: re-sealed at the next change)"
		}
		fmt.Fprintf(w, "open      ok, key %d%s\n", o.KeyID, stale)
		fmt.Fprintf(w, "session   %s\n", o.Session)
		fmt.Fprintf(w, "issued    %s\n", o.IssuedAt.UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(w, "epoch     %d\n", o.Epoch)
		for _, f := range []struct{ name, v string }{{"client", o.Client}, {"endpoint", o.Endpoint}, {"object", o.Object}, {"status", o.Status}} {
			if f.v != "" {
				fmt.Fprintf(w, "%-9s %q\n", f.name, f.v)
			}
		}
		fmt.Fprintf(w, "data      %d bytes: %s\n", len(o.Data), showData(o.Data))
	}
}

// showData renders data as quoted text when it is printable UTF-8, else as
// base64.
func showData(b []byte) string {
	if utf8.Valid(b) && !bytes.ContainsFunc(b, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' }) {
		return fmt.Sprintf("%q", b)
	}
	return "base64 " + base64.StdEncoding.EncodeToString(b)
}
