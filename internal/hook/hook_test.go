package hook

import (
	"testing"

	"github.com/scone-project/scone"
)

func TestCodes(t *testing.T) {
	t.Parallel()
	cs := Codes()
	if len(cs) == 0 || cs[0] != scone.CodeMalformed || cs[len(cs)-1] != scone.CodeBundle {
		t.Fatalf("Codes() = %v", cs)
	}
	for i, c := range cs {
		if c != scone.Code(i+1) {
			t.Fatalf("Codes() has a gap at %d: %v", i, cs)
		}
		if back, ok := ParseCode(c.String()); !ok || back != c {
			t.Errorf("ParseCode(%q) = %v, %v", c.String(), back, ok)
		}
	}
	if c, ok := ParseCode("unknown"); !ok || c != scone.CodeUnknown {
		t.Error("ParseCode(unknown)")
	}
	if _, ok := ParseCode("code_200"); ok {
		t.Error("ParseCode accepted an undefined code")
	}
}
