package scone

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/scone-project/scone/internal/bridge"
)

// Envelope formats 1 and 2. All integers are big-endian. See docs/wire.md.
// Servers seal format 2 and open both.
//
// Cleartext header, also the AEAD's associated data:
//
//	offset  size  field
//	0       1     format      0x01 or 0x02: XAES-256-GCM, body layout 1 or 2
//	1       4     key ID      uint32
//	5       8     version     uint64
//	13      8     expires     uint64, Unix milliseconds, never 0
//	21      1     len(service) = s, 1..255
//	22      s     service
//	22+s    1     len(scope) = c, 0..255
//	23+s    c     scope
//
// Then the 24-byte XAES-256-GCM nonce, then the sealed body (as ciphertext)
// and the 16-byte tag. The body, once opened (format 2; format 1 has
// neither started at nor bundle):
//
//	offset  size  field
//	0       1     flags       bit 0: data is DEFLATE-compressed; others zero
//	1       16    session ID
//	17      8     issued at   uint64, Unix milliseconds
//	25      8     epoch       uint64
//	33      8     started at  uint64, Unix milliseconds (format 2)
//	41      2+n   endpoint    uint16 length, bytes
//	..      2+n   object      uint16 length, bytes
//	..      2+n   status      uint16 length, bytes
//	..      2+n   client      uint16 length, bytes
//	..      2+n   bundle      uint16 length, bytes (format 2)
//	..      rest  data
const (
	// formatV1 is the first envelope format: servers still open it.
	formatV1 = 1
	// formatV2 adds the session's start and the front end's bundle to the
	// body; servers seal it.
	formatV2 = 2

	hdrFixed    = 1 + 4 + 8 + 8 // format, key ID, version, expires
	hdrMin      = hdrFixed + 1 + 1 + 1
	bodyFixed   = 1 + 16 + 8 + 8
	bodyMin     = bodyFixed + 4*2 // format 1; format 2 is longer
	bodyMinV2   = bodyFixed + 8 + 5*2
	envelopeMin = hdrMin + nonceSize + bodyMin + tagSize

	flagDeflate = 1 << 0
	flagsKnown  = flagDeflate
)

// headerView is a parsed header whose strings alias the envelope.
type headerView struct {
	keyID   uint32
	version uint64
	expires uint64
	service []byte
	scope   []byte
	end     int // offset of the nonce
}

// parseHeader reads the cleartext header of an envelope without copying.
func parseHeader(b []byte) (headerView, error) {
	var h headerView
	if len(b) < envelopeMin {
		return h, errCode(CodeMalformed, "envelope shorter than the minimum")
	}
	if b[0] != formatV1 && b[0] != formatV2 {
		return h, errCode(CodeMalformed, "unknown envelope format")
	}
	h.keyID = binary.BigEndian.Uint32(b[1:])
	h.version = binary.BigEndian.Uint64(b[5:])
	h.expires = binary.BigEndian.Uint64(b[13:])
	if h.expires == 0 || h.expires > maxUnixMilli {
		return h, errCode(CodeMalformed, "expiry out of range")
	}
	s := int(b[hdrFixed])
	if s == 0 {
		return h, errCode(CodeMalformed, "empty service ID")
	}
	off := hdrFixed + 1
	if len(b) < off+s+1 {
		return h, errCode(CodeMalformed, "header truncated")
	}
	h.service = b[off : off+s]
	off += s
	c := int(b[off])
	off++
	if len(b) < off+c+nonceSize+bodyMin+tagSize {
		return h, errCode(CodeMalformed, "header truncated")
	}
	h.scope = b[off : off+c]
	h.end = off + c
	return h, nil
}

// maxUnixMilli bounds timestamps to what time.UnixMilli represents safely.
const maxUnixMilli = 1 << 62

// peek is ParseHeader without copying: the view's byte slices alias token
// and are valid only as long as token is unchanged.
func peek(token []byte) (bridge.View, error) {
	if len(token) > MaxEnvelopeSize {
		return bridge.View{}, errCode(CodeTooLarge, "envelope over the maximum size")
	}
	v, err := parseHeader(token)
	if err != nil {
		return bridge.View{}, err
	}
	return bridge.View{
		KeyID:   v.keyID,
		Version: v.version,
		Expires: time.UnixMilli(int64(v.expires)),
		Service: v.service,
		Scope:   v.scope,
	}, nil
}

// ParseHeader reads the cleartext header of a sealed SCONE without a key.
// It checks the layout only: nothing is authenticated until the SCONE is
// opened, so a holder must treat the header as a claim.
func ParseHeader(token []byte) (Header, error) {
	if len(token) > MaxEnvelopeSize {
		return Header{}, errCode(CodeTooLarge, "envelope over the maximum size")
	}
	v, err := parseHeader(token)
	if err != nil {
		return Header{}, err
	}
	return Header{
		Format:  token[0],
		KeyID:   v.keyID,
		Version: v.version,
		Expires: time.UnixMilli(int64(v.expires)),
		Service: string(v.service),
		Scope:   string(v.scope),
	}, nil
}

func appendHeader(b []byte, format byte, keyID uint32, sc *SCONE) []byte {
	b = append(b, format)
	b = binary.BigEndian.AppendUint32(b, keyID)
	b = binary.BigEndian.AppendUint64(b, sc.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(sc.Expires.UnixMilli()))
	b = append(b, byte(len(sc.Service)))
	b = append(b, sc.Service...)
	b = append(b, byte(len(sc.Scope)))
	return append(b, sc.Scope...)
}

func headerLen(sc *SCONE) int { return hdrFixed + 2 + len(sc.Service) + len(sc.Scope) }

func bodyLen(format byte, sc *SCONE, data int) int {
	if format == formatV1 {
		return bodyMin + len(sc.Endpoint) + len(sc.Object) + len(sc.Status) + len(sc.Client) + data
	}
	return bodyMinV2 + len(sc.Endpoint) + len(sc.Object) + len(sc.Status) + len(sc.Client) + len(sc.bundle) + data
}

func appendBody(b []byte, format, flags byte, sc *SCONE, data []byte) []byte {
	b = append(b, flags)
	b = append(b, sc.Session[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(sc.IssuedAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, sc.Epoch)
	if format == formatV1 {
		for _, f := range [...]string{sc.Endpoint, sc.Object, sc.Status, sc.Client} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
			b = append(b, f...)
		}
		return append(b, data...)
	}
	b = binary.BigEndian.AppendUint64(b, unixMilli(sc.Started))
	for _, f := range [...]string{sc.Endpoint, sc.Object, sc.Status, sc.Client, string(sc.bundle)} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return append(b, data...)
}

// decodeBody fills sc's sealed fields from an opened body of the given
// envelope format and returns its flags and the (possibly compressed) data,
// which aliases body.
func decodeBody(sc *SCONE, format byte, body []byte) (flags byte, data []byte, err error) {
	if len(body) < bodyMin || format == formatV2 && len(body) < bodyMinV2 {
		return 0, nil, errCode(CodeMalformed, "body truncated")
	}
	flags = body[0]
	if flags&^flagsKnown != 0 {
		return 0, nil, errCode(CodeMalformed, "unknown body flags")
	}
	copy(sc.Session[:], body[1:17])
	issued := binary.BigEndian.Uint64(body[17:])
	if issued > maxUnixMilli {
		return 0, nil, errCode(CodeMalformed, "issue time out of range")
	}
	sc.IssuedAt = time.UnixMilli(int64(issued))
	sc.Epoch = binary.BigEndian.Uint64(body[25:])
	rest := body[bodyFixed:]
	sc.Started = time.Time{}
	if format == formatV2 {
		started := binary.BigEndian.Uint64(rest)
		if started > maxUnixMilli {
			return 0, nil, errCode(CodeMalformed, "session start out of range")
		}
		if started != 0 {
			sc.Started = time.UnixMilli(int64(started))
		}
		rest = rest[8:]
	}
	for _, f := range [...]*string{&sc.Endpoint, &sc.Object, &sc.Status, &sc.Client} {
		if len(rest) < 2 {
			return 0, nil, errCode(CodeMalformed, "body truncated")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return 0, nil, errCode(CodeMalformed, "body field overruns the body")
		}
		setString(f, rest[2:2+n])
		rest = rest[2+n:]
	}
	sc.bundle = sc.bundle[:0]
	if format == formatV2 {
		if len(rest) < 2 {
			return 0, nil, errCode(CodeMalformed, "body truncated")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return 0, nil, errCode(CodeMalformed, "body field overruns the body")
		}
		sc.bundle = append(sc.bundle, rest[2:2+n]...)
		rest = rest[2+n:]
	}
	return flags, rest, nil
}

// unixMilli returns t in Unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

// setString sets *s to b, allocating only when the value changes, so a
// SCONE reused across calls decodes its repeated strings for free.
func setString(s *string, b []byte) {
	if *s != string(b) {
		*s = string(b)
	}
}

// Text form: transports that carry text (gRPC metadata, cookies, headers)
// use the envelope in unpadded base64url.
var textEncoding = base64.RawURLEncoding.Strict()

// EncodeText returns the text form of a sealed SCONE.
func EncodeText(token []byte) string { return textEncoding.EncodeToString(token) }

// DecodeText returns the envelope of a SCONE in text form. It refuses text
// longer than the text form of a MaxEnvelopeSize envelope before decoding.
func DecodeText(s string) ([]byte, error) {
	if err := checkText(s); err != nil {
		return nil, err
	}
	out, err := textEncoding.DecodeString(s)
	if err != nil {
		return nil, WrapError(CodeMalformed, "text form is not unpadded base64url", err)
	}
	return out, nil
}

// checkText refuses text forms that are too long or not canonical.
func checkText(s string) error {
	if len(s) > textEncoding.EncodedLen(MaxEnvelopeSize) {
		return errCode(CodeTooLarge, "text form over the maximum size")
	}
	// The decoder skips CR and LF; a canonical text form has none.
	if strings.ContainsAny(s, "\r\n") {
		return errCode(CodeMalformed, "text form contains a line break")
	}
	return nil
}
