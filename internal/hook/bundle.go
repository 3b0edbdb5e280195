package hook

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/scone-project/scone"
)

// A bundle is what a front end's SCONE records of the back ends' SCONEs its
// last reply left with the holder, sealed in the front end's SCONE (see
// docs/wire.md, "Bundle"). On the next request each must come back as it
// was: a missing, older or foreign one is a scone.CodeBundle error, never an
// empty state. Each entry also names the routes (back ends' service IDs)
// whose replies brought the SCONE, so that it goes only with calls to its
// own service and to those, and only their replies change it.
//
// Encoding, repeated for each entry: the number of routes uint8, then each
// route as len uint8 and bytes; len(service) uint8, service, len(scope)
// uint8, scope, version uint64, digest [8]byte (the first 8 bytes of the
// SHA-256 of the envelope).
type bundleEntry struct {
	routes  []string
	key     HolderKey
	version uint64
	digest  [8]byte
}

func digest(token []byte) (d [8]byte) {
	sum := sha256.Sum256(token)
	copy(d[:], sum[:8])
	return d
}

func appendBundle(b []byte, es []bundleEntry) []byte {
	for _, e := range es {
		b = append(b, byte(len(e.routes)))
		for _, r := range e.routes {
			b = append(b, byte(len(r)))
			b = append(b, r...)
		}
		for _, s := range [...]string{e.key.Service, e.key.Scope} {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
		b = binary.BigEndian.AppendUint64(b, e.version)
		b = append(b, e.digest[:]...)
	}
	return b
}

var errBadBundle = scone.NewError(scone.CodeMalformed, "the sealed bundle does not decode")

func parseBundle(b []byte) ([]bundleEntry, error) {
	var es []bundleEntry
	for len(b) > 0 {
		var e bundleEntry
		n := int(b[0])
		b = b[1:]
		for range n {
			if len(b) < 1 || len(b) < 1+int(b[0]) {
				return nil, errBadBundle
			}
			e.routes = append(e.routes, string(b[1:1+int(b[0])]))
			b = b[1+int(b[0]):]
		}
		for _, s := range [...]*string{&e.key.Service, &e.key.Scope} {
			if len(b) < 1 || len(b) < 1+int(b[0]) {
				return nil, errBadBundle
			}
			*s, b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
		}
		if len(b) < 16 {
			return nil, errBadBundle
		}
		e.version = binary.BigEndian.Uint64(b)
		copy(e.digest[:], b[8:16])
		b = b[16:]
		es = append(es, e)
	}
	return es, nil
}

// bundleError is the error of a request whose back-end SCONEs are not the
// bundle its front end's SCONE recorded.
func bundleError(scope, what string) error {
	return scone.NewError(scone.CodeBundle, what+"; to start over, drop every SCONE (cookie) of scope "+
		strconv.Quote(scope))
}
