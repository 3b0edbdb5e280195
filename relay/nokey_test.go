package relay_test

import (
	"reflect"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/relay"
)

// TestRelayHoldsNoKey: nothing a relay is configured with can carry a key
// that opens or forges a SCONE (a relay operator can read the cleartext
// header of what it holds, drop it or serve an old copy, never its
// content): no field of Config, or of the stores' configs, is or holds a
// key, a key ring or a Sealer.
func TestRelayHoldsNoKey(t *testing.T) {
	t.Parallel()
	forbidden := map[reflect.Type]bool{
		reflect.TypeFor[scone.Key]():      true,
		reflect.TypeFor[scone.KeyRing]():  true,
		reflect.TypeFor[scone.Sealer]():   true,
		reflect.TypeFor[[]scone.Key]():    true,
		reflect.TypeFor[*scone.KeyRing](): true,
		reflect.TypeFor[*scone.Sealer]():  true,
	}
	seen := map[reflect.Type]bool{}
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		if forbidden[ty] {
			t.Errorf("%s is a %v: a relay must hold no key", path, ty)
		}
		if seen[ty] {
			return
		}
		seen[ty] = true
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
			walk(path, ty.Elem())
		case reflect.Map:
			walk(path, ty.Key())
			walk(path, ty.Elem())
		case reflect.Struct:
			for f := range ty.Fields() {
				walk(path+"."+f.Name, f.Type)
			}
		}
	}
	walk("relay.Config", reflect.TypeFor[relay.Config]())
	walk("relay.MemoryConfig", reflect.TypeFor[relay.MemoryConfig]())
	walk("relay.JetStreamConfig", reflect.TypeFor[relay.JetStreamConfig]())
	if len(seen) < 10 {
		t.Fatalf("walked only %d types: the walk is broken", len(seen))
	}
}
