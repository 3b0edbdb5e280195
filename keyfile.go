package scone

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Key file format (JSON, documented in docs/security.md):
//
//	{
//	  "format": "scone-keys-v1",
//	  "primary": 2,
//	  "keys": [
//	    {"id": 1, "secret": "<32 bytes, base64>", "created": "2026-11-01T00:00:00Z", "retire_at": "2026-11-26T00:00:00Z"},
//	    {"id": 2, "secret": "<32 bytes, base64>", "created": "2026-11-25T00:00:00Z"}
//	  ]
//	}
const keyFileFormat = "scone-keys-v1"

// maxKeyFileSize bounds what ParseKeyFile reads: a ring has a few keys.
const maxKeyFileSize = 1 << 20

type keyFileJSON struct {
	Format  string    `json:"format"`
	Primary uint32    `json:"primary"`
	Keys    []keyJSON `json:"keys"`
}

type keyJSON struct {
	ID       uint32    `json:"id"`
	Secret   string    `json:"secret"`
	Created  time.Time `json:"created,omitzero"`
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// marshalKeyFile encodes a primary ID and keys in the key file format.
func marshalKeyFile(primary uint32, keys []Key) []byte {
	f := keyFileJSON{Format: keyFileFormat, Primary: primary, Keys: make([]keyJSON, len(keys))}
	for i, k := range keys {
		f.Keys[i] = keyJSON{
			ID:       k.ID,
			Secret:   base64.StdEncoding.EncodeToString(k.Secret[:]),
			Created:  k.Created.UTC(),
			RetireAt: k.RetireAt.UTC(),
		}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		panic("scone: encoding a key file: " + err.Error())
	}
	return append(b, '\n')
}

// ParseKeyFile decodes a key file. It is strict: unknown fields, a wrong
// format tag, a secret that is not 32 bytes of base64, duplicate IDs or a
// primary that is missing or retired are errors (CodeMalformed) that name
// the offending key.
func ParseKeyFile(b []byte) (primary uint32, keys []Key, err error) {
	if len(b) > maxKeyFileSize {
		return 0, nil, errCode(CodeTooLarge, "key file over 1 MiB")
	}
	var f keyFileJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return 0, nil, WrapError(CodeMalformed, "key file is not valid JSON of the key file format", err)
	}
	if dec.More() {
		return 0, nil, errCode(CodeMalformed, "key file has data after its JSON object")
	}
	if f.Format != keyFileFormat {
		return 0, nil, errCode(CodeMalformed, "key file format is "+strconv.Quote(f.Format)+", want "+strconv.Quote(keyFileFormat))
	}
	if len(f.Keys) == 0 {
		return 0, nil, errCode(CodeMalformed, "key file has no keys")
	}
	seen := make(map[uint32]bool, len(f.Keys))
	var primaryOK bool
	for _, kj := range f.Keys {
		name := "key " + strconv.FormatUint(uint64(kj.ID), 10)
		if seen[kj.ID] {
			return 0, nil, errCode(CodeMalformed, "key file: duplicate "+name)
		}
		seen[kj.ID] = true
		secret, err := base64.StdEncoding.DecodeString(kj.Secret)
		if err != nil || len(secret) != keySize {
			return 0, nil, errCode(CodeMalformed, "key file: "+name+": secret must be 32 bytes in standard base64")
		}
		k := Key{ID: kj.ID, Created: kj.Created, RetireAt: kj.RetireAt}
		copy(k.Secret[:], secret)
		clear(secret)
		keys = append(keys, k)
		if kj.ID == f.Primary {
			if !kj.RetireAt.IsZero() {
				return 0, nil, errCode(CodeMalformed, "key file: primary "+name+" has a retire_at")
			}
			primaryOK = true
		}
	}
	if !primaryOK {
		return 0, nil, errCode(CodeMalformed, "key file: primary key "+strconv.FormatUint(uint64(f.Primary), 10)+" is not among its keys")
	}
	return f.Primary, keys, nil
}

// ReadKeyFile reads a key file and returns a ring of its keys. A key file
// that group or others may read or write (any mode bit in 0077) is refused
// with an error that says how to fix it.
func ReadKeyFile(path string) (*KeyRing, error) {
	primary, keys, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return NewKeyRing(primary, keys...)
}

// ReloadKeyFile reads a key file and installs its keys into r (see
// KeyRing.Replace). On any error r is unchanged.
func ReloadKeyFile(r *KeyRing, path string) error {
	primary, keys, err := readKeyFile(path)
	if err != nil {
		return err
	}
	return r.Replace(primary, keys)
}

func readKeyFile(path string) (uint32, []Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, WrapError(CodeInternal, "reading key file "+path, err)
	}
	defer f.Close()
	// Like ssh with a private key: a key file that others can read is
	// refused, before its secrets are read, rather than used silently.
	if fi, err := f.Stat(); err != nil {
		return 0, nil, WrapError(CodeInternal, "reading key file "+path, err)
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return 0, nil, errCode(CodeInternal, fmt.Sprintf(
			"key file %s has mode %#o: it must be private to its owner; run: chmod 600 %s", path, perm, path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return 0, nil, WrapError(CodeInternal, "reading key file "+path, err)
	}
	primary, keys, err := ParseKeyFile(b)
	if err != nil {
		return 0, nil, WrapError(CodeOf(err), path+": "+err.(*Error).Message(), err)
	}
	return primary, keys, nil
}

// WriteKeyFile writes the ring's keys to path with mode 0600, atomically
// (a temporary file renamed over path), so a daemon reloading it never
// reads half a file.
func WriteKeyFile(path string, r *KeyRing) error {
	primary, keys := r.export()
	return writeFileAtomic(path, marshalKeyFile(primary, keys))
}

func writeFileAtomic(path string, b []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return WrapError(CodeInternal, "writing key file "+path, err)
	}
	tmp := f.Name() // os.CreateTemp makes it with mode 0600
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return WrapError(CodeInternal, "writing key file "+path, err)
	}
	return nil
}
