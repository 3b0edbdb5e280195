// Package badinput reads the bad-input corpus of testdata/badinput: SCONEs
// and carrier values that are malformed, truncated, tampered, expired,
// oversized, of another service or client, under an unknown or retired key,
// replayed or rolled back, and metadata and headers that break their
// carrier. Every holder's tests send each case and check the status it
// documents. The corpus is written by the root package's
// TestBadInputCorpus (go test -run TestBadInputCorpus -update).
//
// The package depends on nothing of the module, so the root package's own
// tests can use it.
package badinput

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Carriers of a case: how its payloads travel.
const (
	// Envelope: each payload is a sealed envelope. gRPC carries them in
	// one frame under the scone-bin metadata key; HTTP in one Scone
	// header, in text form, comma-separated.
	Envelope = "envelope"
	// Frame: each payload is one raw value of the scone-bin metadata key.
	Frame = "frame"
	// Metadata: each payload is a value of the text metadata key Key.
	Metadata = "metadata"
	// RawMetadata: each payload is a raw HTTP/2 header value of the
	// metadata key Key, as it travels on the wire (so a -bin key's value
	// may be bad base64, which gRPC clients never send).
	RawMetadata = "raw-metadata"
	// Header: each payload is one raw Scone header line.
	Header = "header"
	// Cookie: each payload is one raw Cookie header line.
	Cookie = "cookie"
)

// Expect is what a holder must answer to a case.
type Expect struct {
	// Code is the scone.Code's name, "ok" when the call must succeed, or
	// empty when the transport itself refuses the request before any hook.
	Code string `json:"code"`
	// Status is the gRPC status code's name (as codes.Code.String) or the
	// HTTP status as a decimal number.
	Status string `json:"status"`
}

// OK reports whether the call must succeed.
func (e *Expect) OK() bool { return e.Code == "ok" }

// Case is one bad input.
type Case struct {
	// Name names the case and its files.
	Name string `json:"name"`
	// About says what is wrong with it.
	About string `json:"about"`
	// Carrier is how the payloads travel (Envelope, Frame, …).
	Carrier string `json:"carrier"`
	// Key is the metadata key of the Metadata and RawMetadata carriers.
	Key string `json:"key,omitempty"`
	// Files hold the payloads, relative to the corpus directory.
	Files []string `json:"files"`
	// PadTo, when set, pads the last payload to this many bytes (with
	// zeros, or 'A' for text carriers), so huge inputs need no huge files.
	PadTo int `json:"pad_to,omitempty"`
	// Before are envelopes to present first, one call each, each accepted.
	Before []string `json:"before,omitempty"`
	// Open is the code opening (scone.Sealer.Restore) gives an Envelope case's first
	// payload, called directly with the corpus's service.
	Open string `json:"open,omitempty"`
	// GRPC is the answer of a server with the gRPC hook, and of a relay in
	// front of one; nil when the case is not for gRPC.
	GRPC *Expect `json:"grpc,omitempty"`
	// HighWater, if set, is the gRPC answer when the server spends each
	// version once (scone.WithMarkStore), where it differs.
	HighWater *Expect `json:"high_water,omitempty"`
	// HTTP is the answer of a server with the sconehttp Middleware; nil
	// when the case is not for HTTP.
	HTTP *Expect `json:"http,omitempty"`
	// Operations, for a case that must succeed, is the gateway state's
	// operation count the call must see (0: an empty state).
	Operations uint64 `json:"operations"`

	// Payloads are the contents of Files, padded; BeforePayloads of Before.
	Payloads       [][]byte `json:"-"`
	BeforePayloads [][]byte `json:"-"`
}

// Manifest is the corpus's manifest.json.
type Manifest struct {
	// About describes the corpus.
	About string `json:"about"`
	// Service and Scope are those of every good SCONE of the corpus: the
	// bookstore's gateway.
	Service string `json:"service"`
	Scope   string `json:"scope"`
	// KeyFile is the key file (scone-keys-v1) servers under test load: key
	// 1 is the primary, key 2 is retired.
	KeyFile string `json:"key_file"`
	// Cases are the bad inputs.
	Cases []Case `json:"cases"`
}

// ManifestName is the manifest's file name in the corpus directory.
const ManifestName = "manifest.json"

// Corpus is a loaded corpus.
type Corpus struct {
	Manifest
	// Dir is the corpus directory.
	Dir string
	// Keys is the content of the key file.
	Keys []byte
}

// Load reads the corpus in dir.
func Load(dir string) (*Corpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	c := &Corpus{Dir: dir}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if c.Keys, err = os.ReadFile(filepath.Join(dir, c.KeyFile)); err != nil {
		return nil, err
	}
	for i := range c.Cases {
		cs := &c.Cases[i]
		if cs.GRPC == nil && cs.HTTP == nil {
			return nil, fmt.Errorf("case %s: no expectation", cs.Name)
		}
		for _, f := range cs.Files {
			p, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return nil, err
			}
			cs.Payloads = append(cs.Payloads, p)
		}
		if len(cs.Payloads) == 0 {
			return nil, fmt.Errorf("case %s: no payload", cs.Name)
		}
		if cs.PadTo > 0 {
			last := &cs.Payloads[len(cs.Payloads)-1]
			pad := byte(0)
			if cs.Carrier == Header || cs.Carrier == Cookie || cs.Carrier == Metadata || cs.Carrier == RawMetadata {
				pad = 'A'
			}
			*last = append(*last, bytes.Repeat([]byte{pad}, max(0, cs.PadTo-len(*last)))...)
		}
		for _, f := range cs.Before {
			p, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return nil, err
			}
			cs.BeforePayloads = append(cs.BeforePayloads, p)
		}
	}
	return c, nil
}

// Select returns the cases with an expectation for gRPC (grpc true) or
// HTTP.
func (c *Corpus) Select(grpc bool) []Case {
	var out []Case
	for _, cs := range c.Cases {
		if grpc && cs.GRPC != nil || !grpc && cs.HTTP != nil {
			out = append(out, cs)
		}
	}
	return out
}
