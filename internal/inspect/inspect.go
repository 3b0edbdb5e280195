// Package inspect reads a SCONE as scone inspect does: its cleartext
// header, which anyone can read, and with the keys its content or the code
// that refused it.
package inspect

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// Inspection is what scone inspect reports of one SCONE.
type Inspection struct {
	Format  uint8  `json:"format"`
	KeyID   uint32 `json:"key_id"`
	Service string `json:"service"`
	Scope   string `json:"scope"`
	Version uint64 `json:"version"`
	Expires Time   `json:"expires"`
	Expired bool   `json:"expired"`
	Size    int    `json:"size"`
	// With --keys: the content, or why it did not open.
	Opened *Opened `json:"opened,omitempty"`
	Error  string  `json:"error,omitempty"`
	Code   string  `json:"code,omitempty"`
}

// Opened is the content of a SCONE that opened.
type Opened struct {
	KeyID    uint32 `json:"key_id"`
	Stale    bool   `json:"stale_key"`
	Session  string `json:"session"`
	IssuedAt Time   `json:"issued_at"`
	Epoch    uint64 `json:"epoch"`
	Client   string `json:"client,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Object   string `json:"object,omitempty"`
	Status   string `json:"status,omitempty"`
	Data     []byte `json:"data"`
}

// Time is a time that encodes in JSON as RFC 3339 whatever its year: a
// SCONE's times may be as late as 2^62 ms, past the year 9999 that
// time.Time's own MarshalJSON refuses.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.Format(time.RFC3339Nano))
}

// Read reads a SCONE from arg: standard input for "" or "-", a file if one
// exists by that name, else arg itself as text. Text is the text form;
// anything else is taken as the binary envelope.
func Read(arg string, stdin io.Reader) ([]byte, error) {
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

// Inspect reads the header of token and, with a ring, opens it as a server
// of its service would at now, for the client identity client.
func Inspect(token []byte, ring *scone.KeyRing, client string, now time.Time) (*Inspection, error) {
	h, err := scone.ParseHeader(token)
	if err != nil {
		return nil, fmt.Errorf("not a SCONE (%s): %w", scone.CodeOf(err), err)
	}
	in := &Inspection{
		Format: h.Format, KeyID: h.KeyID, Service: h.Service, Scope: h.Scope,
		Version: h.Version, Expires: Time{h.Expires}, Expired: !now.Before(h.Expires), Size: len(token),
	}
	if ring == nil {
		return in, nil
	}
	s, err := scone.NewSealer(ring, scone.WithMaxSize(scone.MaxEnvelopeSize), scone.WithClock(func() time.Time { return now }))
	if err != nil {
		return nil, err
	}
	var sc scone.SCONE
	o, err := hook.Open(s, context.Background(), &sc, token, scone.Expect{Service: h.Service, Client: client})
	if err != nil {
		in.Code, in.Error = scone.CodeOf(err).String(), err.Error()
		return in, nil
	}
	in.Opened = &Opened{
		KeyID: o.KeyID, Stale: o.Stale, Session: sc.Session.String(), IssuedAt: Time{sc.IssuedAt},
		Epoch: sc.Epoch, Client: sc.Client, Endpoint: sc.Endpoint, Object: sc.Object,
		Status: sc.Status, Data: bytes.Clone(sc.Data),
	}
	return in, nil
}

// Print writes the inspection as text, one field a line.
func (in *Inspection) Print(w io.Writer) {
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
