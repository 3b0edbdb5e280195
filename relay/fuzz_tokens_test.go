package relay

import (
	"bytes"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
)

// FuzzDecodeTokens: a value read from the JetStream bucket (which other
// relays, or anyone with access to the bucket, wrote) decodes into SCONEs
// or fails with CodeMalformed, and what decodes encodes back to the same
// bytes.
func FuzzDecodeTokens(f *testing.F) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	var all [][]byte
	for _, cs := range c.Cases {
		if cs.Carrier == badinput.Envelope && len(cs.Payloads[0]) <= 4<<10 {
			f.Add(encodeTokens(cs.Payloads))
			all = append(all, cs.Payloads...)
		}
	}
	f.Add(encodeTokens(all))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		toks, err := decodeTokens(b)
		if err != nil {
			if c := scone.CodeOf(err); c != scone.CodeMalformed {
				t.Fatalf("error with code %v: %v", c, err)
			}
			return
		}
		if again := encodeTokens(toks); !bytes.Equal(again, b) && !nonMinimal(b) {
			t.Fatalf("decoded %d SCONEs encode as %x, were %x", len(toks), again, b)
		}
	})
}

// nonMinimal reports whether b uses a length that is not minimally
// encoded, which decodes but encodes shorter.
func nonMinimal(b []byte) bool {
	toks, err := decodeTokens(b)
	return err == nil && len(encodeTokens(toks)) < len(b)
}
