package scone

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scone-project/scone/internal/badinput"
)

// The bad-input corpus (testdata/badinput, read by package
// internal/badinput) is generated here, deterministically: fixed keys,
// nonces, sessions and times. go test -run TestBadInputCorpus -update
// rewrites it; without -update the test fails when the files differ from
// what this generator writes.
const badInputDir = "testdata/badinput"

var (
	// The corpus's service: the bookstore's gateway, whose state
	// (GatewaySession) counts the session's operations.
	badService = "bookstore.v1.Gateway"
	badScope   = "/bookstore.v1.Gateway/"
	badIssued  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	badExpires = time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC) // far enough for every run
	badTTL     = badExpires.Sub(badIssued)
)

// badKey returns a corpus key: its secret is the byte b repeated.
func badKey(id uint32, b byte, created time.Time) Key {
	k := Key{ID: id, Created: created}
	copy(k.Secret[:], bytes.Repeat([]byte{b}, keySize))
	return k
}

var (
	badKey1 = badKey(1, 0x11, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	badKey2 = badKey(2, 0x22, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) // retired in the key file
	badKey7 = badKey(7, 0x77, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) // in no server's ring
	badRetA = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

// gatewaySession encodes the bookstore's GatewaySession message
// (operations = 1, last_operation = 2) without importing the example.
func gatewaySession(ops uint64, last string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, ops)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, last)
}

// badGen seals the corpus's envelopes with fixed nonces.
type badGen struct {
	t     testing.TB
	nonce byte
}

func (g *badGen) nextNonce() *[nonceSize]byte {
	g.nonce++
	var n [nonceSize]byte
	for i := range n {
		n[i] = g.nonce
	}
	return &n
}

// scone returns a SCONE of the corpus's service with ops operations.
func (g *badGen) scone(session byte, version, ops uint64) *SCONE {
	sc := &SCONE{
		Service: badService, Scope: badScope, Version: version,
		Expires: badExpires, IssuedAt: badIssued,
		Data: gatewaySession(ops, "add"),
	}
	for i := range sc.Session {
		sc.Session[i] = session
	}
	return sc
}

// seal seals sc under k, as a server with k as its primary would.
func (g *badGen) seal(k Key, sc *SCONE) []byte {
	k.RetireAt = time.Time{}
	ring, err := NewKeyRing(k.ID, k)
	if err != nil {
		g.t.Fatal(err)
	}
	s, err := NewSealer(ring, WithTTL(max(badTTL, sc.Expires.Sub(sc.IssuedAt))))
	if err != nil {
		g.t.Fatal(err)
	}
	env, err := s.sealNonce(nil, sc, g.nextNonce(), formatV1)
	if err != nil {
		g.t.Fatal(err)
	}
	return env
}

// sealBody seals an arbitrary body under key 1 with sc's header: bodies no
// Sealer would write, which authenticate all the same.
func (g *badGen) sealBody(sc *SCONE, body []byte) []byte {
	b := appendHeader(nil, formatV1, badKey1.ID, sc)
	hl := len(b)
	b = append(b, make([]byte, nonceSize)...)
	b = append(b, body...)
	return newXAESKey(&badKey1.Secret).sealWithNonce(b, hl, hl+nonceSize, g.nextNonce())
}

// frame encodes a sconegrpc frame holding tokens (field 1, bytes).
func frame(tokens ...[]byte) []byte {
	var b []byte
	for _, t := range tokens {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, t)
	}
	return b
}

// with returns a copy of b changed by f.
func with(b []byte, f func(b []byte)) []byte {
	b = bytes.Clone(b)
	f(b)
	return b
}

// badCorpus returns the corpus's manifest and files.
func badCorpus(t testing.TB) (badinput.Manifest, map[string][]byte) {
	g := &badGen{t: t}
	files := map[string][]byte{
		"keys.json": marshalKeyFile(1, []Key{badKey1, {ID: 2, Secret: badKey2.Secret, Created: badKey2.Created, RetireAt: badRetA}}),
	}
	m := badinput.Manifest{
		About: "Bad inputs for every SCONE holder: written by go test -run TestBadInputCorpus -update " +
			"in the root package; sent by the TestBadInput tests of sconegrpc, sconehttp, relay and cluster, " +
			"and the TestBadInputProcesses tests of cmd/scone and examples/bookstore. See docs/security.md.",
		Service: badService, Scope: badScope, KeyFile: "keys.json",
	}
	expect := func(code, status string) *badinput.Expect { return &badinput.Expect{Code: code, Status: status} }
	add := func(c badinput.Case, payloads ...[]byte) {
		ext := ".bin"
		if c.Carrier == badinput.Header || c.Carrier == badinput.Cookie || c.Carrier == badinput.Metadata || c.Carrier == badinput.RawMetadata {
			ext = ".txt"
		}
		for i, p := range payloads {
			name := c.Name + ext
			if len(payloads) > 1 {
				name = c.Name + "." + string(rune('a'+i)) + ext
			}
			files[name] = p
			c.Files = append(c.Files, name)
		}
		m.Cases = append(m.Cases, c)
	}
	// An envelope case yields the same code on both transports.
	env := func(name, about, code, grpcStatus, httpStatus string, p []byte) {
		add(badinput.Case{Name: name, About: about, Carrier: badinput.Envelope, Open: code,
			GRPC: expect(code, grpcStatus), HTTP: expect(code, httpStatus)}, p)
	}

	// A bad SCONE has a high version, so it would be preferred to the
	// client's own if the two were sent together.
	valid := g.seal(badKey1, g.scone(0xb0, 1000, 9))
	hl := headerLen(g.scone(0xb0, 1000, 9))

	add(badinput.Case{Name: "empty", About: "a zero-length SCONE", Carrier: badinput.Envelope, Open: "malformed",
		GRPC: expect("malformed", "InvalidArgument"),
		HTTP: expect("ok", "200")}, // an empty text form is no SCONE: the Scone header's empty entries are skipped
		[]byte{})
	env("truncated-header", "the first 30 bytes of a SCONE", "malformed", "InvalidArgument", "400", valid[:30])
	env("truncated-minimum", "one byte short of the smallest envelope", "malformed", "InvalidArgument", "400", valid[:envelopeMin-1])
	env("truncated-tag", "a SCONE without its last byte: the layout holds, authentication fails",
		"tampered", "Unauthenticated", "401", valid[:len(valid)-1])
	env("bad-format", "format byte 3", "malformed", "InvalidArgument", "400", with(valid, func(b []byte) { b[0] = 3 }))
	env("zero-expiry", "expiry 0", "malformed", "InvalidArgument", "400",
		with(valid, func(b []byte) { clear(b[13:21]) }))
	env("expiry-out-of-range", "expiry past 2^62 ms", "malformed", "InvalidArgument", "400",
		with(valid, func(b []byte) { binary.BigEndian.PutUint64(b[13:], maxUnixMilli+1) }))
	env("empty-service", "service length 0", "malformed", "InvalidArgument", "400",
		with(valid, func(b []byte) { b[hdrFixed] = 0 }))
	env("service-overrun", "service length 255, past the end of the envelope", "malformed", "InvalidArgument", "400",
		with(valid[:envelopeMin+20], func(b []byte) { b[hdrFixed] = 255 }))
	env("scope-overrun", "scope length 255, past the end of the envelope", "malformed", "InvalidArgument", "400",
		with(valid, func(b []byte) { b[hdrFixed+1+len(badService)] = 255 }))
	env("tampered-ciphertext", "one bit of the sealed body flipped", "tampered", "Unauthenticated", "401",
		with(valid, func(b []byte) { b[hl+nonceSize+3] ^= 0x10 }))
	env("tampered-version", "the cleartext version raised by one", "tampered", "Unauthenticated", "401",
		with(valid, func(b []byte) { b[12]++ }))
	env("tampered-scope", "the cleartext scope changed", "tampered", "Unauthenticated", "401",
		with(valid, func(b []byte) { b[hl-1] = 'X' }))
	env("tampered-nonce", "one bit of the nonce flipped", "tampered", "Unauthenticated", "401",
		with(valid, func(b []byte) { b[hl] ^= 1 }))
	env("tampered-tag", "the tag's last byte changed", "tampered", "Unauthenticated", "401",
		with(valid, func(b []byte) { b[len(b)-1] ^= 0xff }))
	env("unknown-key", "sealed under key 7, in no server's ring", "unknown_key", "FailedPrecondition", "401",
		g.seal(badKey7, g.scone(0xb1, 1000, 9)))
	env("retired-key", "sealed under key 2, retired in the key file", "unknown_key", "FailedPrecondition", "401",
		g.seal(badKey2, g.scone(0xb2, 1000, 9)))
	env("key-id-changed", "a SCONE of key 1 naming key 2 in its header", "unknown_key", "FailedPrecondition", "401",
		with(valid, func(b []byte) { b[4] = 2 }))
	expired := g.scone(0xb3, 1000, 9)
	expired.IssuedAt = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	expired.Expires = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env("expired", "authentic, expired on 2026-01-01", "expired", "FailedPrecondition", "401", g.seal(badKey1, expired))
	bound := g.scone(0xb4, 1000, 9)
	bound.Client = "mallory"
	env("wrong-client", "authentic, bound to the client \"mallory\" (a stolen SCONE)", "wrong_client",
		"PermissionDenied", "403", g.seal(badKey1, bound))
	other := g.scone(0xb5, 1000, 9)
	other.Service = "bookstore.v1.Orders"
	add(badinput.Case{Name: "wrong-service",
		About: "authentic, of another service: a hook treats it as a passenger for its back ends, " +
			"never as its own state (Sealer.Open refuses it with wrong_service)",
		Carrier: badinput.Envelope, Open: "wrong_service",
		GRPC: expect("ok", "OK"), HTTP: expect("ok", "200")}, g.seal(badKey1, other))

	body := func(flags byte, mutate func(b []byte) []byte) []byte {
		sc := g.scone(0xb6, 1000, 9)
		b := appendBody(nil, formatV1, flags, sc, sc.Data)
		if mutate != nil {
			b = mutate(b)
		}
		return g.sealBody(sc, b)
	}
	env("body-flags", "authentic, with an unknown body flag", "malformed", "InvalidArgument", "400",
		body(0x80, nil))
	env("body-short", "a body shorter than its fixed fields", "malformed", "InvalidArgument", "400",
		body(0, func(b []byte) []byte { return b[:bodyFixed+3] }))
	env("body-field-overrun", "authentic, the endpoint's length runs past the body", "malformed", "InvalidArgument", "400",
		body(0, func(b []byte) []byte { binary.BigEndian.PutUint16(b[bodyFixed:], 0xffff); return b }))
	env("bad-deflate", "authentic, compressed flag set on data that is not DEFLATE", "malformed", "InvalidArgument", "400",
		body(flagDeflate, func(b []byte) []byte { return append(b[:bodyMin], 0xff, 0xff, 0xff, 0xff) }))
	env("deflate-bomb", "authentic, 4 MiB of zeros deflated into a few KiB", "too_large", "ResourceExhausted", "413",
		body(flagDeflate, func(b []byte) []byte { return append(b[:bodyMin], deflate(nil, make([]byte, 4<<20))...) }))

	add(badinput.Case{Name: "over-budget", About: "64 KiB + 1: over the default size budget, refused before decryption",
		Carrier: badinput.Envelope, PadTo: DefaultMaxSize + 1, Open: "too_large",
		GRPC: expect("too_large", "ResourceExhausted"), HTTP: expect("too_large", "413")}, valid[:hl])
	add(badinput.Case{Name: "over-maximum",
		About:   "1 MiB + 1: over the largest envelope; over HTTP its text form is over net/http's 1 MB header limit",
		Carrier: badinput.Envelope, PadTo: MaxEnvelopeSize + 1, Open: "too_large",
		GRPC: expect("too_large", "ResourceExhausted"),
		HTTP: expect("", "431")}, valid[:hl])

	// Replays: stateless servers accept an older SCONE of a session (the
	// price of statelessness, docs/security.md); anti-rollback refuses one
	// older than a version already presented.
	add(badinput.Case{Name: "replayed",
		About:   "an old, authentic SCONE (1 operation) presented alone: accepted, its state restored",
		Carrier: badinput.Envelope, Open: "ok", Operations: 1,
		GRPC: expect("ok", "OK"), HTTP: expect("ok", "200")}, g.seal(badKey1, g.scone(0xc0, 1, 1)))
	v2 := g.seal(badKey1, g.scone(0xc1, 2, 2))
	files["rolled-back.before.bin"] = v2
	add(badinput.Case{Name: "rolled-back",
		About: "version 1 of a session after version 2 was presented: accepted without anti-rollback, " +
			"rolled_back with it",
		Carrier: badinput.Envelope, Open: "ok", Operations: 1, Before: []string{"rolled-back.before.bin"},
		GRPC:      expect("ok", "OK"),
		HighWater: expect("rolled_back", "FailedPrecondition"),
		HTTP:      expect("ok", "200")}, g.seal(badKey1, g.scone(0xc1, 1, 1)))

	// Carrier faults, gRPC.
	dupValid := g.seal(badKey1, g.scone(0xc2, 5, 5))
	dupForged := with(dupValid, func(b []byte) { b[12]++ }) // version 6, not authentic
	add(badinput.Case{Name: "frame-garbage", About: "a scone-bin value that is not protobuf",
		Carrier: badinput.Frame, GRPC: expect("malformed", "InvalidArgument")}, []byte{0xff, 0xff, 0xff})
	add(badinput.Case{Name: "frame-truncated", About: "a frame whose SCONE field runs past its end",
		Carrier: badinput.Frame, GRPC: expect("malformed", "InvalidArgument")}, frame(dupValid)[:40])
	add(badinput.Case{Name: "frame-too-many", About: "65 SCONEs in one frame, over the limit of 64",
		Carrier: badinput.Frame, GRPC: expect("too_large", "ResourceExhausted")},
		frame(slices.Repeat([][]byte{dupValid}, 65)...))
	add(badinput.Case{Name: "frame-oversized", About: "a 4 MiB + 1 frame, over the frame size limit",
		Carrier: badinput.Frame, PadTo: 4<<20 + 1, GRPC: expect("too_large", "ResourceExhausted")},
		frame(dupValid))
	add(badinput.Case{Name: "duplicate-metadata",
		About:   "two scone-bin values: a session's SCONE, and a forgery of its next version",
		Carrier: badinput.Frame, GRPC: expect("tampered", "Unauthenticated")},
		frame(dupValid), frame(dupForged))
	add(badinput.Case{Name: "duplicate-in-frame",
		About:   "one frame with a session's SCONE twice: the same state, accepted",
		Carrier: badinput.Frame, Operations: 5, GRPC: expect("ok", "OK")},
		frame(dupValid, dupValid))
	add(badinput.Case{Name: "text-in-binary-key",
		About:   "wrong carrier: the text form of a SCONE as the scone-bin value (a frame is expected)",
		Carrier: badinput.Frame, GRPC: expect("malformed", "InvalidArgument")},
		[]byte(EncodeText(dupValid)))
	add(badinput.Case{Name: "text-key",
		About:   "wrong carrier: a SCONE's text form under the metadata key \"scone\": not a carrier, ignored",
		Carrier: badinput.Metadata, Key: "scone", GRPC: expect("ok", "OK")},
		[]byte(EncodeText(dupValid)))

	add(badinput.Case{Name: "metadata-bad-base64",
		About:   "a scone-bin value on the wire that is not base64: gRPC refuses it before any hook",
		Carrier: badinput.RawMetadata, Key: "scone-bin", GRPC: expect("", "Internal")},
		[]byte("!!not*base64!!"))

	// Carrier faults, HTTP.
	text := EncodeText(dupValid)
	add(badinput.Case{Name: "header-bad-base64", About: "a Scone header that is not base64url",
		Carrier: badinput.Header, HTTP: expect("malformed", "400")}, []byte("!!not*base64!!"))
	add(badinput.Case{Name: "header-padded", About: "a SCONE's text form with base64 padding",
		Carrier: badinput.Header, HTTP: expect("malformed", "400")}, []byte(base64Padded(dupValid)))
	add(badinput.Case{Name: "header-hex", About: "wrong carrier: a SCONE in hex, which decodes as base64url to garbage",
		Carrier: badinput.Header, HTTP: expect("malformed", "400")}, []byte(hex.EncodeToString(dupValid)))
	add(badinput.Case{Name: "header-too-many", About: "65 SCONEs in the Scone header, over the limit of 64",
		Carrier: badinput.Header, HTTP: expect("too_large", "413")},
		[]byte(strings.Join(slices.Repeat([]string{text}, 65), ",")))
	add(badinput.Case{Name: "header-duplicate",
		About:   "two Scone header lines: a session's SCONE, and a forgery of its next version",
		Carrier: badinput.Header, HTTP: expect("tampered", "401")},
		[]byte(text), []byte(EncodeText(dupForged)))
	add(badinput.Case{Name: "header-oversized", About: "a 2 MiB Scone header: net/http refuses it",
		Carrier: badinput.Header, PadTo: 2 << 20, HTTP: expect("", "431")}, []byte("A"))
	cookie := "scone-" + badService + "="
	add(badinput.Case{Name: "cookie-bad-base64", About: "a SCONE cookie that is not base64url",
		Carrier: badinput.Cookie, HTTP: expect("malformed", "400")}, []byte(cookie+"!!not*base64!!"))
	add(badinput.Case{Name: "cookie-duplicate",
		About:   "the SCONE cookie twice: a session's SCONE, and a forgery of its next version",
		Carrier: badinput.Cookie, HTTP: expect("tampered", "401")},
		[]byte(cookie+text+"; "+cookie+EncodeText(dupForged)))
	add(badinput.Case{Name: "cookie-tampered", About: "a SCONE cookie with one bit flipped",
		Carrier: badinput.Cookie, HTTP: expect("tampered", "401")},
		[]byte(cookie+EncodeText(with(dupValid, func(b []byte) { b[len(b)-5] ^= 4 }))))
	return m, files
}

// base64Padded is b in base64url with padding, which the text form refuses.
func base64Padded(b []byte) string {
	s := base64.URLEncoding.EncodeToString(b)
	if !strings.HasSuffix(s, "=") {
		s += "=="
	}
	return s
}

// TestBadInputCorpus writes the corpus (with -update) or checks that it is
// what the generator writes, and that each envelope case opens, directly
// with a Sealer of the corpus's keys, with the code the manifest says.
func TestBadInputCorpus(t *testing.T) {
	m, files := badCorpus(t)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files[badinput.ManifestName] = append(mj, '\n')
	if *update {
		if err := os.RemoveAll(badInputDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(badInputDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(badInputDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(badInputDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("%s holds %d files, the generator writes %d (go test -run TestBadInputCorpus -update)", badInputDir, len(entries), len(files))
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(badInputDir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from what the generator writes (go test -run TestBadInputCorpus -update): %v", badInputDir, name, err)
		}
	}

	c, err := badinput.Load(badInputDir)
	if err != nil {
		t.Fatal(err)
	}
	// The checked-in key file is world-readable in a clone, which
	// ReadKeyFile refuses; its keys are parsed from the bytes.
	primary, keys, err := ParseKeyFile(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := NewKeyRing(primary, keys...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(ring, WithMarkStore(NewMemoryMarkStore(100, time.Now)))
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	for _, cs := range c.Cases {
		if cs.Carrier != badinput.Envelope {
			continue
		}
		for _, b := range cs.BeforePayloads {
			// Presented and served: the version is spent.
			st, err := s.Restore(context.Background(), b, Expect{Service: c.Service}, "/")
			if err != nil {
				t.Fatalf("%s: the SCONE presented before does not open: %v", cs.Name, err)
			}
			if _, _, err := s.Commit(nil, st); err != nil {
				t.Fatalf("%s: sealing after the SCONE presented before: %v", cs.Name, err)
			}
		}
		var sc SCONE
		_, err := s.open(context.Background(), &sc, cs.Payloads[0], Expect{Service: c.Service})
		want := cs.Open
		if cs.HighWater != nil {
			want = cs.HighWater.Code
		}
		if got := codeName(err); got != want {
			t.Errorf("%s: Open gives %s (%v), the manifest says %s", cs.Name, got, err, want)
		}
		opened++
	}
	if opened < 30 {
		t.Errorf("only %d envelope cases", opened)
	}
}

// codeName is the manifest's name of err's outcome: "ok" or the code.
func codeName(err error) string {
	if err == nil {
		return "ok"
	}
	return CodeOf(err).String()
}
