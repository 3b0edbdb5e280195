package inspect

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/hook"
)

// FuzzInspect: whatever scone inspect reads (text or binary, from standard
// input), it prints a header or refuses it as not a SCONE, and with the
// keys it either opens the SCONE or names the code that refused it.
func FuzzInspect(f *testing.F) {
	c, err := badinput.Load("../../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	primary, keys, err := scone.ParseKeyFile(c.Keys)
	if err != nil {
		f.Fatal(err)
	}
	ring, err := scone.NewKeyRing(primary, keys...)
	if err != nil {
		f.Fatal(err)
	}
	for _, cs := range c.Cases {
		for _, p := range cs.Payloads {
			if len(p) > 4<<10 {
				continue
			}
			f.Add(p)
			if cs.Carrier == badinput.Envelope {
				f.Add([]byte(scone.EncodeText(p) + "\n"))
			}
		}
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Read("-", bytes.NewReader(b))
		if err != nil {
			if len(b) != 0 {
				t.Fatalf("%d bytes of input refused: %v", len(b), err)
			}
			return
		}
		in, err := Inspect(tok, ring, "", now)
		if err != nil {
			if _, perr := scone.ParseHeader(tok); perr == nil {
				t.Fatalf("a header that parses is refused: %v", err)
			}
			return
		}
		if (in.Opened == nil) == (in.Code == "") {
			t.Fatalf("opened %v, code %q", in.Opened != nil, in.Code)
		}
		if in.Code != "" {
			if _, ok := hook.ParseCode(in.Code); !ok {
				t.Fatalf("code %q", in.Code)
			}
		}
		in.Print(io.Discard)
		if _, err := json.Marshal(in); err != nil {
			t.Fatal(err)
		}
	})
}
