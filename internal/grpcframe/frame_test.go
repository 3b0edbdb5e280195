package grpcframe

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/hook"
)

func sampleFrame() Frame {
	return Frame{
		SCONEs:  [][]byte{[]byte("first sealed scone"), []byte("second")},
		Dropped: []hook.HolderKey{{Service: "bookstore.v1.Cart", Scope: "/bookstore.v1.Gateway/"}},
		Scope:   "/bookstore.v1.Gateway/",
	}
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	for _, f := range []Frame{{}, sampleFrame(), {Scope: "/x/"}, {Dropped: []hook.HolderKey{{Service: "s"}}}} {
		got, err := ParseFrame(AppendFrame(nil, &f))
		if err != nil {
			t.Fatal(err)
		}
		if !framesEqual(&f, &got) {
			t.Fatalf("round trip: %+v → %+v", f, got)
		}
	}
}

func framesEqual(a, b *Frame) bool {
	if len(a.SCONEs) != len(b.SCONEs) || len(a.Dropped) != len(b.Dropped) || a.Scope != b.Scope {
		return false
	}
	for i := range a.SCONEs {
		if !bytes.Equal(a.SCONEs[i], b.SCONEs[i]) {
			return false
		}
	}
	for i := range a.Dropped {
		if a.Dropped[i] != b.Dropped[i] {
			return false
		}
	}
	return true
}

func TestFrameLimits(t *testing.T) {
	t.Parallel()
	var many Frame
	for range maxFrameSCONEs + 1 {
		many.SCONEs = append(many.SCONEs, []byte("x"))
	}
	if _, err := ParseFrame(AppendFrame(nil, &many)); scone.CodeOf(err) != scone.CodeTooLarge {
		t.Errorf("too many SCONEs: %v", err)
	}
	if _, err := ParseFrame(make([]byte, maxFrameSize+1)); scone.CodeOf(err) != scone.CodeTooLarge {
		t.Errorf("oversized frame: %v", err)
	}
	long := Frame{Scope: string(make([]byte, 256))}
	if _, err := ParseFrame(AppendFrame(nil, &long)); scone.CodeOf(err) != scone.CodeMalformed {
		t.Errorf("long scope: %v", err)
	}
	for _, bad := range [][]byte{{0x0a}, {0x0a, 0x05, 1}, {0xff}, {0x12, 0x00}} {
		if _, err := ParseFrame(bad); scone.CodeOf(err) != scone.CodeMalformed {
			t.Errorf("ParseFrame(%x) = %v", bad, err)
		}
	}
	// Unknown fields are skipped, so frames can grow.
	b := protowire.AppendTag(nil, 9, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	f := sampleFrame()
	b = AppendFrame(b, &f)
	if got, err := ParseFrame(b); err != nil || !framesEqual(&got, &f) {
		t.Errorf("frame with an unknown field: %v", err)
	}
}

func TestExtractUnknown(t *testing.T) {
	t.Parallel()
	field := func(num protowire.Number, v string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	fr := field(frameField, "FRAME")
	a, b := field(7, "aaa"), field(8, "bbb")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name     string
		in, rest []byte
		found    bool
	}{
		{"alone", fr, nil, true},
		{"first", cat(fr, a, b), cat(a, b), true},
		{"middle", cat(a, fr, b), cat(a, b), true},
		{"last", cat(a, b, fr), cat(a, b), true},
		{"absent", cat(a, b), cat(a, b), false},
		{"garbage", []byte{0xff, 0xff}, []byte{0xff, 0xff}, false},
	} {
		got, rest, ok := ExtractUnknown(tc.in)
		if ok != tc.found || !bytes.Equal(rest, tc.rest) || ok && string(got) != "FRAME" {
			t.Errorf("%s: %q %x %v", tc.name, got, rest, ok)
		}
	}
}

// FuzzParseFrame: any bytes parse or fail with a code, and what parses
// encodes back to a frame that parses the same.
func FuzzParseFrame(f *testing.F) {
	s := sampleFrame()
	f.Add(AppendFrame(nil, &s))
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0x78})
	c, err := badinput.Load("../../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	for _, cs := range c.Select(true) {
		for _, p := range cs.Payloads {
			switch {
			case len(p) > 16<<10:
			case cs.Carrier == badinput.Frame:
				f.Add(p)
			case cs.Carrier == badinput.Envelope:
				f.Add(AppendFrame(nil, &Frame{SCONEs: [][]byte{p}}))
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if c := scone.CodeOf(err); c != scone.CodeMalformed && c != scone.CodeTooLarge {
				t.Fatalf("parseFrame error with code %v", c)
			}
			return
		}
		again, err := ParseFrame(AppendFrame(nil, &fr))
		if err != nil || !framesEqual(&fr, &again) {
			t.Fatalf("re-encoded frame differs: %v", err)
		}
	})
}

// FuzzBodyField: SplitBody and ExtractUnknown never panic, and what they
// take out plus what they leave adds up to the input.
func FuzzBodyField(f *testing.F) {
	s := sampleFrame()
	msg := protowire.AppendTag(nil, frameField, protowire.BytesType)
	msg = protowire.AppendBytes(msg, AppendFrame(nil, &s))
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, "isbn")
	f.Add(msg)
	f.Add([]byte{0x0a, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, b []byte) {
		if fr, rest, ok := SplitBody(b); ok {
			if len(rest)+len(fr) > len(b) {
				t.Fatal("SplitBody returned more than its input")
			}
		} else if !bytes.Equal(rest, b) {
			t.Fatal("SplitBody changed an input without a frame")
		}
		if fr, rest, ok := ExtractUnknown(b); ok {
			if len(rest)+len(fr) >= len(b) {
				t.Fatal("ExtractUnknown did not remove a field")
			}
		} else if !bytes.Equal(rest, b) {
			t.Fatal("ExtractUnknown changed an input without a frame")
		}
	})
}
